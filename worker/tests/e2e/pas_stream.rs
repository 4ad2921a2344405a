//! The PAS outboxes and stream against real stores: the backup directory, the object-store
//! outbox on local disk and on S3 (moto), and HTTP delivery against a real server.

use std::sync::Arc;
use std::time::Duration;

use bronze::partition::LedgerRange;
use bronze::pas::{
    ChainId, Created, DeliveryConfig, FileOutbox, HttpDelivery, ObjectStoreOutbox, Outbox,
    PasError, PasEvent, PasStream, analyse,
};
use bronze::pipeline::CommitEvent;
use bronze::publish::{DatasetLayout, Manifest, ManifestPartition, ManifestTable, Producer};
use bronze::store::Location;
use bronze_testkit::{Behaviour, HttpSink, MotoS3, Reply};
use object_store::ObjectStore;
use object_store::aws::AmazonS3Builder;
use object_store::local::LocalFileSystem;
use object_store::path::Path as ObjectPath;

fn layout() -> DatasetLayout {
    DatasetLayout {
        prefix: "bronze/".into(),
        network: "testnet".into(),
        era_id: "pre_p23".into(),
        version_label: "v1".into(),
    }
}

fn commit(start: u32, end: u32, checksum: &str) -> CommitEvent {
    let range = LedgerRange::new(start, end);
    CommitEvent {
        range,
        manifest: Manifest {
            partition: ManifestPartition {
                start,
                end,
                era_id: "pre_p23".into(),
                version: "v1".into(),
                network: "testnet".into(),
            },
            tables: [(
                "ledgers_lcm_raw".to_string(),
                ManifestTable {
                    file: format!("part-{start}-{end}.parquet"),
                    checksum: checksum.into(),
                    row_count: u64::from(end - start + 1),
                    byte_size: 999,
                },
            )]
            .into(),
            producer: Producer::current(),
            created_at: "2025-01-01T00:00:00Z".into(),
            chain: None,
            ingested_at: None,
            network_passphrase: None,
            writer: None,
            archive: None,
            manifest_sha256: None,
        },
        storage_path: layout().storage_path(range),
        parquet_uri: String::new(),
        adopted: false,
        overwrite: false,
        replaced: None,
    }
}

fn location(store: Arc<dyn ObjectStore>) -> Location {
    Location {
        store,
        root: ObjectPath::default(),
        uri: "test://".into(),
    }
}

/// What every outbox must do: conditional create, a stream that continues across restarts,
/// refuses to fork against a second writer, and reports what it stores.
async fn exercise(outbox: Arc<dyn Outbox>) {
    let chain = ChainId::of_layout(&layout());
    let a = PasStream::open(layout(), outbox.clone(), None)
        .await
        .unwrap();
    // Two more writers, opened on the empty chain.
    let b = PasStream::open(layout(), outbox.clone(), None)
        .await
        .unwrap();
    let stale = PasStream::open(layout(), outbox.clone(), None)
        .await
        .unwrap();
    let e1 = a
        .record(&commit(2, 101, "sha256:01"))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(e1.chain.prev_event_hash, "");
    // The same partition again (a retry, a resumed run): the stored event, not a new one.
    assert_eq!(
        a.record(&commit(2, 101, "sha256:01"))
            .await
            .unwrap()
            .unwrap(),
        e1
    );
    // A different file for a recorded partition is refused.
    let err = a.record(&commit(2, 101, "sha256:ff")).await.unwrap_err();
    assert!(matches!(err, PasError::EventMismatch { .. }), "{err}");
    // b makes its own event for the same partition on the same head: a's stored one wins.
    assert_eq!(
        b.record(&commit(2, 101, "sha256:01"))
            .await
            .unwrap()
            .unwrap(),
        e1
    );

    let e2 = a
        .record(&commit(102, 201, "sha256:02"))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(e2.chain.prev_event_hash, e1.chain.event_hash);
    assert_eq!(
        b.record(&commit(102, 201, "sha256:02"))
            .await
            .unwrap()
            .unwrap(),
        e2
    );
    // A writer whose head is stale would fork: it is refused.
    let err = stale
        .record(&commit(102, 201, "sha256:02"))
        .await
        .unwrap_err();
    assert!(matches!(err, PasError::Raced { .. }), "{err}");

    // A conditional create never replaces an event.
    let other = PasEvent::for_partition(
        &chain,
        &commit(2, 101, "sha256:zz").manifest,
        "x",
        "",
        chrono::Utc::now(),
    );
    match outbox.create(&other, 0).await.unwrap() {
        Created::Existing(found) => assert_eq!(*found, e1),
        Created::Written => panic!("an event was overwritten"),
    }

    // A restart continues from the stored head.
    let c = PasStream::open(layout(), outbox.clone(), None)
        .await
        .unwrap();
    assert_eq!(c.head().await.event_hash, e2.chain.event_hash);
    let e3 = c
        .record(&commit(202, 301, "sha256:03"))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(e3.chain.prev_event_hash, e2.chain.event_hash);
    // An earlier partition with no event cannot be slotted in behind the head: left out
    // (reported), the chain untouched.
    assert_eq!(c.record(&commit(50, 60, "sha256:04")).await.unwrap(), None);
    assert_eq!(c.head().await.event_hash, e3.chain.event_hash);

    let view = analyse(outbox.load(&chain).await.unwrap());
    assert!(view.issues.is_empty(), "{:?}", view.issues);
    assert_eq!(view.events.len(), 3);
    assert_eq!(
        outbox.recorded_head(&chain).await.unwrap().as_deref(),
        Some(e3.chain.event_hash.as_str())
    );
}

