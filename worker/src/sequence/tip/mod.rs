//! The provisional tip (docs/tip.md): while following with a Delta table, the open partition's
//! ledgers become readable shortly after their objects land, as provisional files under
//! `_tip/`, and its sealed file replaces them in one commit when the partition is complete.
//! [`plan`]: the decisions, pure; [`publish`]: the publishing loop; [`seal`]: the seal commit,
//! its recovery after a crash, and dropping old provisional files.

pub mod plan;
pub mod publish;
pub mod seal;

pub use plan::{TIP_DIR, TipFile, TipView};
pub use publish::{MAX_LEDGERS_PER_FILE, TipError, TipPublisher, TipSettings};
pub use seal::{Sealed, drop_expired, seal_committed, seal_partition};
