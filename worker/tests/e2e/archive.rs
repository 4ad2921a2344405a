//! Every ledger checked against a Stellar history archive: an archive built by the test from the
//! datastore's own ledgers exactly as stellar-core lays it out (each LedgerCloseMeta's
//! LedgerHeaderHistoryEntry, record-marked, gzipped, at its checkpoint's path, with a HAS),
//! served over loopback HTTP (an in-process static server) and from moto S3. A good archive
//! passes and is recorded in the manifests; an archive that disagrees on one ledger, a missing
//! or truncated checkpoint file, another network's archive, an HTML page, a redirect and an
//! unreachable archive each stop the copy with a clear error, nothing unchecked committed.

use std::path::{Path, PathBuf};

use bronze::archive::{
    HAS_PATH, WrittenArchive, decode_checkpoint_file, encode_checkpoint_file, entry_of_lcm,
    ledger_file_path, write_archive,
};
use bronze_testkit::{FileServer, MotoS3, Scripted};
use sha2::{Digest, Sha256};

use crate::binary::{describe, exec, text};
use crate::datastore::{TESTNET, object_files, unzstd};
use crate::harness::{Harness, has_problem};

/// Ledgers 2..=127 (checkpoints 63 and 127, both complete), partitions of 21.
const LEDGERS: u32 = 126;
const PUBNET: &str = "Public Global Stellar Network ; September 2015";

/// Every LedgerCloseMeta of a local datastore, in ledger order.
fn datastore_ledgers(datastore: &Path) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    for object in object_files(datastore) {
        let batch = unzstd(&std::fs::read(object).unwrap());
        let view = bronze_ledger::split_batch(&batch).unwrap();
        out.extend(view.ledgers.iter().map(|l| l.to_vec()));
    }
    out.sort_by_key(|lcm| entry_of_lcm(lcm).unwrap().0.ledger);
    out
}

/// A history archive of `h`'s datastore in `h`'s work dir (`archive/`).
fn build_archive(h: &Harness) -> (PathBuf, WrittenArchive) {
    let dir = h.path("archive");
    let lcms = datastore_ledgers(&h.datastore);
    let written = write_archive(&dir, TESTNET, lcms.iter().map(Vec::as_slice)).unwrap();
    (dir, written)
}

fn with_archive(h: Harness, url: &str) -> Harness {
    h.yaml(&format!("archive:\n  url: \"{url}\"\n"))
}

fn harness() -> Harness {
    Harness::testnet(LEDGERS)
        .partition_size(21)
        .perf("max_in_flight_partitions", 1)
}

/// Rewrites one ledger's entry in the archive (its ledger hash flipped): the archive now
/// disagrees with the datastore on that ledger alone.
fn falsify(archive: &Path, ledger: u32) -> String {
    let checkpoint = bronze::archive::checkpoint_of(ledger);
    let path = ledger_file_path(checkpoint);
    let bytes = std::fs::read(archive.join(&path)).unwrap();
    let file = decode_checkpoint_file(checkpoint, &path, &bytes).unwrap();
    let entries: Vec<Vec<u8>> = file
        .entries
        .iter()
        .map(|e| {
            let mut hash = e.hash;
            if e.ledger == ledger {
                hash[0] ^= 0xff;
            }
            let mut xdr = hash.to_vec();
            xdr.extend_from_slice(&e.header);
            xdr.extend_from_slice(&[0, 0, 0, 0]);
            xdr
        })
        .collect();
    std::fs::write(archive.join(&path), encode_checkpoint_file(&entries)).unwrap();
    path
}

fn sha256_of(path: &Path) -> String {
    format!(
        "sha256:{}",
        hex::encode(Sha256::digest(std::fs::read(path).unwrap()))
    )
}

#[test]
fn a_good_archive_over_http_passes_and_each_manifest_records_its_files() {
    let h = harness();
    let (dir, written) = build_archive(&h);
    assert_eq!(written.newest, 127);
    let server = FileServer::start(&dir);
    let h = with_archive(h, &server.url());
    let log = h.run_expect(0);
    assert_eq!(h.committed().len(), 6, "{log}");

    for manifest in h.manifests() {
        let anchor = manifest.archive.as_ref().expect("an archive anchor");
        assert_eq!(anchor.archives, vec![server.url()]);
        assert_eq!(anchor.unanchored_from, None);
        let range = manifest.range();
        let wanted: Vec<String> = bronze::archive::checkpoints_covering(range)
            .map(ledger_file_path)
            .collect();
        let paths: Vec<&str> = anchor.files.iter().map(|f| f.path.as_str()).collect();
        assert_eq!(paths, wanted, "partition {range}");
        for f in &anchor.files {
            assert_eq!(f.sha256, sha256_of(&dir.join(&f.path)), "{}", f.path);
        }
    }
    // Each checkpoint file is fetched once by the run, whatever the partitions needing it.
    let requests = server.requests();
    for file in &written.files {
        assert_eq!(
            requests.iter().filter(|r| *r == file).count(),
            1,
            "{file}: {requests:?}"
        );
    }
    // verify with the config's archive: clean.
    h.assert_verifies();
}

