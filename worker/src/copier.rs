//! `bronze-copier`: the standalone CLI of the runbook. A library function, so that one binary
//! can be both programs: `bronze-copier` (worker/src/main.rs) calls it, and so does
//! `bronze-operator` when it is started under the name `bronze-copier` (the container image ships
//! one binary and a `bronze-copier` link to it).

use std::process::ExitCode;

use crate::catalog::CatalogSink;
use crate::cli::{Cli, Command, GenerateArgs, HealthArgs, WorkerArgs, normalize_args};
use crate::config::{Config, LoadedConfig, LogFormat, LogLevel, load_config, validate};
use crate::pas::PasStream;
use crate::pipeline::{Records, RunError, RunOptions, RunSummary, run, run_range};
use crate::{exit, generate, health, logging, metrics};
use clap::Parser;
use tokio_util::sync::CancellationToken;

/// The copier's `main`: parses the process's arguments and runs the command they name.
pub fn main() -> ExitCode {
    let cli = Cli::parse_from(normalize_args(std::env::args_os()));
    if cli.version {
        println!("bronze-copier {}", crate::VERSION_LINE);
        return ExitCode::SUCCESS;
    }
    let code = match &cli.command {
        Some(Command::GenerateDatastore(args)) => generate_command(args),
        Some(Command::Worker(args)) => worker_command(&cli, args),
        Some(Command::Verify(args)) => verify_command(&cli, args),
        Some(Command::Health(args)) => health_command(&cli, args),
        Some(Command::RepairDeltaLog) => repair_delta_log_command(&cli),
        None => copier_command(&cli),
    };
    ExitCode::from(code)
}

/// Loads and validates the config; `adjust` runs before validation (worker mode).
fn load(cli: &Cli, adjust: fn(&mut Config) -> Vec<String>) -> Result<LoadedConfig, u8> {
    let mut loaded =
        load_config(cli.config.as_deref(), |k| std::env::var(k).ok()).map_err(|e| {
            eprintln!("{e}");
            exit::CONFIG
        })?;
    let notes = adjust(&mut loaded.config);
    logging::init(loaded.config.logging.format, loaded.config.logging.level);
    for key in &loaded.ignored_keys {
        tracing::warn!(key = %key, "unknown or unused config key ignored");
    }
    for (var, key) in &loaded.env.applied {
        tracing::info!(
            variable = var,
            key = key,
            "environment variable overrides config"
        );
    }
    for note in notes {
        tracing::info!("{note}");
    }
    if let Err(errors) = validate(&loaded.config) {
        for e in &errors {
            tracing::error!(field = %e.field, value = %e.value, "invalid configuration: {e}");
            eprintln!("config: {e}");
        }
        eprintln!("config: {} problem(s) found", errors.len());
        return Err(exit::CONFIG);
    }
    Ok(loaded)
}

fn copier_command(cli: &Cli) -> u8 {
    let loaded = match load(cli, |_| Vec::new()) {
        Ok(l) => l,
        Err(code) => return code,
    };
    if cli.validate {
        if cli.online
            && let Err(code) = validate_online(&loaded.config)
        {
            return code;
        }
        // Only the log line: stdout is the log, in `logging.format` (a plain line would break
        // a JSON log); failures also print a plain summary on stderr.
        tracing::info!(file = ?loaded.file, online = cli.online, "configuration is valid");
        return exit::OK;
    }
    let config = loaded.config;
    tracing::info!(version = crate::VERSION, git_sha = crate::GIT_SHA, copier_id = %config.copier_id, "bronze copier starting");
    let options = RunOptions {
        show_progress_bar: !cli.no_progress,
    };
    run_to_exit_code(
        "backfill",
        None,
        Beside::Everything(&config),
        |cancel, records| run(&config, records, cancel, options),
    )
}