#[tokio::test]
async fn backup_dir_outbox() {
    let dir = tempfile::tempdir().unwrap();
    exercise(Arc::new(FileOutbox::open(dir.path()).unwrap())).await;
    let names: Vec<String> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(
        names.contains(&"testnet_pre_p23_v1_2-101.json".to_string()),
        "{names:?}"
    );
    assert!(names.contains(&"pas-chain-heads.json".to_string()));
    assert!(
        !names.iter().any(|n| n.contains(".tmp")),
        "temp files left: {names:?}"
    );
}

#[tokio::test]
async fn object_store_outbox_on_local_disk() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(LocalFileSystem::new_with_prefix(dir.path()).unwrap());
    exercise(Arc::new(ObjectStoreOutbox::new(location(store), "bronze"))).await;
    assert!(
        dir.path()
            .join("bronze/_pas/testnet/pre_p23/v1/2-101.json")
            .exists()
    );
}

#[tokio::test]
async fn object_store_outbox_on_s3() {
    let s3 = MotoS3::start();
    s3.create_bucket("pas-outbox");
    let store = AmazonS3Builder::new()
        .with_bucket_name("pas-outbox")
        .with_region(s3.region())
        .with_endpoint(s3.endpoint())
        .with_allow_http(true)
        .with_virtual_hosted_style_request(false)
        .with_access_key_id(s3.access_key())
        .with_secret_access_key(s3.secret_key())
        .build()
        .unwrap();
    exercise(Arc::new(ObjectStoreOutbox::new(
        location(Arc::new(store)),
        "bronze/",
    )))
    .await;
    let keys = s3.list_objects("pas-outbox", "");
    assert!(
        keys.iter()
            .any(|k| k == "bronze/_pas/testnet/pre_p23/v1/102-201.json"),
        "{keys:?}"
    );
}

fn http(sink: &HttpSink, timeout_ms: u64) -> HttpDelivery {
    HttpDelivery::new(
        &format!("{}/events", sink.url()),
        Some("tok".into()),
        Duration::from_millis(timeout_ms),
        3,
        Duration::from_millis(20),
    )
    .unwrap()
}

fn some_event() -> PasEvent {
    let chain = ChainId::of_layout(&layout());
    PasEvent::for_partition(
        &chain,
        &commit(2, 101, "sha256:01").manifest,
        "p",
        "",
        chrono::Utc::now(),
    )
}

#[tokio::test]
async fn delivery_retries_then_succeeds_with_the_same_idempotency_key() {
    let sink = HttpSink::start(Behaviour::fail_next(2));
    let e = some_event();
    http(&sink, 2_000).send(&e).await.unwrap();
    let reqs = sink.requests();
    assert_eq!(reqs.len(), 3);
    for r in &reqs {
        assert_eq!(r.header("idempotency-key"), Some(e.event_id.as_str()));
        assert_eq!(r.header("authorization"), Some("Bearer tok"));
        assert_eq!(r.body_text(), e.to_compact_json());
    }
}

