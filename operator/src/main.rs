//! `bronze-operator`: the controller process. Health, readiness and metrics on one HTTP port,
//! optional leader election, graceful shutdown on SIGTERM/SIGINT (the reconcile in flight
//! finishes; every step is idempotent anyway).
//!
//! Started under the name `bronze-copier` (the container image ships this one binary and a
//! `bronze-copier` link to it, which is the image's ENTRYPOINT), it is the copier instead:
//! [`bronze::copier::main`], the same code as the standalone `bronze-copier` binary.

use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use bronze::config::{LogFormat, LogLevel};
use bronze_operator::catalog::PgCatalogFactory;
use bronze_operator::controller::controller;
use bronze_operator::crd::BronzeBackfill;
use bronze_operator::http::{HttpState, serve};
use bronze_operator::job::WorkerDefaults;
use bronze_operator::leader::{self, LeaseSettings};
use bronze_operator::metrics::Metrics;
use bronze_operator::pas::PasOutboxFactory;
use bronze_operator::reconcile::{Context, FIELD_MANAGER, error_policy, reconcile};
use bronze_operator::storage::ObjectStorageFactory;
use clap::Parser;
use futures::StreamExt;
use k8s_openapi::api::batch::v1::Job;
use kube::runtime::events::{Recorder, Reporter};
use kube::{Api, Client};
use tokio_util::sync::CancellationToken;

#[derive(Debug, Parser)]
#[command(
    name = "bronze-operator",
    version = bronze::VERSION_LINE,
    about = "Reconciles BronzeBackfill resources into worker Jobs"
)]
struct Args {
    #[command(subcommand)]
    command: Option<Command>,
    /// Address of /healthz, /readyz, /leader and /metrics.
    #[arg(long, env = "HTTP_ADDRESS", default_value = "0.0.0.0:8080")]
    http_address: SocketAddr,
    /// Watch one namespace only (default: all namespaces).
    #[arg(long, env = "WATCH_NAMESPACE")]
    namespace: Option<String>,
    /// Take a Lease before reconciling (for more than one replica).
    #[arg(long, env = "LEADER_ELECTION")]
    leader_election: bool,
    #[arg(long, env = "LEASE_NAME", default_value = "bronze-operator")]
    lease_name: String,
    /// Namespace of the Lease (default: the Pod's namespace).
    #[arg(long, env = "POD_NAMESPACE", default_value = "default")]
    lease_namespace: String,
    /// Identity in the Lease (default: the Pod name).
    #[arg(long, env = "POD_NAME")]
    identity: Option<String>,
    /// `json` or `text`.
    #[arg(long, env = "LOG_FORMAT", default_value = "json")]
    log_format: String,
    #[arg(long, env = "LOG_LEVEL", default_value = "info")]
    log_level: String,
    /// Worker image of BronzeBackfills without `spec.worker.image`.
    #[arg(long, env = "DEFAULT_WORKER_IMAGE")]
    default_worker_image: Option<String>,
    /// ServiceAccount of worker Pods of BronzeBackfills without `spec.worker.serviceAccountName`.
    #[arg(long, env = "DEFAULT_WORKER_SERVICE_ACCOUNT")]
    default_worker_service_account: Option<String>,
}

#[derive(Debug, clap::Subcommand)]
enum Command {
    /// Check a backfill's output as `bronze-copier verify` does (partitions, rows, links, the
    /// PAS chain) with this process's storage credentials; exit 0 when clean, 5 otherwise.
    Verify {
        /// A BronzeBackfill as YAML (`kubectl get bbf NAME -o yaml`).
        file: std::path::PathBuf,
    },
}

fn main() -> ExitCode {
    if started_as_copier(std::env::args_os().next().as_deref()) {
        return bronze::copier::main();
    }
    operator_main()
}

/// Whether the program name (`argv[0]`) is `bronze-copier`, whatever its directory.
fn started_as_copier(argv0: Option<&std::ffi::OsStr>) -> bool {
    argv0
        .map(std::path::Path::new)
        .and_then(|p| p.file_name())
        .is_some_and(|name| name == "bronze-copier")
}

#[tokio::main]
async fn operator_main() -> ExitCode {
    let args = Args::parse();
    bronze_operator::install_crypto_provider();
    // Lenient as it always was: an unknown format logs text, an unknown level logs info.
    bronze::logging::init(
        args.log_format.parse().unwrap_or(LogFormat::Text),
        args.log_level.parse().unwrap_or(LogLevel::Info),
    );
    if let Some(Command::Verify { file }) = &args.command {
        return verify(file).await;
    }
    tracing::info!(
        version = bronze::VERSION,
        git_sha = bronze::GIT_SHA,
        "bronze operator starting"
    );
    match run(args).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = %e, "bronze operator stopped");
            ExitCode::FAILURE
        }
    }
}