/// Worker mode: one Kubernetes Job copies one range; the operator does everything else.
fn worker_command(cli: &Cli, args: &WorkerArgs) -> u8 {
    let loaded = match load(cli, worker_settings) {
        Ok(l) => l,
        Err(code) => return code,
    };
    let config = loaded.config;
    if config.era.ingested_at.is_none() {
        let message = "config: era.ingested_at (INGESTED_AT) is required in worker mode: every Job of a backfill must write the same ingested_at";
        tracing::error!("{message}");
        eprintln!("{message}");
        write_termination_log(&args.termination_log, message);
        return exit::CONFIG;
    }
    if cli.validate {
        return match crate::pipeline::partitions_in_range(&config, args.range) {
            Ok(p) => {
                tracing::info!(
                    range = %args.range,
                    partitions = p.len(),
                    "configuration is valid; range {} is {} partition(s)",
                    args.range,
                    p.len()
                );
                exit::OK
            }
            Err(e) => {
                tracing::error!("{e}");
                eprintln!("bronze-copier: {e}");
                exit::CONFIG
            }
        };
    }
    tracing::info!(version = crate::VERSION, git_sha = crate::GIT_SHA, copier_id = %config.copier_id, range = %args.range, "bronze worker starting");
    let range = args.range;
    let options = RunOptions {
        show_progress_bar: !cli.no_progress,
    };
    let termination_log = args.termination_log.clone();
    let rebuild = args.rebuild.clone();
    let beside = Beside::MetricsOnly(&config);
    run_to_exit_code(
        "range",
        Some(&termination_log),
        beside,
        |cancel, _records| run_range(&config, range, rebuild.as_deref(), cancel, options),
    )
}

/// What worker mode ignores from a shared config file: the operator keeps the checkpoint, the
/// PAS chain and the catalog. Returns a note for each setting that was turned off.
fn worker_settings(config: &mut Config) -> Vec<String> {
    let mut notes = Vec::new();
    if config.checkpoint.enabled {
        config.checkpoint.enabled = false;
        notes.push(
            "worker mode: checkpoint disabled (the operator keeps it in the resource status)"
                .to_string(),
        );
    }
    if config.pas.enabled {
        config.pas.enabled = false;
        notes.push(
            "worker mode: PAS disabled (the operator appends the events in ledger order)"
                .to_string(),
        );
    }
    if !config.catalog.postgres_dsn.is_empty() {
        config.catalog.postgres_dsn.clear();
        notes.push(
            "worker mode: catalog disabled (the operator records the partitions)".to_string(),
        );
    }
    notes
}