#[tokio::test]
async fn delivery_gives_up_after_the_attempts_on_timeouts_drops_and_errors() {
    for behaviour in [
        Behaviour::delay(Duration::from_millis(800)),
        Behaviour::drop_connection(),
        Behaviour::custom(|_| Reply::status(400).with_body("bad event")),
    ] {
        let sink = HttpSink::start(behaviour);
        let err = http(&sink, 200).send(&some_event()).await.unwrap_err();
        let text = err.to_string();
        assert!(text.contains("after 3 attempt(s)"), "{text}");
        assert!(!text.contains("tok\""), "{text}");
        sink.wait_for_requests(3, Duration::from_secs(5));
    }
}

#[tokio::test]
async fn strict_stream_keeps_the_event_when_delivery_fails_and_resends_it_on_open() {
    let sink = HttpSink::start(Behaviour::Status(503));
    let dir = tempfile::tempdir().unwrap();
    let outbox: Arc<dyn Outbox> = Arc::new(FileOutbox::open(dir.path()).unwrap());
    let delivery = || DeliveryConfig {
        http: http(&sink, 1_000),
        strict: true,
    };
    let s = PasStream::open(layout(), outbox.clone(), Some(delivery()))
        .await
        .unwrap();
    let err = s.record(&commit(2, 101, "sha256:01")).await.unwrap_err();
    assert!(matches!(err, PasError::Delivery(_)), "{err}");
    assert_eq!(s.pending(), 1);
    // Still down: opening fails (strict re-sends first).
    assert!(
        PasStream::open(layout(), outbox.clone(), Some(delivery()))
            .await
            .is_err()
    );
    sink.set_behaviour(Behaviour::ok());
    let s = PasStream::open(layout(), outbox.clone(), Some(delivery()))
        .await
        .unwrap();
    assert_eq!(s.pending(), 0);
    let last = sink.requests().pop().unwrap();
    let stored = analyse(outbox.load(&ChainId::of_layout(&layout())).await.unwrap());
    assert_eq!(last.body_text(), stored.events[0].event.to_compact_json());
}

/// A crash after an event was stored but before the head was recorded: the next start takes the
/// stored event as the head, and the partition, presented again, keeps that event.
#[tokio::test]
async fn crash_between_storing_an_event_and_recording_the_head() {
    let dir = tempfile::tempdir().unwrap();
    let outbox: Arc<dyn Outbox> = Arc::new(FileOutbox::open(dir.path()).unwrap());
    let chain = ChainId::of_layout(&layout());
    let s = PasStream::open(layout(), outbox.clone(), None)
        .await
        .unwrap();
    let e1 = s
        .record(&commit(2, 101, "sha256:01"))
        .await
        .unwrap()
        .unwrap();
    // The "crashed" write: event 2 stored, head still at event 1.
    let e2 = PasEvent::for_partition(
        &chain,
        &commit(102, 201, "sha256:02").manifest,
        &layout().storage_path(LedgerRange::new(102, 201)),
        &e1.chain.event_hash,
        chrono::Utc::now(),
    );
    assert_eq!(outbox.create(&e2, 0).await.unwrap(), Created::Written);
    assert_eq!(
        outbox.recorded_head(&chain).await.unwrap().unwrap(),
        e1.chain.event_hash
    );
    let s = PasStream::open(layout(), outbox.clone(), None)
        .await
        .unwrap();
    assert_eq!(s.head().await.event_hash, e2.chain.event_hash);
    assert_eq!(
        outbox.recorded_head(&chain).await.unwrap().unwrap(),
        e2.chain.event_hash,
        "the recorded head is repaired"
    );
    let mut again = commit(102, 201, "sha256:02");
    again.adopted = true;
    assert_eq!(s.record(&again).await.unwrap().unwrap(), e2);
    let e3 = s
        .record(&commit(202, 301, "sha256:03"))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(e3.chain.prev_event_hash, e2.chain.event_hash);
}

