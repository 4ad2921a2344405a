//! The PostgreSQL catalog (docs/formats.md#catalog-postgresql): a dataset row, one lineage row
//! and one quality row per committed partition, in the original's tables, so existing queries
//! and dashboards keep working. Enabled by `catalog.postgres_dsn`.
//!
//! Differences from the original, each fixing one of its faults:
//! * the schema is versioned ([`migrations`]): version 1 is the original schema, so an existing
//!   database is adopted as it is; later versions only add columns. Migrations run in one
//!   transaction under an advisory lock, so two copiers starting together never race;
//! * `storage_uri` is the full URI of the Parquet file, storage prefix included;
//! * `prev_hash` is the checksum of the partition ending just before this one (not of "the
//!   highest ledger_end"), in every run mode, and a re-recorded partition fixes its successor's;
//! * `schema_hash` is a real hash of the Arrow schema;
//! * quality rows say which checks ran (`details`), and are written only for partitions whose
//!   checks are known to have run;
//! * `catalog.strict` really is strict (a failure stops the run before the checkpoint moves, also
//!   when the database is unreachable at start), and lenient mode never silently becomes a no-op:
//!   what is missing is derived from the catalog (the sequencing engine's catch-up,
//!   [`crate::sequence::catch_up_catalog`]) and recorded later, in ledger order. Both drivers
//!   write through [`PgCatalog`] ([`log`]); the standalone's commit hook is [`hook`].
//!
//! TLS: libpq's `sslmode` (`disable|prefer|require|verify-ca|verify-full`) and `sslrootcert`,
//! over rustls; see [`tls`].

mod client;
pub mod hook;
pub mod log;
pub mod migrations;
pub mod records;
pub mod tls;
pub mod verify;
pub mod writer;

pub use client::{Catalog, CatalogError, check_dsn, connect};
pub use hook::CatalogSink;
pub use log::PgCatalog;
pub use records::{DatasetIdentity, LineageRecord, QualityRecord, schema_hash};
pub use verify::{CatalogProblem, LineageRow, compare_with_storage, verify_against_storage};
pub use writer::CatalogWriter;
