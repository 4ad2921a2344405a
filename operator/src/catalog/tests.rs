//! The operator's catalog against real components: a datastore generated on local disk,
//! partitions committed by the worker's own `run_range` (what a Job runs), the operator's storage
//! reader and sequencer with the real PAS outbox, a real PostgreSQL (behind a loopback gate that
//! can take the database away and bring it back), and `bronze::verify` (what `bronze-copier
//! verify` runs with `catalog.postgres_dsn`) as the judge.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use bronze_testkit::Postgres;
use serde_json::json;
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

use super::*;
use crate::pas::{PasOutboxLog, pas_config};
use crate::plan::Sequenced;
use crate::sequencer::{DatasetStore, SequenceStart, sequence};
use crate::storage::{ObjectStorageFactory, StorageFactory};

const INGESTED_AT: &str = "2025-01-15T10:00:00Z";
/// Ledgers 2..=41: four partitions of ten.
const LEDGERS: u32 = 40;

use crate::fixtures::committed_local_backfill;

/// A loopback TCP forwarder to PostgreSQL that can refuse connections and cut the open ones:
/// the database "goes down" and "comes back" without losing its data.
struct Gate {
    port: u16,
    up: Arc<AtomicBool>,
    open: Arc<Mutex<Vec<JoinHandle<()>>>>,
    accept: JoinHandle<()>,
}

impl Gate {
    async fn start(target: u16) -> Gate {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let up = Arc::new(AtomicBool::new(true));
        let open: Arc<Mutex<Vec<JoinHandle<()>>>> = Arc::default();
        let accept = {
            let (up, open) = (up.clone(), open.clone());
            tokio::spawn(async move {
                while let Ok((mut inbound, _)) = listener.accept().await {
                    if !up.load(Ordering::SeqCst) {
                        drop(inbound); // refused
                        continue;
                    }
                    let forward = tokio::spawn(async move {
                        if let Ok(mut out) = TcpStream::connect(("127.0.0.1", target)).await {
                            let _ = tokio::io::copy_bidirectional(&mut inbound, &mut out).await;
                        }
                    });
                    open.lock().unwrap().push(forward);
                }
            })
        };
        Gate {
            port,
            up,
            open,
            accept,
        }
    }

    fn set_up(&self, up: bool) {
        self.up.store(up, Ordering::SeqCst);
        if !up {
            for connection in self.open.lock().unwrap().drain(..) {
                connection.abort();
            }
        }
    }
}

impl Drop for Gate {
    fn drop(&mut self) {
        self.accept.abort();
        self.set_up(false);
    }
}

/// A backfill whose partitions are all committed by the worker, with a catalog database.
struct Backfill {
    _dir: tempfile::TempDir,
    spec: BronzeBackfillSpec,
    pg: Postgres,
    gate: Gate,
}

impl Backfill {
    async fn committed(strict: bool) -> Backfill {
        let dir = tempfile::tempdir().unwrap();
        let spec = committed_local_backfill(
            dir.path(),
            "cat",
            LEDGERS,
            INGESTED_AT,
            json!({
                "pas": {"enabled": true},
                "catalog": {"dsnEnv": "BRONZE_CATALOG_DSN", "strict": strict},
            }),
        )
        .await;
        let pg = Postgres::start();
        pg.create_database("catalog");
        let gate = Gate::start(pg.port()).await;
        Backfill {
            _dir: dir,
            spec,
            pg,
            gate,
        }
    }

    /// The DSN the operator uses: through the gate, failing fast when it is down.
    fn dsn(&self) -> String {
        format!(
            "postgres://postgres@127.0.0.1:{}/catalog?connect_timeout=2",
            self.gate.port
        )
    }

    /// A freshly started operator's catalog (nothing cached).
    fn catalog(&self) -> PgCatalog {
        PgCatalog::new(catalog_config(&self.spec, &self.dsn()).unwrap()).unwrap()
    }

    fn pas(&self) -> PasOutboxLog {
        PasOutboxLog::new(pas_config(&self.spec).unwrap()).unwrap()
    }

    fn dataset(&self) -> Arc<dyn DatasetStore> {
        ObjectStorageFactory::default()
            .dataset("ns/cat", &self.spec)
            .unwrap()
    }