/// What runs beside the pipeline, from the run's config.
enum Beside<'a> {
    /// Standalone mode: the metrics endpoint and the commit records (PAS, catalog, Delta).
    Everything(&'a Config),
    /// Worker mode: only the metrics endpoint (`metrics.enabled`; the operator sets it so the
    /// dashboard's worker panels are scraped on Kubernetes); the operator keeps the records.
    MetricsOnly(&'a Config),
}

/// Runs `start` on a fresh runtime with SIGINT/SIGTERM handling and maps the outcome to the
/// documented exit code. What `beside` names runs beside it, and `start` gets the records. A
/// failure's message also goes to `termination_log` when that file exists (Kubernetes creates
/// it in every container).
fn run_to_exit_code<F, Fut>(
    what: &str,
    termination_log: Option<&std::path::Path>,
    beside: Beside<'_>,
    start: F,
) -> u8
where
    F: FnOnce(CancellationToken, Records) -> Fut,
    Fut: std::future::Future<Output = Result<RunSummary, RunError>>,
{
    let runtime = match runtime() {
        Ok(r) => r,
        Err(code) => return code,
    };
    let code = runtime.block_on(async {
        let cancel = CancellationToken::new();
        let signal = tokio::spawn(wait_for_signal(cancel.clone()));
        let started = match beside {
            Beside::Everything(config) => start_services(config).await,
            Beside::MetricsOnly(config) => start_metrics(config, true).await.map(|(m, rate)| Services {
                _metrics: m,
                _rate: rate,
                ..Services::default()
            }),
        };
        let services = match started {
            Ok(s) => s,
            Err(code) => return code,
        };
        let result = start(cancel.clone(), services.records()).await;
        services.finish(&result, &cancel).await;
        let received = if cancel.is_cancelled() {
            signal.await.ok().flatten()
        } else {
            signal.abort();
            None
        };
        match result {
            Ok(summary) => {
                let s = summary.progress;
                tracing::info!(
                    ledgers = s.committed_ledgers,
                    partitions = s.committed_partitions,
                    skipped = s.skipped_partitions,
                    replaced = summary.counts.replaced,
                    adopted_with_other_settings = summary.counts.adopted_with_other_settings,
                    last_committed_ledger = ?summary.last_committed,
                    duration_s = format!("{:.1}", s.elapsed.as_secs_f64()),
                    rate_per_sec = format!("{:.2}", s.ledgers_per_second()),
                    peak_rss_mb = format!("{:.1}", crate::process::peak_rss_mib().unwrap_or(0.0)),
                    cpu_s = format!("{:.2}", crate::process::cpu_seconds().unwrap_or(0.0)),
                    "{what} {}", if summary.interrupted { "interrupted; restart to resume" } else { "complete" }
                );
                // A signal during the final PAS drain also ends the run early: its events
                // wait in the outbox, so the exit says "stopped", not "done".
                received.unwrap_or(exit::OK)
            }
            Err(e) => {
                let code = exit::code_for(&e);
                tracing::error!(exit_code = code, "{what} failed: {e}");
                eprintln!("bronze-copier: {e}");
                if let Some(path) = termination_log {
                    write_termination_log(path, &format!("exit {code}: {e}"));
                }
                code
            }
        }
    });
    runtime.shutdown_timeout(std::time::Duration::from_secs(10));
    tracing::info!("bronze copier stopped");
    code
}

/// Writes `message` (at most 4 KiB, the Kubernetes limit) to an existing termination-log file.
fn write_termination_log(path: &std::path::Path, message: &str) {
    if !path.is_file() {
        return;
    }
    let mut end = message.len().min(4096);
    while !message.is_char_boundary(end) {
        end -= 1;
    }
    if let Err(e) = std::fs::write(path, &message[..end]) {
        tracing::warn!(path = %path.display(), error = %e, "cannot write the termination message");
    }
}

/// `-validate --online`: opens the history archives as a run does (each one's state read and
/// its `networkPassphrase` checked against the era's network; the trusted ledger checked),
/// copying nothing. Without an archive there is nothing online to check.
fn validate_online(config: &Config) -> Result<(), u8> {
    let Some(mut settings) = crate::archive::ArchiveSettings::from_config(config) else {
        tracing::info!("-validate --online: no archive.url, nothing to check online");
        return Ok(());
    };
    settings.follow = false;
    let runtime = runtime()?;
    match runtime.block_on(crate::archive::ArchiveCheck::open(settings)) {
        Ok(_) => Ok(()),
        Err(e) => {
            tracing::error!(error = %e, "history archive check failed");
            eprintln!("config: {e}");
            Err(exit::code_for(&crate::pipeline::RunError::Archive(e)))
        }
    }
}

fn runtime() -> Result<tokio::runtime::Runtime, u8> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| {
            eprintln!("cannot start the async runtime: {e}");
            exit::FAILURE
        })
}

/// `verify`: prints one line per finding and a summary; exit 0 when clean.
fn verify_command(cli: &Cli, args: &crate::cli::VerifyArgs) -> u8 {
    let mut config = match load(cli, |_| Vec::new()) {
        Ok(l) => l.config,
        Err(code) => return code,
    };
    if let Some(url) = &args.archive {
        if let Err(why) = crate::archive::parse_archive_url(url) {
            eprintln!("verify: --archive {url:?} is not an archive URL: {why}");
            return exit::CONFIG;
        }
        config.archive.url = url.clone();
        config.archive.urls.clear();
    }
    let runtime = match runtime() {
        Ok(r) => r,
        Err(code) => return code,
    };
    match runtime.block_on(crate::verify::verify(&config)) {
        Ok(report) => {
            for finding in report.sorted() {
                println!("{finding}");
            }
            println!("{}", report.summary());
            if report.is_clean() {
                exit::OK
            } else {
                exit::VERIFY_FAILED
            }
        }
        Err(e) => {
            eprintln!("verify: {e}");
            exit::FAILURE
        }
    }
}

