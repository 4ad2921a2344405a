//! Where a history archive keeps things (pure): stellar-core publishes one checkpoint per 64
//! ledgers, named by its last ledger (63, 127, 191, ...; the first covers ledgers 1-63), and
//! files it under the hex of that number: `ledger/XX/YY/ZZ/ledger-XXYYZZWW.xdr.gz`.

use crate::partition::LedgerRange;

/// Ledgers per checkpoint.
pub const CHECKPOINT_FREQUENCY: u32 = 64;

/// The History Archive State of the archive's newest checkpoint.
pub const HAS_PATH: &str = ".well-known/stellar-history.json";

/// The checkpoint holding `ledger`: the last ledger of its group of 64 (63 for ledgers 0-63).
pub fn checkpoint_of(ledger: u32) -> u32 {
    (ledger / CHECKPOINT_FREQUENCY)
        .saturating_mul(CHECKPOINT_FREQUENCY)
        .saturating_add(CHECKPOINT_FREQUENCY - 1)
}

/// The ledgers a checkpoint's files cover (the first one starts at ledger 1).
pub fn ledgers_of(checkpoint: u32) -> LedgerRange {
    let first = checkpoint.saturating_sub(CHECKPOINT_FREQUENCY - 1).max(1);
    LedgerRange::new(first, checkpoint)
}

/// The checkpoints whose files hold the ledgers of `range`, in order.
pub fn checkpoints_covering(range: LedgerRange) -> impl Iterator<Item = u32> {
    let first = checkpoint_of(range.start);
    let last = checkpoint_of(range.end);
    (first..=last).step_by(CHECKPOINT_FREQUENCY as usize)
}

/// The path of a checkpoint's ledger-header file in the archive, e.g.
/// `ledger/00/15/84/ledger-0015843f.xdr.gz`.
pub fn ledger_file_path(checkpoint: u32) -> String {
    let hex = format!("{checkpoint:08x}");
    format!(
        "ledger/{}/{}/{}/ledger-{hex}.xdr.gz",
        &hex[0..2],
        &hex[2..4],
        &hex[4..6]
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checkpoints_are_named_by_their_last_ledger() {
        assert_eq!(checkpoint_of(1), 63);
        assert_eq!(checkpoint_of(63), 63);
        assert_eq!(checkpoint_of(64), 127);
        assert_eq!(checkpoint_of(127), 127);
        assert_eq!(checkpoint_of(1_410_111), 1_410_111);
        assert_eq!(checkpoint_of(u32::MAX), u32::MAX);
        assert_eq!(ledgers_of(63), LedgerRange::new(1, 63));
        assert_eq!(ledgers_of(127), LedgerRange::new(64, 127));
    }

    #[test]
    fn a_range_needs_every_checkpoint_it_touches() {
        let got: Vec<u32> = checkpoints_covering(LedgerRange::new(2, 11)).collect();
        assert_eq!(got, vec![63]);
        let got: Vec<u32> = checkpoints_covering(LedgerRange::new(60, 200)).collect();
        assert_eq!(got, vec![63, 127, 191, 255]);
        // A 10,000-ledger partition spans 157 or 158 checkpoints, by where it starts.
        let counts: Vec<usize> = (0..64)
            .map(|s| checkpoints_covering(LedgerRange::new(s + 1, s + 10_000)).count())
            .collect();
        assert_eq!(counts.iter().min(), Some(&157));
        assert_eq!(counts.iter().max(), Some(&158));
        assert_eq!(
            checkpoints_covering(LedgerRange::new(2, 10_001)).count(),
            157
        );
    }

    #[test]
    fn paths_are_the_hex_of_the_checkpoint_as_stellar_core_writes_them() {
        assert_eq!(
            ledger_file_path(63),
            "ledger/00/00/00/ledger-0000003f.xdr.gz"
        );
        assert_eq!(
            ledger_file_path(0x0015_843f),
            "ledger/00/15/84/ledger-0015843f.xdr.gz"
        );
        assert_eq!(
            ledger_file_path(53_312_063),
            "ledger/03/2d/7a/ledger-032d7a3f.xdr.gz"
        );
    }
}
