//! The archive's pure parts on real ledgers: stellar-core's own test ledgers of every LCM
//! version, relinked into a chain, turned into a checkpoint file as stellar-core writes one.

use std::sync::Arc;

use super::*;
use crate::partition::LedgerRange;

const TEMPLATES: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../ledger/tests/data/stellar-core-protocols"
);

/// Real ledgers (every LCM version), relinked as ledgers `first..=last`.
fn chain(first: u32, last: u32) -> Vec<Vec<u8>> {
    let mut templates: Vec<_> = std::fs::read_dir(TEMPLATES)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "xdr"))
        .collect();
    templates.sort();
    let templates: Vec<Vec<u8>> = templates
        .iter()
        .map(|p| std::fs::read(p).unwrap())
        .collect();
    let mut previous = [7u8; 32];
    (first..=last)
        .map(|seq| {
            let mut lcm = templates[seq as usize % templates.len()].clone();
            previous = bronze_ledger::relink_header(
                &mut lcm,
                seq,
                &previous,
                1_700_000_000 + u64::from(seq),
            )
            .unwrap();
            lcm
        })
        .collect()
}

fn entries(lcms: &[Vec<u8>]) -> Vec<Vec<u8>> {
    lcms.iter()
        .map(|l| entry_of_lcm(l).unwrap().1.to_vec())
        .collect()
}

fn headers(lcms: &[Vec<u8>]) -> Vec<HeaderEntry> {
    lcms.iter().map(|l| entry_of_lcm(l).unwrap().0).collect()
}

#[test]
fn a_checkpoint_file_holds_each_ledgers_own_header_entry() {
    let lcms = chain(64, 127);
    let bytes = encode_checkpoint_file(&entries(&lcms));
    let path = ledger_file_path(127);
    let file = decode_checkpoint_file(127, &path, &bytes).unwrap();
    assert_eq!(file.entries.len(), 64);
    assert_eq!(file.entries, headers(&lcms));
    for (ours, lcm) in headers(&lcms).iter().zip(&lcms) {
        assert_eq!(file.entry(ours.ledger), Some(ours));
        assert!(bronze_ledger::header_hash_matches(lcm).unwrap());
        assert_eq!(compare(ours, file.entry(ours.ledger)), None);
    }
    assert_eq!(file.entry(63), None);
}

#[test]
fn a_ledger_that_differs_is_named_with_what_differs() {
    let lcms = chain(2, 63);
    let ours = headers(&lcms);
    let mut theirs = ours[5].clone();
    theirs.hash[0] ^= 1;
    assert!(matches!(
        compare(&ours[5], Some(&theirs)),
        Some(Difference::Hash { .. })
    ));
    let mut theirs = ours[5].clone();
    theirs.header[40] ^= 1;
    assert_eq!(
        compare(&ours[5], Some(&theirs)),
        Some(Difference::Header { at: 40 })
    );
    assert_eq!(compare(&ours[5], None), Some(Difference::Missing));
}

#[test]
fn bad_files_are_named_for_what_they_are() {
    let lcms = chain(2, 63);
    let good = encode_checkpoint_file(&entries(&lcms));
    let path = ledger_file_path(63);
    let err = |bytes: &[u8]| decode_checkpoint_file(63, &path, bytes).unwrap_err();

    let html = err(b"<!DOCTYPE html>\n<html><head><title>404 Not Found</title>");
    assert!(matches!(html, FileError::Html { .. }), "{html}");
    assert!(html.to_string().contains("HTML page"), "{html}");
    assert!(matches!(err(b"PK\x03\x04 zip"), FileError::NotGzip { .. }));
    let truncated = err(&good[..good.len() / 2]);
    assert!(matches!(truncated, FileError::Gzip { .. }), "{truncated}");
    assert!(truncated.to_string().contains("truncated"), "{truncated}");

    // An entry cut short (its record mark says so): not a valid entry.
    let mut marked = entries(&lcms);
    let cut = marked[0].len() - 3;
    marked[0].truncate(cut);
    let broken = err(&encode_checkpoint_file(&marked));
    assert!(
        matches!(broken, FileError::Xdr { index: 0, .. }),
        "{broken}"
    );

    // Ledgers of another checkpoint.
    let other = encode_checkpoint_file(&entries(&chain(64, 70)));
    let out = decode_checkpoint_file(63, &path, &other).unwrap_err();
    assert!(
        matches!(out, FileError::OutOfPlace { ledger: 64, .. }),
        "{out}"
    );
}