async fn run(args: Args) -> Result<(), String> {
    let client = Client::try_default()
        .await
        .map_err(|e| format!("cannot build the Kubernetes client: {e}"))?;
    let metrics = Arc::new(Metrics::default());
    let state = HttpState::new(metrics.clone());
    let shutdown = CancellationToken::new();
    tokio::spawn(wait_for_signal(shutdown.clone()));
    let listener = tokio::net::TcpListener::bind(args.http_address)
        .await
        .map_err(|e| format!("cannot listen on {}: {e}", args.http_address))?;
    let http = tokio::spawn(serve(listener, state.clone(), shutdown.clone()));

    let lost = CancellationToken::new();
    if args.leader_election {
        let settings = LeaseSettings {
            name: args.lease_name.clone(),
            namespace: args.lease_namespace.clone(),
            identity: args
                .identity
                .clone()
                .unwrap_or_else(|| format!("bronze-operator-{}", std::process::id())),
            lease_duration: Duration::from_secs(15),
            renew_every: Duration::from_secs(5),
        };
        // A standby replica is ready (it reaches the API and waits for the Lease); only
        // /leader and bronze_operator_leader tell the leader apart.
        let ready = state.clone();
        if !leader::acquire(client.clone(), &settings, &shutdown, move |ok| {
            ready.set_ready(ok)
        })
        .await
        {
            return Ok(()); // shut down while waiting
        }
        tokio::spawn(leader::keep(
            client.clone(),
            settings,
            shutdown.clone(),
            lost.clone(),
        ));
    }

    let (backfills, jobs): (Api<BronzeBackfill>, Api<Job>) = match &args.namespace {
        Some(ns) => (
            Api::namespaced(client.clone(), ns),
            Api::namespaced(client.clone(), ns),
        ),
        None => (Api::all(client.clone()), Api::all(client.clone())),
    };
    let pas = Arc::new(PasOutboxFactory::default());
    let ctx = Arc::new(Context {
        client: client.clone(),
        recorder: Recorder::new(
            client.clone(),
            Reporter {
                controller: FIELD_MANAGER.into(),
                instance: args.identity.clone(),
            },
        ),
        metrics,
        storage: Arc::new(ObjectStorageFactory::default()),
        pas: pas.clone(),
        catalog: Arc::new(PgCatalogFactory::default()),
        delta: Arc::default(),
        now: chrono::Utc::now,
        worker_defaults: WorkerDefaults {
            image: args.default_worker_image.clone(),
            service_account: args.default_worker_service_account.clone(),
        },
    });
    let stop = {
        let (shutdown, lost) = (shutdown.clone(), lost.clone());
        async move {
            tokio::select! {
                _ = shutdown.cancelled() => {}
                _ = lost.cancelled() => {}
            }
        }
    };
    state.set_ready(true);
    state.set_leader(true);
    controller(backfills, jobs)
        .graceful_shutdown_on(stop)
        .run(reconcile, error_policy, ctx)
        .for_each(|result| async move {
            if let Err(e) = result {
                tracing::debug!(error = %e, "reconcile error");
            }
        })
        .await;
    state.set_leader(false);
    state.set_ready(false);
    // Undelivered PAS events stay in the outbox; the next start re-sends them.
    pas.close_all().await;
    shutdown.cancel();
    let _ = http.await;
    if lost.is_cancelled() {
        return Err("leadership lost".into());
    }
    tracing::info!("bronze operator stopped");
    Ok(())
}

async fn verify(file: &std::path::Path) -> ExitCode {
    let backfill: Result<BronzeBackfill, String> = std::fs::read_to_string(file)
        .map_err(|e| e.to_string())
        .and_then(|text| serde_yaml_ng::from_str(&text).map_err(|e| e.to_string()));
    let backfill = match backfill {
        Ok(b) => b,
        Err(e) => {
            eprintln!("verify: {}: {e}", file.display());
            return ExitCode::from(bronze::exit::CONFIG);
        }
    };
    match bronze_operator::pas::verify(&backfill.spec).await {
        Ok(report) => {
            for finding in report.sorted() {
                println!("{finding}");
            }
            println!("{}", report.summary());
            if report.is_clean() {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(bronze::exit::VERIFY_FAILED)
            }
        }
        Err(e) => {
            eprintln!("verify: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn wait_for_signal(shutdown: CancellationToken) {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        return;
    };
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
    tracing::info!("signal received: finishing the reconciles in flight, then stopping");
    shutdown.cancel();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn version_names_the_release_and_the_git_revision() {
        let err = Args::try_parse_from(["bronze-operator", "--version"]).unwrap_err();
        assert_eq!(err.kind(), clap::error::ErrorKind::DisplayVersion);
        let text = err.render().to_string();
        assert_eq!(
            text.trim_end(),
            format!("bronze-operator {} ({})", bronze::VERSION, bronze::GIT_SHA)
        );
    }

    #[test]
    fn the_copier_name_starts_the_copier() {
        let copier = |s: &str| started_as_copier(Some(std::ffi::OsStr::new(s)));
        assert!(copier("/usr/local/bin/bronze-copier"));
        assert!(copier("bronze-copier"));
        assert!(!copier("/usr/local/bin/bronze-operator"));
        assert!(!copier("bronze-copier-old"));
        assert!(!started_as_copier(None));
    }
}