#[test]
fn an_archive_disagreeing_on_one_ledger_refuses_that_partition_and_verify_names_it() {
    let h = harness();
    let (dir, _) = build_archive(&h);
    let good = FileServer::start(&dir);
    // A clean copy of the same datastore first (anchored to the good archive), to verify
    // against the bad one.
    let clean = with_archive(harness().datastore(h.datastore.clone()), &good.url());
    clean.run_expect(0);
    clean.assert_verifies();

    let bad_dir = h.path("bad-archive");
    copy_dir(&dir, &bad_dir);
    let path = falsify(&bad_dir, 50);
    let bad = FileServer::start(&bad_dir);
    let h = with_archive(h, &bad.url());
    let log = h.run_expect(3);
    assert!(log.contains("ledger 50") && log.contains(&path), "{log}");
    assert!(log.contains("partition 44-64"), "{log}");
    assert_eq!(h.committed(), vec![(2, 22), (23, 43)], "{log}");
    assert_eq!(h.checkpoint_ledger(), Some(43), "{log}");
    assert!(
        !h.manifest_path(44, 64).exists(),
        "nothing committed for the partition"
    );

    // verify --archive with the bad archive names the ledger, the partition and the file.
    let out = exec(&mut clean.command(&["verify", "--archive", &bad.url()]));
    let stdout = text(&out);
    assert_eq!(out.status.code(), Some(5), "{}", describe(&out));
    assert!(
        has_problem(&stdout, "44-64", "archive.disagree"),
        "{stdout}"
    );
    assert!(
        stdout.contains("ledger 50") && stdout.contains(&path),
        "{stdout}"
    );
    assert_eq!(
        stdout.matches("archive.disagree").count(),
        1,
        "one ledger disagrees: {stdout}"
    );
}

fn copy_dir(from: &Path, to: &Path) {
    for entry in walk(from) {
        let rel = entry.strip_prefix(from).unwrap();
        std::fs::create_dir_all(to.join(rel).parent().unwrap()).unwrap();
        std::fs::copy(&entry, to.join(rel)).unwrap();
    }
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else {
            out.push(p);
        }
    }
    out
}

/// Runs `h` over a damaged archive (served over HTTP), expecting exit `code`, with the
/// partitions `committed`; returns the log.
fn run_damaged(
    damage: impl FnOnce(&Path, &FileServer),
    code: i32,
    committed: &[(u32, u32)],
) -> String {
    let h = harness();
    let (dir, _) = build_archive(&h);
    let server = FileServer::start(&dir);
    damage(&dir, &server);
    let h = with_archive(h, &server.url());
    let log = h.run_expect(code);
    assert_eq!(h.committed(), committed, "{log}");
    log
}

#[test]
fn a_missing_checkpoint_file_is_named_and_nothing_unchecked_is_committed() {
    let path = ledger_file_path(127);
    let log = run_damaged(
        |dir, _| std::fs::remove_file(dir.join(ledger_file_path(127))).unwrap(),
        3,
        &[(2, 22), (23, 43)],
    );
    assert!(log.contains(&path) && log.contains("missing"), "{log}");
}

#[test]
fn a_truncated_gzip_is_named() {
    let path = ledger_file_path(63);
    let log = run_damaged(
        |dir, _| {
            let file = dir.join(ledger_file_path(63));
            let bytes = std::fs::read(&file).unwrap();
            std::fs::write(&file, &bytes[..bytes.len() * 2 / 3]).unwrap();
        },
        3,
        &[],
    );
    assert!(log.contains(&path) && log.contains("truncated"), "{log}");
}

