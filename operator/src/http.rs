//! The operator's HTTP endpoint: `/healthz` (the process serves), `/readyz` (the process is up
//! and has talked to the Kubernetes API: true on the leader *and* on a healthy standby replica,
//! so `helm --wait` and rollouts finish), `/leader` (200 only on the replica running the
//! controller; also the `bronze_operator_leader` gauge) and `/metrics` (Prometheus text format).

use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::{Method, Request, Response, StatusCode};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::metrics::Metrics;

pub struct HttpState {
    pub metrics: Arc<Metrics>,
    /// Up and able to reach the API (a standby waiting for the Lease is ready).
    pub ready: AtomicBool,
    /// Running the controller: the leader, or the only replica without leader election.
    pub leader: AtomicBool,
}

impl HttpState {
    pub fn new(metrics: Arc<Metrics>) -> Arc<Self> {
        Arc::new(Self {
            metrics,
            ready: AtomicBool::new(false),
            leader: AtomicBool::new(false),
        })
    }

    pub fn set_leader(&self, leader: bool) {
        self.leader.store(leader, Ordering::SeqCst);
        self.metrics.set_leader(leader);
    }

    pub fn set_ready(&self, ready: bool) {
        self.ready.store(ready, Ordering::SeqCst);
    }
}

fn respond(status: StatusCode, content_type: &str, body: String) -> Response<Full<Bytes>> {
    Response::builder()
        .status(status)
        .header("content-type", content_type)
        .body(Full::new(Bytes::from(body)))
        .expect("static response parts are valid")
}

async fn handle(
    req: Request<Incoming>,
    state: Arc<HttpState>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    const TEXT: &str = "text/plain; charset=utf-8";
    Ok(match (req.method(), req.uri().path()) {
        (&Method::GET, "/healthz") => respond(StatusCode::OK, TEXT, "ok\n".into()),
        (&Method::GET, "/readyz") if state.ready.load(Ordering::SeqCst) => {
            respond(StatusCode::OK, TEXT, "ready\n".into())
        }
        (&Method::GET, "/readyz") => {
            respond(StatusCode::SERVICE_UNAVAILABLE, TEXT, "not ready\n".into())
        }
        (&Method::GET, "/leader") if state.leader.load(Ordering::SeqCst) => {
            respond(StatusCode::OK, TEXT, "leader\n".into())
        }
        (&Method::GET, "/leader") => {
            respond(StatusCode::SERVICE_UNAVAILABLE, TEXT, "standby\n".into())
        }
        (&Method::GET, "/metrics") => respond(
            StatusCode::OK,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
            state.metrics.render(),
        ),
        _ => respond(StatusCode::NOT_FOUND, TEXT, "not found\n".into()),
    })
}

/// Serves until `shutdown` fires, on the worker library's HTTP server (one implementation for
/// both binaries).
pub async fn serve(listener: TcpListener, state: Arc<HttpState>, shutdown: CancellationToken) {
    let handler = move |req| handle(req, state.clone());
    tokio::select! {
        _ = shutdown.cancelled() => {}
        _ = bronze::metrics::accept_loop(listener, handler) => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    async fn get(addr: std::net::SocketAddr, path: &str) -> String {
        let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
        stream
            .write_all(
                format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").as_bytes(),
            )
            .await
            .unwrap();
        let mut out = String::new();
        stream.read_to_string(&mut out).await.unwrap();
        out
    }

    #[tokio::test]
    async fn health_readiness_and_metrics() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let state = HttpState::new(Arc::new(Metrics::default()));
        let stop = CancellationToken::new();
        let server = tokio::spawn(serve(listener, state.clone(), stop.clone()));
        assert!(get(addr, "/healthz").await.starts_with("HTTP/1.1 200"));
        assert!(get(addr, "/readyz").await.starts_with("HTTP/1.1 503"));
        assert!(get(addr, "/leader").await.starts_with("HTTP/1.1 503"));
        // A standby replica: ready, not the leader.
        state.set_ready(true);
        assert!(get(addr, "/readyz").await.starts_with("HTTP/1.1 200"));
        assert!(get(addr, "/leader").await.starts_with("HTTP/1.1 503"));
        let metrics = get(addr, "/metrics").await;
        assert!(
            metrics.contains("bronze_operator_jobs_created_total"),
            "{metrics}"
        );
        assert!(metrics.contains("bronze_operator_leader 0"), "{metrics}");
        state.set_leader(true);
        assert!(get(addr, "/leader").await.starts_with("HTTP/1.1 200"));
        assert!(get(addr, "/readyz").await.starts_with("HTTP/1.1 200"));
        let metrics = get(addr, "/metrics").await;
        assert!(metrics.contains("bronze_operator_leader 1"), "{metrics}");
        assert!(get(addr, "/nope").await.starts_with("HTTP/1.1 404"));
        stop.cancel();
        server.await.unwrap();
    }

    /// `bronze_copier_retry_attempts_total{operation="pas_delivery"}` as served, 0 when absent.
    fn pas_delivery_retries(metrics: &str) -> f64 {
        metrics
            .lines()
            .find(|l| {
                l.starts_with("bronze_copier_retry_attempts_total{")
                    && l.contains("operation=\"pas_delivery\"")
            })
            .and_then(|l| l.rsplit(' ').next())
            .map_or(0.0, |v| v.parse().unwrap())
    }

    /// The operator delivers PAS events with the worker library's code, which counts each retry
    /// in the library's `bronze_copier_retry_attempts_total`: the operator's one `/metrics`
    /// serves that series, next to its own (it used to go to a registry nobody served).
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn metrics_serve_the_pas_delivery_retries_counted_by_the_library() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let state = HttpState::new(Arc::new(Metrics::default()));
        let stop = CancellationToken::new();
        let server = tokio::spawn(serve(listener, state, stop.clone()));
        let before = pas_delivery_retries(&get(addr, "/metrics").await);

        // The endpoint refuses the first attempt: one retry, then accepted.
        let sink = bronze_testkit::HttpSink::start(bronze_testkit::Behaviour::fail_next(1));
        let delivery = bronze::pas::HttpDelivery::new(
            &sink.url(),
            None,
            std::time::Duration::from_secs(5),
            3,
            std::time::Duration::from_millis(10),
        )
        .unwrap();
        let event: bronze::pas::PasEvent = serde_json::from_value(serde_json::json!({
            "version": "1.1", "event_type": "bronze_partition_committed", "event_id": "e-1",
            "timestamp": "2025-01-15T10:00:00Z",
            "partition": {"network": "testnet", "era_id": "p23", "version_label": "v1",
                          "ledger_start": 2, "ledger_end": 11},
            "tables": {}, "producer": {"name": "bronze-copier", "version": "0", "git_sha": "x"},
            "chain": {"prev_event_hash": "", "event_hash": "h"},
        }))
        .unwrap();
        delivery.send(&event).await.unwrap();
        assert_eq!(sink.request_count(), 2, "one refused attempt, one accepted");

        let metrics = get(addr, "/metrics").await;
        let after = pas_delivery_retries(&metrics);
        // Other tests of this process may retry too: at least this one's retry is there.
        assert!(after >= before + 1.0, "{before} -> {after}:\n{metrics}");
        // Still one exposition: the operator's families and one end marker.
        assert!(
            metrics.contains("bronze_operator_jobs_created_total"),
            "{metrics}"
        );
        assert_eq!(metrics.matches("# EOF").count(), 1, "{metrics}");
        stop.cancel();
        server.await.unwrap();
    }
}