fn repair_delta_log_command(cli: &Cli) -> u8 {
    let config = match load(cli, |_| Vec::new()) {
        Ok(l) => l.config,
        Err(code) => return code,
    };
    if config.storage.table_format != crate::config::TableFormat::Delta {
        eprintln!(
            "repair-delta-log: storage.table_format is not delta: this dataset has no Delta log"
        );
        return exit::CONFIG;
    }
    let runtime = match runtime() {
        Ok(r) => r,
        Err(code) => return code,
    };
    let stamp = chrono::Utc::now().format("%Y%m%dT%H%M%SZ").to_string();
    match runtime.block_on(crate::delta::repair::repair_damaged_log(&config, &stamp)) {
        Ok(Some(repaired)) => {
            println!(
                "repair-delta-log: the damaged log ({}) was moved to {}; the log was rebuilt from the manifests: {} partitions at version {}",
                repaired.damage, repaired.moved_to, repaired.added, repaired.version
            );
            exit::OK
        }
        Ok(None) => {
            println!("repair-delta-log: the log is not damaged; nothing changed");
            exit::CONFLICT
        }
        Err(e) => {
            eprintln!("repair-delta-log: {e}");
            exit::FAILURE
        }
    }
}

/// What runs beside the pipeline: the metrics endpoint and the records (PAS, catalog).
#[derive(Default)]
struct Services {
    _metrics: Option<metrics::MetricsServer>,
    _rate: Option<metrics::RateTracker>,
    pas: Option<PasStream>,
    catalog: Option<CatalogSink>,
    delta: Option<crate::delta::DeltaSink>,
}

impl Services {
    /// The records, in order: the Delta log right after the manifest, then the original's PAS
    /// and catalog.
    fn records(&self) -> Records {
        Records {
            table: self
                .delta
                .clone()
                .map(|d| std::sync::Arc::new(d) as std::sync::Arc<dyn crate::sequence::TableLog>),
            pas: self
                .pas
                .clone()
                .map(|p| std::sync::Arc::new(p) as std::sync::Arc<dyn crate::sequence::PasLog>),
            catalog: self.catalog.as_ref().map(|c| c.log()),
            tip: self.delta.as_ref().map(|d| d.table().clone()),
        }
    }

    /// Drains the audit stream (until done, its time limit, or a signal) and closes the
    /// catalog after the run.
    async fn finish(&self, result: &Result<RunSummary, RunError>, signal: &CancellationToken) {
        if let Some(pas) = &self.pas {
            pas.finish_unless(matches!(result, Ok(s) if !s.interrupted), signal)
                .await;
        }
        if let Some(catalog) = &self.catalog {
            catalog.finish().await;
        }
    }
}

/// The metrics endpoint (when `metrics.enabled`) and its rate tracker. An address that cannot
/// be bound stops a standalone run (its operator asked for the endpoint); with `optional` (worker
/// mode, where the operator turns it on for the dashboard) the range is copied without it.
async fn start_metrics(
    config: &Config,
    optional: bool,
) -> Result<(Option<metrics::MetricsServer>, Option<metrics::RateTracker>), u8> {
    metrics::init(config);
    if !config.metrics.enabled {
        return Ok((None, None));
    }
    let server = match metrics::serve(&config.metrics.address).await {
        Ok(server) => server,
        Err(e) if optional => {
            tracing::warn!("worker mode: no /metrics endpoint ({e}); copying the range without it");
            return Ok((None, None));
        }
        Err(e) => {
            tracing::error!("{e}");
            eprintln!("bronze-copier: {e}");
            return Err(exit::FAILURE);
        }
    };
    let rate = metrics::RateTracker::start(std::time::Duration::from_secs(
        config.metrics.rate_window_seconds.max(1),
    ));
    Ok((Some(server), Some(rate)))
}