    /// One reconcile's sequencing.
    async fn sequence(
        &self,
        pas: &PasOutboxLog,
        catalog: &dyn CatalogLog,
        start: SequenceStart,
        steps: usize,
    ) -> Sequenced {
        sequence(
            &self.spec,
            INGESTED_AT,
            start,
            self.dataset().as_ref(),
            Some(pas),
            Some(catalog),
            steps,
        )
        .await
    }

    /// What `bronze-copier verify` reports with the catalog configured (directly, not through
    /// the gate): partitions, the PAS chain and the catalog against storage.
    async fn verify(&self) -> bronze::verify::Report {
        let mut config = pas_config(&self.spec).unwrap();
        config.catalog.postgres_dsn = self.pg.dsn_for("catalog");
        bronze::verify::verify(&config).await.unwrap()
    }

    fn lineage_rows(&self) -> Vec<String> {
        self.pg
            .psql_in(
                "catalog",
                "SELECT ledger_start || '-' || ledger_end FROM _meta_lineage ORDER BY ledger_start",
            )
            .lines()
            .map(str::to_string)
            .collect()
    }

    fn count(&self, table: &str) -> usize {
        self.pg
            .psql_in("catalog", &format!("SELECT count(*) FROM {table}"))
            .trim()
            .parse()
            .unwrap()
    }
}

fn after(seq: &Sequenced) -> SequenceStart {
    SequenceStart {
        checkpoint: seq.checkpoint.clone(),
        chain_head: seq.chain_head.clone(),
        event_count: seq.event_count,
    }
}

fn through(seq: &Sequenced) -> Option<u32> {
    seq.checkpoint.as_ref().map(|c| c.last_committed_ledger)
}

const ALL: [&str; 4] = ["2-11", "12-21", "22-31", "32-41"];