#[test]
fn an_html_page_instead_of_a_gzip_and_a_redirect_are_named() {
    let path = ledger_file_path(63);
    let log = run_damaged(
        |_, server| {
            server.script(
                &ledger_file_path(63),
                Scripted {
                    status: 200,
                    headers: vec![("Content-Type".into(), "text/html".into())],
                    body: b"<!DOCTYPE html><html><body>Access denied</body></html>".to_vec(),
                },
            )
        },
        3,
        &[],
    );
    assert!(log.contains(&path) && log.contains("HTML page"), "{log}");

    let log = run_damaged(
        |_, server| {
            server.script(
                HAS_PATH,
                Scripted {
                    status: 302,
                    headers: vec![("Location".into(), "https://login.example/".into())],
                    body: Vec::new(),
                },
            )
        },
        2,
        &[],
    );
    assert!(
        log.contains("redirect") && log.contains("https://login.example/"),
        "{log}"
    );
}

#[test]
fn the_archive_of_another_network_is_refused_before_anything_is_copied() {
    let log = run_damaged(
        |dir, _| {
            let has = std::fs::read_to_string(dir.join(HAS_PATH)).unwrap();
            std::fs::write(dir.join(HAS_PATH), has.replace(TESTNET, PUBNET)).unwrap();
        },
        2,
        &[],
    );
    assert!(log.contains(PUBNET) && log.contains(TESTNET), "{log}");
}

#[test]
fn an_unreachable_archive_is_retried_then_a_clear_error() {
    let h = harness();
    // A port nothing listens on.
    let url = format!("http://127.0.0.1:{}", bronze_testkit::free_port());
    let h = with_archive(h, &url);
    let log = h.run_expect(1);
    assert!(
        log.contains(&url) && log.contains("unreachable after 10 attempts"),
        "{log}"
    );
    assert!(log.contains("retrying"), "retried first: {log}");
    assert!(h.committed().is_empty(), "{log}");
}

#[test]
fn an_archive_in_s3_and_ledgers_beyond_its_newest_checkpoint() {
    let s3 = MotoS3::start();
    // Ledgers 2..=150: 128-150 are beyond the archive's newest checkpoint (127).
    let h = Harness::testnet(149)
        .partition_size(21)
        .perf("max_in_flight_partitions", 1)
        .envs(s3.env());
    let (dir, written) = build_archive(&h);
    assert_eq!(written.newest, 127);
    s3.create_bucket("archive");
    for file in walk(&dir) {
        let rel = file
            .strip_prefix(&dir)
            .unwrap()
            .to_string_lossy()
            .to_string();
        s3.put_object(
            "archive",
            &format!("core/{rel}"),
            std::fs::read(&file).unwrap(),
        );
    }
    let h = h.yaml(&format!(
        "archive:\n  url: \"s3://archive/core\"\n  s3_endpoint: \"{}\"\n  s3_region: \"{}\"\n",
        s3.endpoint(),
        s3.region()
    ));
    // A bounded run stops at the first partition the archive cannot check yet.
    let log = h.run_expect(3);
    assert!(
        log.contains("ledger 128") && log.contains("allow_unanchored"),
        "{log}"
    );
    assert_eq!(h.committed().len(), 6, "2-127 checked and committed: {log}");

    // Allowed: committed, and recorded as unanchored from ledger 128.
    let h = h.yaml("  allow_unanchored: true\n");
    let log = h.run_expect(0);
    let manifests = h.manifests();
    assert_eq!(manifests.len(), 8, "{log}");
    let unanchored: Vec<_> = manifests
        .iter()
        .map(|m| (m.range().start, m.archive.as_ref().unwrap().unanchored_from))
        .collect();
    assert_eq!(
        unanchored[5..],
        [(107, None), (128, Some(128)), (149, Some(149))],
        "{log}"
    );
    assert!(manifests[6].archive.as_ref().unwrap().files.is_empty());
    assert!(
        log.contains("allow_unanchored"),
        "said so in the log: {log}"
    );
}

#[test]
fn two_archives_must_agree_and_an_unreachable_one_is_passed_over() {
    let h = harness();
    let (dir, _) = build_archive(&h);
    let good = FileServer::start(&dir);
    let bad_dir = h.path("bad-archive");
    copy_dir(&dir, &bad_dir);
    let path = falsify(&bad_dir, 50);
    let bad = FileServer::start(&bad_dir);
    let down = format!("http://127.0.0.1:{}", bronze_testkit::free_port());

    // A good archive and one that cannot be reached: the reachable one decides.
    let agreed = harness().datastore(h.datastore.clone()).yaml(&format!(
        "archive:\n  url: \"{}\"\n  urls: [\"{down}\"]\n",
        good.url()
    ));
    let log = agreed.run_expect(0);
    assert_eq!(agreed.committed().len(), 6, "{log}");
    assert!(log.contains("archive unreachable"), "{log}");

    // Two archives disagreeing on ledger 50: both named; neither can be trusted for that
    // checkpoint, so every partition needing its file (ledgers 2-63) is refused.
    let h = h.yaml(&format!(
        "archive:\n  url: \"{}\"\n  urls: [\"{}\"]\n",
        good.url(),
        bad.url()
    ));
    let log = h.run_expect(3);
    assert!(
        log.contains("archives disagree on ledger 50")
            && log.contains(&path)
            && log.contains(&good.url())
            && log.contains(&bad.url()),
        "{log}"
    );
    assert!(h.committed().is_empty(), "{log}");
}