async fn start_services(config: &Config) -> Result<Services, u8> {
    let (metrics_server, rate) = start_metrics(config, false).await?;
    let pas = match crate::pas::open_from_config(config).await {
        Ok(p) => p,
        Err(e) => {
            tracing::error!("cannot start the PAS audit stream: {e}");
            eprintln!("bronze-copier: {e}");
            return Err(exit::pas_code(&e));
        }
    };
    let catalog = match CatalogSink::open(config).await {
        Ok(c) => c,
        Err(e) => {
            tracing::error!(
                exit_code = exit::FAILURE,
                "catalog.strict is set and the catalog is unusable: {e}"
            );
            eprintln!("bronze-copier: catalog.strict is set and the catalog is unusable: {e}");
            return Err(exit::FAILURE);
        }
    };
    let delta = match crate::delta::DeltaSink::open(config).await {
        Ok(d) => d,
        Err(e) => {
            // A table that disagrees with the files (or a damaged log) needs a person, not a
            // retry: exit as a conflict; storage outages are retried.
            let code = if e.is_transient() {
                exit::FAILURE
            } else {
                exit::CONFLICT
            };
            tracing::error!(
                exit_code = code,
                "cannot bring the Delta log up to date: {e}"
            );
            eprintln!("bronze-copier: delta: {e}");
            return Err(code);
        }
    };
    Ok(Services {
        _metrics: metrics_server,
        _rate: rate,
        pas,
        catalog,
        delta,
    })
}

fn health_command(cli: &Cli, args: &HealthArgs) -> u8 {
    let observed = match &args.checkpoint {
        Some(path) => health::observe_file(path),
        None => match load_config(cli.config.as_deref(), |k| std::env::var(k).ok()) {
            Ok(loaded) => health::observe_config(&loaded.config),
            Err(e) => {
                println!("CRITICAL: cannot load the configuration: {e}");
                return health::Status::Critical.exit_code();
            }
        },
    };
    let outcome = health::check(observed, args.max_age_minutes);
    println!("{}", outcome.message);
    outcome.status.exit_code()
}

/// Waits for SIGINT or SIGTERM, cancels the run, and returns the exit code for that signal.
async fn wait_for_signal(cancel: CancellationToken) -> Option<u8> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).ok()?;
    let mut int = signal(SignalKind::interrupt()).ok()?;
    let code = tokio::select! {
        _ = term.recv() => exit::SIGTERM,
        _ = int.recv() => exit::SIGINT,
    };
    tracing::warn!("signal received: finishing the partition being published, then stopping");
    cancel.cancel();
    Some(code)
}

fn generate_command(args: &GenerateArgs) -> u8 {
    logging::init(LogFormat::Text, LogLevel::Info);
    let Some(passphrase) = crate::network::passphrase_for(&args.network) else {
        eprintln!(
            "generate-datastore: --network must be pubnet, testnet or futurenet (got {:?})",
            args.network
        );
        return exit::CONFIG;
    };
    let spec = generate::GenerateSpec {
        ledgers_per_batch: args.ledgers_per_batch,
        batches_per_partition: args.batches_per_partition,
        zstd_level: args.zstd_level,
        ..generate::GenerateSpec::new(
            &args.out,
            args.templates.clone(),
            passphrase,
            args.first_ledger,
            args.ledgers,
        )
    };
    match generate::generate_datastore(&spec) {
        Ok(report) => {
            println!(
                "wrote {} ledgers in {} objects to {} ({:.1} MB of XDR, {:.1} MB compressed)",
                report.ledgers,
                report.objects,
                args.out.display(),
                report.xdr_bytes as f64 / 1e6,
                report.compressed_bytes as f64 / 1e6
            );
            exit::OK
        }
        Err(e) => {
            eprintln!("generate-datastore: {e}");
            exit::FAILURE
        }
    }
}
