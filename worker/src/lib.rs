//! Bronze: copies raw Stellar ledgers from Galexie (SEP-54) datastores into immutable,
//! checksummed Parquet partitions.
//!
//! The data's trip, one module per stage: [`source`] (datastore layout, fetch, zstd) →
//! `bronze_ledger` (XDR split, validation, field extraction) → [`validate`] (chain checks) →
//! [`parquet`] (the `ledgers_lcm_raw` table) → [`publish`] (upload, manifest commit) →
//! [`pipeline`] (parallel builds, in-order sequencer) → [`checkpoint`], with the commit hooks
//! ([`pas`] audit stream, then [`catalog`]) and [`metrics`] alongside. [`verify`] checks
//! everything a run wrote.

pub mod archive;
pub mod atomic_file;
pub mod catalog;
pub mod checkpoint;
pub mod cli;
pub mod config;
pub mod copier;
pub mod delta;
pub mod exit;
pub mod generate;
pub mod hash;
pub mod health;
pub mod listen_address;
pub mod logging;
pub mod metrics;
pub mod network;
pub mod parquet;
pub mod partition;
pub mod pas;
pub mod pipeline;
pub mod process;
pub mod publish;
pub mod sequence;
pub mod source;
pub mod store;
pub mod time;
pub mod validate;
pub mod verify;

/// The producer version recorded in manifests and events.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// The git commit the binary was built from (`build.rs`: `BRONZE_GIT_SHA` at build time, else
/// the checkout's `git rev-parse HEAD`), or `unknown`.
pub const GIT_SHA: &str = env!("BRONZE_GIT_SHA");

/// `VERSION (GIT_SHA)`: what `-version` prints after the program's name.
pub const VERSION_LINE: &str =
    concat!(env!("CARGO_PKG_VERSION"), " (", env!("BRONZE_GIT_SHA"), ")");