/// The hash of ledger `ledger` as the datastore of `h` has it (what a user would copy from a
/// block explorer for a real network).
fn ledger_hash(h: &Harness, ledger: u32) -> [u8; 32] {
    datastore_ledgers(&h.datastore)
        .iter()
        .map(|lcm| entry_of_lcm(lcm).unwrap().0)
        .find(|e| e.ledger == ledger)
        .unwrap()
        .hash
}

fn with_trusted(h: Harness, url: &str, sequence: u32, hash: &str) -> Harness {
    h.yaml(&format!(
        "archive:\n  url: \"{url}\"\n  trusted_ledger:\n    sequence: {sequence}\n    hash: \"{hash}\"\n"
    ))
}

#[test]
fn a_trusted_ledger_the_archive_agrees_with_anchors_every_partition_to_it() {
    let h = harness();
    let (dir, written) = build_archive(&h);
    let server = FileServer::start(&dir);
    let hash = hex::encode(ledger_hash(&h, 100));
    // Upper case, as some explorers show it.
    let h = with_trusted(h, &server.url(), 100, &hash.to_uppercase());
    let log = h.run_expect(0);
    assert_eq!(h.committed().len(), 6, "{log}");
    assert!(log.contains("hashes to the trusted hash"), "{log}");
    for manifest in h.manifests() {
        let trusted = manifest
            .archive
            .as_ref()
            .and_then(|a| a.trusted_ledger.as_ref())
            .expect("the trusted ledger recorded");
        assert_eq!(
            (trusted.sequence, trusted.hash.as_str()),
            (100, hash.as_str())
        );
    }
    // The walk to the trusted ledger goes through the same cache: each file fetched once.
    let requests = server.requests();
    for file in &written.files {
        assert_eq!(
            requests.iter().filter(|r| *r == file).count(),
            1,
            "{file}: {requests:?}"
        );
    }
    h.assert_verifies();
}

#[test]
fn a_trusted_hash_the_archive_does_not_match_is_refused_before_anything_is_copied() {
    let h = harness();
    let (dir, _) = build_archive(&h);
    let server = FileServer::start(&dir);
    let good = hex::encode(ledger_hash(&h, 100));
    let mut wrong = ledger_hash(&h, 100);
    wrong[0] ^= 0xff;
    let wrong = hex::encode(wrong);
    let bad = with_trusted(h, &server.url(), 100, &wrong);
    let log = bad.run_expect(2);
    assert!(
        log.contains("ledger 100")
            && log.contains(&ledger_file_path(127))
            && log.contains(&server.url())
            && log.contains(&wrong)
            && log.contains(&good)
            && log.contains("trusted hash"),
        "{log}"
    );
    assert!(bad.committed().is_empty(), "{log}");

    // verify with that trusted ledger: the archive is a problem, named the same way.
    let clean = with_archive(harness().datastore(bad.datastore.clone()), &server.url());
    clean.run_expect(0);
    let out = exec(
        clean
            .command(&["verify"])
            .env("ARCHIVE_TRUSTED_LEDGER_SEQUENCE", "100")
            .env("ARCHIVE_TRUSTED_LEDGER_HASH", &wrong),
    );
    let stdout = text(&out);
    assert_eq!(out.status.code(), Some(5), "{}", describe(&out));
    assert!(
        stdout.contains("archive.open") && stdout.contains(&good),
        "{stdout}"
    );
}

