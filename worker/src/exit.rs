//! Process exit codes, documented for operators and for the Kubernetes Job's pod failure policy.
//!
//! | code | meaning | retry? |
//! |---|---|---|
//! | 0 | finished (bounded range done, `-validate` passed, `-version`) | – |
//! | 1 | runtime failure: storage, network, database (transient) | yes |
//! | 2 | configuration or usage error (incl. a history archive of another network, or one that does not match `archive.trusted_ledger`) | no: fix the config |
//! | 3 | bad input data: corrupt zstd, invalid XDR, missing ledger, broken hash chain, wrong network, a ledger the history archive disagrees with (or a bad or missing archive file) | no: fix the datastore |
//! | 4 | conflict with existing output (a different committed partition, a foreign dataset, a PAS chain that disagrees with itself) | no |
//! | 5 | `verify` found problems in the output (each printed as a `PROBLEM` line) | no: inspect the output |
//! | 130 / 143 | stopped by SIGINT / SIGTERM; committed work is kept, a restart resumes | yes |

use crate::pas::PasError;
use crate::pipeline::{BuildError, RunError, SequenceError};
use crate::publish::CommitError;
use crate::source::SourceError;

pub const OK: u8 = 0;
pub const FAILURE: u8 = 1;
pub const CONFIG: u8 = 2;
pub const BAD_INPUT: u8 = 3;
pub const CONFLICT: u8 = 4;
pub const VERIFY_FAILED: u8 = 5;
pub const SIGINT: u8 = 130;
pub const SIGTERM: u8 = 143;

fn source_code(e: &SourceError) -> u8 {
    match e {
        SourceError::Open(_) => CONFIG,
        e if e.is_transient() => FAILURE,
        _ => BAD_INPUT,
    }
}

fn commit_code(e: &CommitError) -> u8 {
    match e {
        CommitError::Conflict { .. }
        | CommitError::CorruptManifest { .. }
        | CommitError::NotCommitted { .. } => CONFLICT,
        CommitError::Store { .. } => FAILURE,
    }
}

fn archive_code(e: &crate::archive::ArchiveError) -> u8 {
    if e.is_config() {
        CONFIG
    } else if e.is_unreachable() {
        FAILURE
    } else {
        BAD_INPUT
    }
}

/// The exit code for a failed run.
pub fn code_for(error: &RunError) -> u8 {
    match error {
        RunError::Store(_) => CONFIG,
        RunError::Source(e) => source_code(e),
        RunError::Checkpoint(_) => CONFIG,
        RunError::Range(_) => CONFIG,
        RunError::Archive(e) => archive_code(e),
        RunError::Table(e) if e.is_transient() => FAILURE,
        RunError::Table(_) => CONFLICT,
        RunError::Commit(e) => commit_code(e),
        RunError::Build { source, .. } => match source {
            BuildError::Source(e) => source_code(e),
            BuildError::Archive(e) => archive_code(e),
            BuildError::Commit(e) => commit_code(e),
            BuildError::Upload(_) | BuildError::Encoder { .. } => FAILURE,
            BuildError::Writer { .. } => BAD_INPUT,
            BuildError::Decode { .. } | BuildError::Xdr { .. } | BuildError::Invalid(_) => {
                BAD_INPUT
            }
        },
        RunError::Sequence(e) => match e {
            SequenceError::Link(_) => BAD_INPUT,
            SequenceError::Commit(e) => commit_code(e),
            SequenceError::ForeignPartition { .. } | SequenceError::Refused { .. } => CONFLICT,
            SequenceError::Hook(h) if h.conflict => CONFLICT,
            SequenceError::Hook(_) => FAILURE,
            SequenceError::Checkpoint(_) => FAILURE,
        },
    }
}

/// The exit code when the PAS stream cannot start (chain checks, re-delivery in strict mode).
pub fn pas_code(error: &PasError) -> u8 {
    if error.is_conflict() {
        CONFLICT
    } else {
        FAILURE
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pipeline::HookError;

    fn hook_failure(conflict: bool) -> RunError {
        RunError::Sequence(SequenceError::Hook(HookError {
            hook: "pas",
            message: "event for 2-11 differs".into(),
            conflict,
        }))
    }

    #[test]
    fn a_hook_conflict_is_not_retryable_and_a_hook_outage_is() {
        assert_eq!(code_for(&hook_failure(true)), CONFLICT);
        assert_eq!(code_for(&hook_failure(false)), FAILURE);
    }
}
