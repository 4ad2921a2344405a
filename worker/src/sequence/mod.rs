//! The sequencing engine both drivers share (docs/architecture.md, "One engine"): for each
//! committed partition, in ledger order, accept its manifest ([`policy`]), link it to the
//! previous one, append its PAS event ([`PasLog`]), write its catalog rows ([`CatalogLog`]) and
//! advance the [`Head`]. The drivers differ in where the head lives (the standalone: the
//! checkpoint file; the operator: the resource's status) and in what they can hold durably.

pub mod gaps;
pub mod head;
pub mod logs;
pub mod object_dataset;
pub mod policy;
pub mod replace;
pub mod steps;
pub mod store;
pub mod tip;

pub use gaps::{Recorded, catalog_gaps, catalog_recorded_through, grid_summary, next_partition};
pub use head::{Head, Position};
pub use logs::{
    Appended, CatalogLog, PartitionRecord, PasAppendError, PasLog, RangeSummary, TableLog,
    TableLogError,
};
pub use object_dataset::ObjectDataset;
pub use replace::{RebuildStore, Replaced, Replacing, replace_rebuilt};
pub use steps::{
    CatalogProgress, CatalogRun, Fault, FaultKind, Logs, Outcome, RecordError, Sequencing,
    catch_up_catalog, check_replace, partition_record, record_partition, sequence,
};
pub use store::{Committed, DatasetStore, ReadError};