fn assert_clean(report: &bronze::verify::Report) {
    assert!(report.is_clean(), "{:#?}", report.findings);
    assert_eq!(report.warnings(), 0, "{:#?}", report.findings);
    assert_eq!(report.partitions, 4);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_operators_catalog_verifies_clean_and_restarts_or_status_loss_duplicate_nothing() {
    let b = Backfill::committed(true).await;
    let (pas, catalog) = (b.pas(), b.catalog());
    let first = b
        .sequence(&pas, &catalog, SequenceStart::default(), 2)
        .await;
    assert_eq!(through(&first), Some(21), "{first:?}");
    let cat = first.catalog.as_ref().unwrap();
    assert_eq!(cat.recorded_through, Some(Some(21)));
    assert_eq!(cat.error, None);
    assert!(!cat.database.contains("password"), "{}", cat.database);
    assert_eq!(b.lineage_rows(), ["2-11", "12-21"]);
    let rest = b.sequence(&pas, &catalog, after(&first), 10).await;
    assert_eq!(through(&rest), Some(41), "{rest:?}");
    assert_eq!(
        rest.catalog.as_ref().unwrap().recorded_through,
        Some(Some(41))
    );
    assert_eq!(b.lineage_rows(), ALL);
    assert_eq!(b.count("_meta_quality"), 4);
    assert_eq!(b.count("_meta_datasets"), 1);
    assert_clean(&b.verify().await);

    // A restarted operator (nothing cached) with its status: nothing to write.
    let restarted = b.sequence(&b.pas(), &b.catalog(), after(&rest), 10).await;
    assert!(restarted.newly.is_empty());
    assert_eq!(
        restarted.catalog.as_ref().unwrap().recorded_through,
        Some(Some(41))
    );
    // A restarted operator that lost its status re-sequences everything: rows are updated,
    // never duplicated, and the chain is the same.
    let lost = b
        .sequence(&b.pas(), &b.catalog(), SequenceStart::default(), 10)
        .await;
    assert_eq!(lost.newly.len(), 4, "{lost:?}");
    assert_eq!(lost.chain_head, rest.chain_head);
    assert_eq!(b.lineage_rows(), ALL);
    assert_eq!(b.count("_meta_quality"), 4);
    assert_eq!(b.count("_meta_datasets"), 1);
    assert_clean(&b.verify().await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn strict_catalog_down_holds_the_checkpoint_and_it_catches_up_when_back() {
    let b = Backfill::committed(true).await;
    let (pas, catalog) = (b.pas(), b.catalog());
    let first = b
        .sequence(&pas, &catalog, SequenceStart::default(), 2)
        .await;
    assert_eq!(through(&first), Some(21));

    b.gate.set_up(false);
    let held = b.sequence(&pas, &catalog, after(&first), 10).await;
    assert_eq!(through(&held), Some(21), "the checkpoint holds: {held:?}");
    assert!(held.newly.is_empty());
    let trouble = held.trouble.as_deref().expect("the reason is in status");
    assert!(trouble.starts_with("catalog: "), "{trouble}");
    assert!(held.catalog.as_ref().unwrap().error.is_some());
    // Again (the next reconcile), still down: still held.
    let still = b.sequence(&pas, &catalog, after(&held), 10).await;
    assert_eq!(through(&still), Some(21));
    assert_eq!(b.lineage_rows(), ["2-11", "12-21"]);

    b.gate.set_up(true);
    let back = b.sequence(&pas, &catalog, after(&still), 10).await;
    assert_eq!(through(&back), Some(41), "{back:?}");
    assert_eq!(back.trouble, None);
    assert_eq!(back.catalog.as_ref().unwrap().error, None);
    assert_eq!(
        back.catalog.as_ref().unwrap().recorded_through,
        Some(Some(41))
    );
    assert_eq!(b.lineage_rows(), ALL);
    assert_clean(&b.verify().await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lenient_catalog_down_warns_sequences_on_and_a_later_reconcile_fills_the_rows() {
    let b = Backfill::committed(false).await;
    let (pas, catalog) = (b.pas(), b.catalog());
    let first = b
        .sequence(&pas, &catalog, SequenceStart::default(), 1)
        .await;
    assert_eq!(through(&first), Some(11));

    b.gate.set_up(false);
    let on = b.sequence(&pas, &catalog, after(&first), 10).await;
    assert_eq!(
        through(&on),
        Some(41),
        "lenient: sequencing goes on: {on:?}"
    );
    assert_eq!(on.trouble, None);
    let cat = on.catalog.as_ref().unwrap();
    assert!(
        cat.error.as_deref().unwrap().starts_with("catalog: "),
        "{cat:?}"
    );
    assert_eq!(b.lineage_rows(), ["2-11"]);
    // The plan warns and keeps the last known recordedThrough.
    let plan = crate::plan::plan(&crate::plan::PlanInput {
        name: "cat",
        spec: &b.spec,
        generation: Some(1),
        previous: None,
        ingested_at: INGESTED_AT,
        sequenced: &on,
        jobs: &[],
        tip: None,
        hole: None,
        now: chrono::Utc::now(),
    });
    assert!(plan.events.iter().any(|e| e.reason == "CatalogBehind"));
    assert!(plan.status.catalog.as_ref().unwrap().last_error.is_some());

    // Back: a reconcile with nothing new to sequence writes the missing rows, in ledger order.
    b.gate.set_up(true);
    let caught = b.sequence(&pas, &catalog, after(&on), 10).await;
    assert!(caught.newly.is_empty());
    let cat = caught.catalog.as_ref().unwrap();
    assert_eq!(cat.error, None);
    assert_eq!(cat.recorded_through, Some(Some(41)));
    assert_eq!(b.lineage_rows(), ALL);
    assert_clean(&b.verify().await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rows_missing_below_the_checkpoint_are_written_by_a_restarted_operator() {
    // A catalog added to a running backfill, or rows lost: derived from the catalog itself.
    let b = Backfill::committed(false).await;
    let pas = b.pas();
    let plain = sequence(
        &b.spec,
        INGESTED_AT,
        SequenceStart::default(),
        b.dataset().as_ref(),
        Some(&pas),
        None,
        10,
    )
    .await;
    assert_eq!(through(&plain), Some(41));
    let catalog = b.catalog();
    // The per-reconcile limit applies to the catch-up too.
    let some = b.sequence(&pas, &catalog, after(&plain), 3).await;
    assert!(some.more);
    assert_eq!(b.lineage_rows(), ["2-11", "12-21", "22-31"]);
    let all = b.sequence(&pas, &catalog, after(&some), 3).await;
    assert!(!all.more);
    assert_eq!(
        all.catalog.as_ref().unwrap().recorded_through,
        Some(Some(41))
    );
    assert_clean(&b.verify().await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_dsn_variable_is_a_clear_failure_strict_or_lenient() {
    let b = Backfill::committed(true).await;
    let factory = PgCatalogFactory::with_env(|_| None);
    let catalog = factory.open("ns/cat", &b.spec).unwrap();
    let pas = b.pas();
    let held = b
        .sequence(&pas, catalog.as_ref(), SequenceStart::default(), 10)
        .await;
    assert_eq!(through(&held), None);
    let trouble = held.trouble.unwrap();
    assert!(trouble.contains("BRONZE_CATALOG_DSN"), "{trouble}");
    assert!(trouble.contains("not set"), "{trouble}");

    let mut lenient = b.spec.clone();
    lenient.catalog.as_mut().unwrap().strict = false;
    let catalog = factory.open("ns/cat", &lenient).unwrap();
    let on = sequence(
        &lenient,
        INGESTED_AT,
        SequenceStart::default(),
        b.dataset().as_ref(),
        Some(&pas),
        Some(catalog.as_ref()),
        10,
    )
    .await;
    assert_eq!(through(&on), Some(41));
    assert!(
        on.catalog
            .unwrap()
            .error
            .unwrap()
            .contains("BRONZE_CATALOG_DSN")
    );
    // Without spec.catalog there is no catalog at all.
    let mut none = b.spec.clone();
    none.catalog = None;
    assert!(factory.open("ns/cat", &none).is_none());
}

/// The operator's catalog over TLS: a PostgreSQL that takes TLS connections only, `verify-full`
/// with the test CA writes every row and `verify` reads them back over TLS; a wrong CA holds a
/// strict checkpoint with a clear error, no password in it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_operators_catalog_over_verified_tls() {
    use bronze_testkit::{PgOptions, TestCa};
    const PASSWORD: &str = "op-tls-s3cret";
    let dir = tempfile::tempdir().unwrap();
    let spec = committed_local_backfill(
        dir.path(),
        "cat",
        LEDGERS,
        INGESTED_AT,
        json!({
            "pas": {"enabled": true},
            "catalog": {"dsnEnv": "BRONZE_CATALOG_DSN", "strict": true},
        }),
    )
    .await;
    let ca = TestCa::new("Bronze operator test CA");
    let pg = Postgres::start_with(&PgOptions {
        tls: Some(ca.server_cert(&["catalog.bronze.test"], &[])),
        tls_only: true,
    });
    pg.create_database("catalog");
    let dsn = |root: &std::path::Path| {
        format!(
            "host=catalog.bronze.test hostaddr=127.0.0.1 port={} user=postgres password={PASSWORD} dbname=catalog connect_timeout=5 sslmode=verify-full sslrootcert={}",
            pg.port(),
            root.display()
        )
    };
    let dataset = ObjectStorageFactory::default()
        .dataset("ns/cat", &spec)
        .unwrap();
    let pas = PasOutboxLog::new(pas_config(&spec).unwrap()).unwrap();

    // A CA that did not sign the server's certificate: nothing recorded, the checkpoint waits.
    let other = TestCa::new("Another CA");
    let wrong = PgCatalog::new(catalog_config(&spec, &dsn(&other.cert())).unwrap()).unwrap();
    let held = sequence(
        &spec,
        INGESTED_AT,
        SequenceStart::default(),
        dataset.as_ref(),
        Some(&pas),
        Some(&wrong),
        10,
    )
    .await;
    assert_eq!(through(&held), None, "{held:?}");
    let error = held.catalog.as_ref().unwrap().error.clone().unwrap();
    assert!(error.contains("UnknownIssuer"), "{error}");
    assert!(!error.contains(PASSWORD), "{error}");

    let catalog = PgCatalog::new(catalog_config(&spec, &dsn(&ca.cert())).unwrap()).unwrap();
    let done = sequence(
        &spec,
        INGESTED_AT,
        SequenceStart::default(),
        dataset.as_ref(),
        Some(&pas),
        Some(&catalog),
        10,
    )
    .await;
    assert_eq!(through(&done), Some(41), "{done:?}");
    assert_eq!(
        done.catalog.as_ref().unwrap().recorded_through,
        Some(Some(41))
    );
    assert_eq!(
        pg.psql_in("catalog", "SELECT count(*) FROM _meta_lineage"),
        "4"
    );
    let mut config = pas_config(&spec).unwrap();
    config.catalog.postgres_dsn = dsn(&ca.cert());
    assert_clean(&bronze::verify::verify(&config).await.unwrap());
}