#[test]
fn a_trusted_ledger_outside_the_archives_range_is_refused_clearly() {
    let h = harness();
    let (dir, written) = build_archive(&h);
    assert_eq!(written.newest, 127);
    let server = FileServer::start(&dir);
    let hash = hex::encode([0x11u8; 32]);
    // Beyond the newest checkpoint the archive has published.
    let beyond = with_trusted(
        harness().datastore(h.datastore.clone()),
        &server.url(),
        5_000,
        &hash,
    );
    let log = beyond.run_expect(2);
    assert!(
        log.contains("archive.trusted_ledger 5000 is outside the range")
            && log.contains("newest checkpoint the archive has published (127)"),
        "{log}"
    );
    assert!(beyond.committed().is_empty(), "{log}");
    // Before the archive's first ledger (this archive, built from a datastore, starts at 2).
    let before = with_trusted(h, &server.url(), 1, &hash);
    let log = before.run_expect(2);
    assert!(
        log.contains("archive.trusted_ledger 1 is outside the range")
            && log.contains(&format!("no entry for it in {}", ledger_file_path(63))),
        "{log}"
    );
    assert!(before.committed().is_empty(), "{log}");
}

#[test]
fn a_break_in_the_archives_chain_to_the_trusted_ledger_stops_the_partition_needing_it() {
    let h = harness();
    let (dir, _) = build_archive(&h);
    // Ledger 60's recorded hash no longer matches its header: the archive's chain from the
    // trusted ledger (100) back to the first partition (2-22) breaks there.
    let path = falsify(&dir, 60);
    let server = FileServer::start(&dir);
    let hash = hex::encode(ledger_hash(&h, 100));
    let h = with_trusted(h, &server.url(), 100, &hash);
    let log = h.run_expect(3);
    assert!(
        log.contains("ledger 60") && log.contains(&path) && log.contains("corrupt"),
        "{log}"
    );
    assert!(h.committed().is_empty(), "{log}");
}

#[test]
fn the_catalog_records_each_partitions_archive_anchor() {
    let pg = bronze_testkit::Postgres::start();
    let dsn = pg.create_database("anchored");
    let h = harness();
    let (dir, _) = build_archive(&h);
    let server = FileServer::start(&dir);
    let hash = hex::encode(ledger_hash(&h, 127));
    let h =
        with_trusted(h, &server.url(), 127, &hash).yaml(&crate::catalog::catalog_yaml(&dsn, true));
    let log = h.run_expect(0);
    let rows = pg.psql_in(
        "anchored",
        "SELECT q.ledger_start, q.details->'archive'->'archives'->>0,
                q.details->'archive'->'trusted_ledger'->>'sequence',
                q.details->'archive'->'trusted_ledger'->>'hash',
                q.details->'archive'->'files'->0->>'path',
                q.details->'archive'->'files'->0->>'sha256',
                q.details->'checks' ? 'history_archive', q.details->'checks' ? 'archive_trusted_ledger'
         FROM _meta_quality q JOIN _meta_lineage l USING (dataset_id, ledger_start, ledger_end)
         ORDER BY q.ledger_start",
    );
    let manifests = h.manifests();
    let rows: Vec<&str> = rows.lines().filter(|l| !l.is_empty()).collect();
    assert_eq!(rows.len(), manifests.len(), "{rows:?}\n{log}");
    for (row, manifest) in rows.iter().zip(&manifests) {
        let first = &manifest.archive.as_ref().unwrap().files[0];
        let want = format!(
            "{}|{}|127|{hash}|{}|{}|t|t",
            manifest.range().start,
            server.url(),
            first.path,
            first.sha256
        );
        assert_eq!(*row, want);
    }
}

#[test]
fn validate_online_reads_the_archives_state_and_checks_its_network() {
    let h = harness();
    let (dir, _) = build_archive(&h);
    let server = FileServer::start(&dir);
    let h = with_archive(h, &server.url());
    let out = exec(&mut h.command(&["-validate", "--online"]));
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
    assert!(
        server.requests().iter().any(|r| r == HAS_PATH),
        "read the HAS"
    );

    // Another network's archive: refused online, naming both networks; offline it is only the
    // URL's form that is checked.
    let has = std::fs::read_to_string(dir.join(HAS_PATH)).unwrap();
    std::fs::write(dir.join(HAS_PATH), has.replace(TESTNET, PUBNET)).unwrap();
    let out = exec(&mut h.command(&["-validate", "-online"]));
    let log = describe(&out);
    assert_eq!(out.status.code(), Some(2), "{log}");
    assert!(log.contains(PUBNET) && log.contains(TESTNET), "{log}");
    let before = server.requests().len();
    let out = exec(&mut h.command(&["-validate"]));
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
    assert_eq!(server.requests().len(), before, "offline: no request");
    assert!(h.committed().is_empty());
}