#[test]
fn record_marks_may_split_a_record_in_fragments() {
    let entry = entries(&chain(2, 2)).remove(0);
    let (a, b) = entry.split_at(100);
    let mut stream = Vec::new();
    stream.extend_from_slice(&(a.len() as u32).to_be_bytes());
    stream.extend_from_slice(a);
    stream.extend_from_slice(&(b.len() as u32 | 0x8000_0000).to_be_bytes());
    stream.extend_from_slice(b);
    let got: Vec<_> = records(&stream).collect();
    assert_eq!(got, vec![(0, Ok(entry.clone()))]);
    let cut: Vec<_> = records(&stream[..stream.len() - 1]).collect();
    assert!(
        cut[0].1.as_ref().unwrap_err().contains("record mark says"),
        "{cut:?}"
    );
}

fn agreed(checkpoint: u32, file: Option<CheckpointFile>) -> Arc<AgreedFile> {
    Arc::new(AgreedFile {
        checkpoint,
        path: ledger_file_path(checkpoint),
        file,
    })
}

#[test]
fn a_partition_is_checked_ledger_by_ledger_and_its_files_recorded() {
    let lcms = chain(2, 127);
    let f63 = decode_checkpoint_file(
        63,
        &ledger_file_path(63),
        &encode_checkpoint_file(&entries(&lcms[..62])),
    )
    .unwrap();
    let f127 = decode_checkpoint_file(
        127,
        &ledger_file_path(127),
        &encode_checkpoint_file(&entries(&lcms[62..])),
    )
    .unwrap();
    let range = LedgerRange::new(50, 79);
    let ours: Vec<HeaderEntry> = headers(&lcms)
        .into_iter()
        .filter(|h| range.contains(h.ledger))
        .collect();
    let files = PartitionFiles {
        range,
        files: vec![
            agreed(63, Some(f63.clone())),
            agreed(127, Some(f127.clone())),
        ],
        unanchored_from: None,
        trusted: None,
    };
    let urls = vec!["https://a".to_string()];
    let anchor = check_partition(&files, &ours, &urls, "https://a").unwrap();
    assert_eq!(anchor.files.len(), 2);
    assert_eq!(
        anchor.files[0].path,
        "ledger/00/00/00/ledger-0000003f.xdr.gz"
    );
    assert_eq!(
        anchor.files[1].sha256,
        crate::hash::checksum_string(&f127.sha256)
    );
    assert_eq!(anchor.unanchored_from, None);

    // One ledger of the datastore differs: that ledger and its file are named.
    let mut changed = ours.clone();
    changed[20].header[10] ^= 0xff; // ledger 70
    let err = check_partition(&files, &changed, &urls, "https://a").unwrap_err();
    let text = err.to_string();
    assert!(
        matches!(err, ArchiveError::Disagree { ledger: 70, .. }),
        "{text}"
    );
    assert!(
        text.contains("ledger-0000007f.xdr.gz") && text.contains("partition 50-79"),
        "{text}"
    );

    // Unanchored ledgers are not compared, and are recorded.
    let files = PartitionFiles {
        range,
        files: vec![agreed(63, Some(f63))],
        unanchored_from: Some(64),
        trusted: None,
    };
    let anchor = check_partition(&files, &changed, &urls, "https://a").unwrap();
    assert_eq!(anchor.unanchored_from, Some(64));
    assert_eq!(anchor.files.len(), 1);
}

#[test]
fn archives_agree_unless_they_hold_different_entries() {
    let lcms = chain(2, 63);
    let a = decode_checkpoint_file(63, "p", &encode_checkpoint_file(&entries(&lcms))).unwrap();
    let mut b = a.clone();
    assert_eq!(archives_agree(&[Some(&a), None, Some(&b)]), Ok(()));
    b.entries[3].hash[0] ^= 1;
    assert_eq!(
        archives_agree(&[Some(&a), None, Some(&b)]),
        Err(ArchivesDisagree {
            ledger: 5,
            first: 0,
            second: 2
        })
    );
}

#[test]
fn a_written_archive_has_complete_checkpoints_only_and_a_has() {
    let dir = tempfile::tempdir().unwrap();
    let lcms = chain(2, 150);
    let written = write_archive(
        dir.path(),
        "Test SDF Network ; September 2015",
        lcms.iter().map(Vec::as_slice),
    )
    .unwrap();
    assert_eq!(written.newest, 127);
    assert_eq!(
        written.files,
        vec![ledger_file_path(63), ledger_file_path(127)]
    );
    let has = parse_has(&std::fs::read(dir.path().join(HAS_PATH)).unwrap()).unwrap();
    assert_eq!(has.current_ledger, 127);
    let bytes = std::fs::read(dir.path().join(ledger_file_path(63))).unwrap();
    let file = decode_checkpoint_file(63, "p", &bytes).unwrap();
    assert_eq!(
        file.entries.len(),
        62,
        "ledgers 2-63: no datastore holds the genesis ledger"
    );
}

