//! The one manifest policy: which of [`Manifest::check`]'s findings refuse a committed partition,
//! for both drivers (the operator's sequencer and the standalone sequencer adopting a partition
//! it finds committed). What a driver does not know it leaves `None` in [`Expect`] (the
//! standalone has no backfill-wide `ingested_at` and no cheap Parquet size): those are not
//! checked, the rest is the same.
//!
//! Everything refuses, except what the original copier's manifests lack: a manifest with neither
//! `chain` nor `ingested_at` is the original's, written before seals and chain hashes existed,
//! so an absent `manifest_sha256` and absent chain hashes are accepted for it (a missing chain
//! is logged: its link cannot be checked). A mismatched seal always refuses.

use super::head::Position;
use crate::publish::{Expect, Finding, Manifest};

/// A manifest of the original copier: none of this copier's additions.
pub fn is_original(manifest: &Manifest) -> bool {
    manifest.chain.is_none() && manifest.ingested_at.is_none()
}

/// Whether `finding` refuses `manifest`'s partition.
pub fn refuses(manifest: &Manifest, finding: &Finding) -> bool {
    match finding {
        Finding::SealAbsent | Finding::NoChain => !is_original(manifest),
        _ => true,
    }
}

/// The first finding that refuses the partition (findings come in [`Manifest::check`]'s fixed
/// order, so the same problem is always named), or `None` when the partition is accepted.
pub fn refusal(manifest: &Manifest, expect: &Expect) -> Option<Finding> {
    manifest
        .check(expect)
        .into_iter()
        .find(|f| refuses(manifest, f))
}

/// Accepts `manifest` as the partition `expect.range` or returns the finding that refuses it;
/// an accepted partition is the position sequencing moves to.
pub fn accept(manifest: &Manifest, expect: &Expect) -> Result<Position, Finding> {
    if let Some(refused) = refusal(manifest, expect) {
        return Err(refused);
    }
    let range = expect.range;
    Ok(Position {
        last_committed_ledger: range.end,
        partition: range,
        checksum: manifest
            .primary()
            .map(|t| t.checksum.clone())
            .unwrap_or_default(),
        last_ledger_hash: manifest
            .chain
            .as_ref()
            .map(|c| c.last_ledger_hash.to_ascii_lowercase()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::partition::LedgerRange;
    use crate::publish::SealCheck;

    fn manifest() -> Manifest {
        crate::publish::fixtures::manifest(LedgerRange::new(12, 21))
    }

    fn expect(seal: &SealCheck) -> Expect<'_> {
        Expect {
            range: LedgerRange::new(12, 21),
            network: "testnet",
            era_id: "p23",
            version_label: "v1",
            seal: Some(seal),
            parquet_size: None,
            prior_hash: None,
            ingested_at: None,
        }
    }

    #[test]
    fn a_mismatched_seal_always_refuses_an_absent_one_only_after_the_original() {
        let mismatch = SealCheck::Mismatch {
            recorded: "sha256:aa".into(),
            computed: "sha256:bb".into(),
        };
        let m = manifest();
        assert_eq!(refusal(&m, &expect(&SealCheck::Valid)), None);
        assert!(matches!(
            refusal(&m, &expect(&mismatch)),
            Some(Finding::SealMismatch { .. })
        ));
        assert_eq!(
            refusal(&m, &expect(&SealCheck::Absent)),
            Some(Finding::SealAbsent)
        );
        let mut original = manifest();
        original.chain = None;
        original.ingested_at = None;
        assert_eq!(refusal(&original, &expect(&SealCheck::Absent)), None);
        assert!(matches!(
            refusal(&original, &expect(&mismatch)),
            Some(Finding::SealMismatch { .. })
        ));
        // Chain hashes without a seal, or a seal without chain hashes: not the original's.
        let mut half = manifest();
        half.ingested_at = None;
        assert_eq!(
            refusal(&half, &expect(&SealCheck::Absent)),
            Some(Finding::SealAbsent)
        );
        let mut unchained = manifest();
        unchained.chain = None;
        assert_eq!(
            refusal(&unchained, &expect(&SealCheck::Valid)),
            Some(Finding::NoChain)
        );
    }

    #[test]
    fn the_table_file_name_must_be_the_layouts() {
        let mut m = manifest();
        m.tables.values_mut().next().unwrap().file = "elsewhere.parquet".into();
        assert_eq!(
            refusal(&m, &expect(&SealCheck::Valid)),
            Some(Finding::FileName {
                found: "elsewhere.parquet".into(),
                expected: "part-12-21.parquet".into()
            })
        );
    }
}
