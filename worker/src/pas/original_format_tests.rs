//! Compatibility with events written by the original Go implementation:
//! `tests/fixtures/pas-original/` holds events produced by Go's `encoding/json` (see its
//! README), with the exact bytes Go hashed. Our serializer must give the same bytes, hashes,
//! backup files and heads file, and our stream must continue such a chain.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::*;
use crate::partition::LedgerRange;
use crate::pipeline::CommitEvent;

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/pas-original")
}

fn event_files(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            p.is_file()
                && p.extension().is_some_and(|e| e == "json")
                && !p.ends_with(outbox::HEADS_FILE)
        })
        .collect();
    files.sort();
    files
}

#[test]
fn our_bytes_and_hashes_equal_gos_for_every_fixture_event() {
    let mut checked = 0;
    for set in ["chain", "escaping"] {
        let dir = fixtures().join(set);
        for file in event_files(&dir) {
            let bytes = std::fs::read(&file).unwrap();
            let event = PasEvent::from_json(&bytes).unwrap();
            let go_hash_input =
                std::fs::read(dir.join("hash-input").join(file.file_name().unwrap())).unwrap();
            assert_eq!(
                event.hash_input().as_bytes(),
                go_hash_input.as_slice(),
                "{}: compact JSON differs from Go's",
                file.display()
            );
            assert_eq!(
                event.compute_hash(),
                event.chain.event_hash,
                "{}",
                file.display()
            );
            assert_eq!(
                event.to_indented_json().as_bytes(),
                bytes.as_slice(),
                "{}: backup file differs from Go's MarshalIndent",
                file.display()
            );
            checked += 1;
        }
    }
    assert_eq!(checked, 4);
}

#[test]
fn the_escaping_fixture_really_contains_what_it_tests() {
    let dir = fixtures().join("escaping");
    let input = std::fs::read_to_string(
        dir.join("hash-input").join(
            event_files(&dir)[0]
                .file_name()
                .unwrap()
                .to_string_lossy()
                .as_ref(),
        ),
    )
    .unwrap();
    for escaped in [
        r"\u003c", r"\u003e", r"\u0026", r"\u2028", r"\u2029", r"\u0001", r"\t", r"\n", r#"\""#,
        r"\\",
    ] {
        assert!(input.contains(escaped), "{escaped}");
    }
    for raw in ["é日本🚀", "\u{7f}", "9007199254740993", "4294967295"] {
        assert!(input.contains(raw), "{raw}");
    }
    assert!(!input.contains('<') && !input.contains('&'));
}

#[tokio::test]
async fn heads_file_is_written_in_the_original_format() {
    for set in ["chain", "escaping"] {
        let original = std::fs::read(fixtures().join(set).join(outbox::HEADS_FILE)).unwrap();
        let heads: std::collections::BTreeMap<String, String> =
            serde_json::from_slice(&original).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let ob = FileOutbox::open(dir.path()).unwrap();
        for (key, hash) in &heads {
            let mut parts = key.splitn(3, '/');
            let chain = ChainId {
                network: parts.next().unwrap().into(),
                era_id: parts.next().unwrap().into(),
                version_label: parts.next().unwrap().into(),
            };
            ob.record_head(&chain, hash).await.unwrap();
        }
        let ours = std::fs::read(dir.path().join(outbox::HEADS_FILE)).unwrap();
        assert_eq!(
            String::from_utf8(ours).unwrap(),
            String::from_utf8(original).unwrap()
        );
    }
}

fn copy_dir(from: &Path, to: &Path) {
    for file in event_files(from)
        .into_iter()
        .chain([from.join(outbox::HEADS_FILE)])
    {
        std::fs::copy(&file, to.join(file.file_name().unwrap())).unwrap();
    }
}

fn testnet_layout() -> crate::publish::DatasetLayout {
    let mut c = crate::config::Config::default();
    c.era.network = "testnet".into();
    crate::publish::DatasetLayout::from_config(&c)
}

#[tokio::test]
async fn the_original_chain_is_accepted_and_continued() {
    let dir = tempfile::tempdir().unwrap();
    copy_dir(&fixtures().join("chain"), dir.path());
    let outbox: Arc<dyn Outbox> = Arc::new(FileOutbox::open(dir.path()).unwrap());
    let layout = testnet_layout();
    let chain = ChainId::of_layout(&layout);
    let view = analyse(outbox.load(&chain).await.unwrap());
    assert!(view.issues.is_empty(), "{:?}", view.issues);
    assert_eq!(view.events.len(), 3);
    let original_head = view.last().unwrap().event.chain.event_hash.clone();

    let stream = PasStream::open(layout.clone(), outbox.clone(), None)
        .await
        .unwrap();
    assert_eq!(stream.head().await.event_hash, original_head);
    let range = LedgerRange::new(302, 401);
    let manifest = super::event::tests::manifest(302, 401, "sha256:beef");
    let ours = stream
        .record(&CommitEvent {
            range,
            storage_path: layout.storage_path(range),
            parquet_uri: String::new(),
            manifest,
            adopted: false,
            overwrite: false,
            replaced: None,
        })
        .await
        .unwrap()
        .unwrap();
    assert_eq!(ours.chain.prev_event_hash, original_head);
    let view = analyse(outbox.load(&chain).await.unwrap());
    assert!(view.issues.is_empty(), "{:?}", view.issues);
    assert_eq!(view.events.len(), 4);
    assert_eq!(
        outbox.recorded_head(&chain).await.unwrap().unwrap(),
        ours.chain.event_hash
    );
}