/// A store whose conditional create does not hold: an S3-compatible store that ignores
/// `If-None-Match`, or moto when two requests interleave between its existence check and its
/// write (seen once in a CI run: two operators both "created" the event of 2-11).
#[derive(Debug)]
struct CreateIsOverwrite(Arc<dyn ObjectStore>);

impl std::fmt::Display for CreateIsOverwrite {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "CreateIsOverwrite({})", self.0)
    }
}

#[async_trait::async_trait]
impl ObjectStore for CreateIsOverwrite {
    async fn put_opts(
        &self,
        location: &ObjectPath,
        payload: object_store::PutPayload,
        mut opts: object_store::PutOptions,
    ) -> object_store::Result<object_store::PutResult> {
        if matches!(opts.mode, object_store::PutMode::Create) {
            opts.mode = object_store::PutMode::Overwrite;
        }
        self.0.put_opts(location, payload, opts).await
    }

    async fn put_multipart_opts(
        &self,
        location: &ObjectPath,
        opts: object_store::PutMultipartOptions,
    ) -> object_store::Result<Box<dyn object_store::MultipartUpload>> {
        self.0.put_multipart_opts(location, opts).await
    }

    async fn get_opts(
        &self,
        location: &ObjectPath,
        options: object_store::GetOptions,
    ) -> object_store::Result<object_store::GetResult> {
        self.0.get_opts(location, options).await
    }

    fn delete_stream(
        &self,
        locations: futures::stream::BoxStream<'static, object_store::Result<ObjectPath>>,
    ) -> futures::stream::BoxStream<'static, object_store::Result<ObjectPath>> {
        self.0.delete_stream(locations)
    }

    fn list(
        &self,
        prefix: Option<&ObjectPath>,
    ) -> futures::stream::BoxStream<'static, object_store::Result<object_store::ObjectMeta>> {
        self.0.list(prefix)
    }

    async fn list_with_delimiter(
        &self,
        prefix: Option<&ObjectPath>,
    ) -> object_store::Result<object_store::ListResult> {
        self.0.list_with_delimiter(prefix).await
    }

    async fn copy_opts(
        &self,
        from: &ObjectPath,
        to: &ObjectPath,
        options: object_store::CopyOptions,
    ) -> object_store::Result<()> {
        self.0.copy_opts(from, to, options).await
    }
}

/// Two operators sequence the same partition on the same head at different moments, and the
/// store lets both creates through: the second overwrites the first. Each keeps the event it
/// wrote as the head, and whichever status write wins, the next event must link to what is
/// stored. So the event of a partition on a given head is the same bytes whoever writes it
/// and whenever: a racing write changes nothing.
#[tokio::test]
async fn two_writers_whose_creates_both_succeed_still_write_one_chain() {
    let dir = tempfile::tempdir().unwrap();
    let disk: Arc<dyn ObjectStore> =
        Arc::new(LocalFileSystem::new_with_prefix(dir.path()).unwrap());
    let store: Arc<dyn ObjectStore> = Arc::new(CreateIsOverwrite(disk));
    let outbox: Arc<dyn Outbox> = Arc::new(ObjectStoreOutbox::new(location(store), "bronze"));
    let a = PasStream::open(layout(), outbox.clone(), None)
        .await
        .unwrap();
    let b = PasStream::open(layout(), outbox.clone(), None)
        .await
        .unwrap();

    let first = commit(2, 11, "sha256:aa").manifest;
    let (by_a, _) = a
        .append_after(LedgerRange::new(2, 11), &first, "")
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(20)).await; // B's clock has moved on
    let (by_b, _) = b
        .append_after(LedgerRange::new(2, 11), &first, "")
        .await
        .unwrap();
    assert_eq!(
        by_a, by_b,
        "two writers of one partition's event on one head wrote different events"
    );

    // A's status write won: the next partition links to A's event.
    let second = commit(12, 21, "sha256:bb").manifest;
    a.append_after(LedgerRange::new(12, 21), &second, &by_a.chain.event_hash)
        .await
        .unwrap();
    let view = analyse(outbox.load(&ChainId::of_layout(&layout())).await.unwrap());
    assert!(
        view.issues.is_empty(),
        "the chain forked: {:?}",
        view.issues
    );
    assert_eq!(view.events.len(), 2);
}