/// Checkpoint files 63, 127, 191 of the ledgers `lcms` (2..=191).
fn files_of(lcms: &[Vec<u8>]) -> Vec<CheckpointFile> {
    [(63, 0..62), (127, 62..126), (191, 126..190)]
        .into_iter()
        .map(|(c, r)| {
            let bytes = encode_checkpoint_file(&entries(&lcms[r]));
            decode_checkpoint_file(c, &ledger_file_path(c), &bytes).unwrap()
        })
        .collect()
}

fn trusted_at(lcms: &[Vec<u8>], ledger: u32) -> TrustedLedger {
    let hash = entry_of_lcm(&lcms[ledger as usize - 2]).unwrap().0.hash;
    TrustedLedger {
        sequence: ledger,
        hash,
    }
}

#[test]
fn the_archives_headers_hash_link_both_ways_to_the_trusted_ledger() {
    let lcms = chain(2, 191);
    let files = files_of(&lcms);
    // Trusted in the middle checkpoint: its whole file is linked at once...
    let mut chain = TrustedChain::start(trusted_at(&lcms, 100), &files[1]).unwrap();
    assert!(chain.covers(64, 127) && !chain.covers(63, 127) && !chain.covers(64, 128));
    // ...then forward and back, a file at a time.
    chain.extend_forward(&files[2]).unwrap();
    chain.extend_back(&files[0]).unwrap();
    assert!(chain.covers(2, 191));
    assert_eq!((chain.low, chain.high), (2, 191));
}

#[test]
fn a_trusted_hash_the_archive_does_not_have_is_refused_naming_both_hashes() {
    let lcms = chain(2, 191);
    let files = files_of(&lcms);
    let mut trusted = trusted_at(&lcms, 100);
    trusted.hash[31] ^= 1;
    let err = TrustedChain::start(trusted, &files[1]).unwrap_err();
    let text = err.to_string();
    assert!(
        matches!(err, TrustError::Mismatch { ledger: 100, .. }),
        "{text}"
    );
    let archive_hash = hex::encode(trusted_at(&lcms, 100).hash);
    assert!(
        text.contains(&ledger_file_path(127))
            && text.contains(&hex::encode(trusted.hash))
            && text.contains(&archive_hash),
        "{text}"
    );
    // A ledger the file has no entry for.
    let err = TrustedChain::start(trusted_at(&lcms, 100), &files[0]).unwrap_err();
    assert!(
        matches!(err, TrustError::NotInArchive { ledger: 100, .. }),
        "{err}"
    );
}

#[test]
fn an_archive_whose_headers_do_not_link_is_refused_at_the_break() {
    let lcms = chain(2, 191);
    let files = files_of(&lcms);
    // Checkpoint 191 from another chain: every header is self-consistent, but ledger 128 does
    // not name ledger 127 as its previous ledger.
    let other = chain(128, 191);
    let foreign = decode_checkpoint_file(
        191,
        &ledger_file_path(191),
        &encode_checkpoint_file(&entries(&other)),
    )
    .unwrap();
    let mut chain_ = TrustedChain::start(trusted_at(&lcms, 100), &files[1]).unwrap();
    let err = chain_.extend_forward(&foreign).unwrap_err();
    assert!(
        matches!(
            err,
            TrustError::Broken {
                ledger: 128,
                trusted: 100,
                ..
            }
        ),
        "{err}"
    );
    assert!(err.to_string().contains("previousLedgerHash"), "{err}");
    // Backwards: checkpoint 127 of the other chain does not end in the ledger that ledger
    // 128 of the trusted file names.
    let mut chain_ = TrustedChain::start(trusted_at(&lcms, 150), &files[2]).unwrap();
    let foreign = decode_checkpoint_file(
        127,
        &ledger_file_path(127),
        &encode_checkpoint_file(&entries(&chain(64, 127))),
    )
    .unwrap();
    let mut changed = foreign.clone();
    changed.entries = files[1].entries.clone();
    changed.entries[63].header[60] ^= 1; // ledger 127's header no longer hashes to its hash
    let err = chain_.extend_back(&changed).unwrap_err();
    assert!(
        matches!(err, TrustError::EntryHash { ledger: 127, .. }),
        "{err}"
    );
    let err = chain_.extend_back(&foreign).unwrap_err();
    assert!(
        matches!(err, TrustError::Broken { ledger: 127, .. }),
        "{err}"
    );
    // A file with a ledger missing breaks the chain there.
    let mut gap = files[2].clone();
    gap.entries.remove(10); // ledger 138
    let mut chain_ = TrustedChain::start(trusted_at(&lcms, 100), &files[1]).unwrap();
    let err = chain_.extend_forward(&gap).unwrap_err();
    assert!(
        matches!(err, TrustError::Broken { ledger: 138, .. })
            && err.to_string().contains("no entry"),
        "{err}"
    );
}
