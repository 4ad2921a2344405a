//! The metrics endpoint: `GET /metrics` (Prometheus text) and `GET /health` (200 `ok`) over
//! HTTP/1.1, on `metrics.address` (Go-style `:9090` means every interface).

use std::convert::Infallible;
use std::net::SocketAddr;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::header::{CONTENT_TYPE, HeaderValue};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("metrics.address {0:?} is not host:port or :port")]
    Address(String),
    #[error("metrics.address {address}: cannot listen: {source}")]
    Bind {
        address: String,
        source: std::io::Error,
    },
}

/// The running server; it stops when this is dropped.
#[derive(Debug)]
pub struct MetricsServer {
    pub local_addr: SocketAddr,
    task: JoinHandle<()>,
}

impl Drop for MetricsServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Binds `address` and serves the endpoints in the background. Must run inside a Tokio runtime.
pub async fn serve(address: &str) -> Result<MetricsServer, ServeError> {
    let addr = crate::listen_address::parse_listen_address(address)
        .ok_or_else(|| ServeError::Address(address.to_string()))?;
    let listener = TcpListener::bind(addr)
        .await
        .map_err(|source| ServeError::Bind {
            address: address.to_string(),
            source,
        })?;
    let local_addr = listener.local_addr().unwrap_or(addr);
    tracing::info!(address = %local_addr, "metrics server listening (/metrics, /health)");
    let task = tokio::spawn(accept_loop(listener, handle));
    Ok(MetricsServer { local_addr, task })
}

/// Serves HTTP/1.1 on `listener` until dropped, answering every request with `handle`: the one
/// HTTP server of both binaries (this module's `/metrics` and `/health`, and the operator's
/// endpoint), so each process has a single listener.
pub async fn accept_loop<H, F>(listener: TcpListener, handle: H)
where
    H: Fn(Request<Incoming>) -> F + Clone + Send + Sync + 'static,
    F: Future<Output = Result<Response<Full<Bytes>>, Infallible>> + Send + 'static,
{
    loop {
        let stream = match listener.accept().await {
            Ok((stream, _)) => stream,
            Err(e) => {
                // Out of file descriptors and the like: back off instead of spinning.
                tracing::warn!(error = %e, "http server: accept failed");
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                continue;
            }
        };
        let handle = handle.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(handle);
            if let Err(e) = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await
            {
                tracing::debug!(error = %e, "http server: connection ended with an error");
            }
        });
    }
}

async fn handle(request: Request<Incoming>) -> Result<Response<Full<Bytes>>, Infallible> {
    let (status, content_type, body) = route(request.method(), request.uri().path());
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    Ok(response)
}

fn route(method: &Method, path: &str) -> (StatusCode, &'static str, String) {
    const TEXT: &str = "text/plain; charset=utf-8";
    if method != Method::GET && method != Method::HEAD {
        return (
            StatusCode::METHOD_NOT_ALLOWED,
            TEXT,
            "only GET\n".to_string(),
        );
    }
    match path {
        "/metrics" => (StatusCode::OK, super::CONTENT_TYPE, super::encode()),
        "/health" | "/healthz" => (StatusCode::OK, TEXT, "ok".to_string()),
        _ => (
            StatusCode::NOT_FOUND,
            TEXT,
            "not found: try /metrics or /health\n".to_string(),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    async fn get(addr: SocketAddr, path: &str) -> String {
        let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
        s.write_all(
            format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").as_bytes(),
        )
        .await
        .unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).await.unwrap();
        out
    }

    #[tokio::test]
    async fn serves_metrics_and_health_on_a_real_socket() {
        let server = serve("127.0.0.1:0").await.unwrap();
        crate::metrics::retry("server_test");
        let health = get(server.local_addr, "/health").await;
        assert!(health.starts_with("HTTP/1.1 200"), "{health}");
        assert!(health.ends_with("ok"), "{health}");
        let metrics = get(server.local_addr, "/metrics").await;
        assert!(metrics.starts_with("HTTP/1.1 200"), "{metrics}");
        assert!(metrics.contains("text/plain; version=0.0.4"), "{metrics}");
        assert!(
            metrics.contains("bronze_copier_retry_attempts_total{"),
            "{metrics}"
        );
        let missing = get(server.local_addr, "/nope").await;
        assert!(missing.starts_with("HTTP/1.1 404"), "{missing}");
    }

    #[tokio::test]
    async fn a_bad_address_is_named_in_the_error() {
        let err = serve("nonsense").await.unwrap_err();
        assert!(err.to_string().contains("nonsense"), "{err}");
    }
}
