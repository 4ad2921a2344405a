//! Reading a Galexie (SEP-54) datastore: its layout, fetching batch objects, decompressing them.

mod datastore;
mod decode;
pub mod read_policy;
pub mod schema;

pub use datastore::{
    Datastore, FETCH_BUDGET_BYTES, FetchedBatch, SourceError, open_source_location,
};
pub use decode::{DecodeError, decompress_batch};
pub use schema::{BatchObject, DatastoreManifest, DatastoreSchema};
