//! The dataset folder as a Delta Lake table (`storage.table_format: delta`,
//! docs/formats.md#delta-lake-table): a `_delta_log/` beside the partitions, one commit per
//! committed partition, in ledger order, written right after the manifest.
//!
//! The log is written here rather than with delta-rs or delta-kernel-rs (docs/formats.md says
//! why): [`actions`] (the JSON actions and the table schema), [`stats`] (file statistics from the
//! manifest and the Parquet footer), [`table`] (reading the state, the conditional commit),
//! [`checkpoint`] (Parquet checkpoints every 10 versions), [`repair`] (manifests missing from the
//! log, backfill), [`verify`] (the log against the manifests) and [`hook`] (the standalone
//! copier's commit hook).

pub mod actions;
pub mod checkpoint;
pub mod cleanup;
pub mod hook;
pub mod integers;
pub mod repair;
pub mod stats;
pub mod table;
pub mod verify;

pub use hook::DeltaSink;
pub use repair::{catch_up, catch_up_in_batches_of};
pub use table::{Appended, Changes, DeltaError, DeltaTable, LoggedFile, relative_path};
