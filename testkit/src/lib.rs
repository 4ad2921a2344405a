//! Real servers on loopback for Bronze's tests.
//!
//! Every server here is a real program (or, for [`HttpSink`], a real in-process HTTP/1.1 server)
//! listening on `127.0.0.1` on a free port, started fresh by each call and stopped when its handle
//! is dropped, also when the test panics. Nothing here talks to a cloud, and nothing needs an async
//! runtime: the API is plain blocking `std`, usable from `#[test]` and `#[tokio::test]` alike.
//!
//! | handle | what runs | needs |
//! | --- | --- | --- |
//! | [`MotoS3`] | `moto_server` (S3 API) | the test venv (`make test-deps`) |
//! | [`GcsProxy`] | Debian `nginx` translating the GCS XML API to S3, in front of a [`MotoS3`] | `nginx-core` |
//! | [`Postgres`] | a throwaway PostgreSQL cluster (`initdb` + `pg_ctl`) | Debian `postgresql` |
//! | [`TestCa`] | a test CA and server certificates (`openssl` CLI) | `openssl` |
//! | [`S3Dir`] | in-process read-only S3 endpoint over a directory, optional per-request delay and injected cloud faults ([`Faults`]) | nothing |
//! | [`FileServer`] | in-process static HTTP/1.1 server over a directory (a history archive), with scripted answers | nothing |
//! | [`HttpSink`] | in-process recording HTTP/1.1 server with scriptable failures | nothing |
//! | [`parquet_dump`], [`duckdb_query`] | pyarrow and duckdb, two independent Parquet readers | the test venv |
//!
//! Safety rule for tests: never build a cloud client from the ambient environment. Always give
//! it the explicit endpoint and dummy credentials of one of these servers (see [`MotoS3::env`]),
//! so no SDK fallback ever reaches for the instance metadata service or a real cloud.

mod files;
mod gcs;
pub mod http;
mod moto;
mod postgres;
mod process;
pub mod promql;
mod python;
mod s3dir;
mod sink;
mod tls;

pub use files::{FileServer, Scripted};
pub use gcs::GcsProxy;
pub use moto::MotoS3;
pub use postgres::{PgOptions, Postgres};
pub use python::{
    delta_read, delta_read_uri, delta_read_uri_at, duckdb_query, parquet_dump, python, spark_read,
    tip_readers, venv_dir, workspace_root,
};
pub use s3dir::{Fault, FaultCounts, Faults, S3Dir};
pub use sink::{Behaviour, HttpSink, RecordedRequest, Reply};
/// Re-exported so tests can create scratch directories without their own dependency.
pub use tempfile::{self, TempDir};
pub use tls::{ServerCert, TestCa};

use std::collections::HashSet;
use std::net::TcpListener;
use std::sync::Mutex;

/// A TCP port on 127.0.0.1 that was free a moment ago.
///
/// The port is found by binding `127.0.0.1:0` and releasing it. No port is handed out twice by
/// one test process, so parallel tests in one binary never race each other for it; a race with
/// another process remains possible, which is why the server handles retry their start on a new
/// port when a server dies right after starting.
pub fn free_port() -> u16 {
    static HANDED_OUT: Mutex<Option<HashSet<u16>>> = Mutex::new(None);
    for _ in 0..100 {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap_or_else(|e| {
            panic!("bronze-testkit: cannot bind 127.0.0.1:0 to find a free port: {e}")
        });
        let port = listener
            .local_addr()
            .unwrap_or_else(|e| panic!("bronze-testkit: local_addr of a bound listener: {e}"))
            .port();
        drop(listener);
        let mut guard = HANDED_OUT.lock().unwrap_or_else(|p| p.into_inner());
        if guard.get_or_insert_with(HashSet::new).insert(port) {
            return port;
        }
    }
    panic!("bronze-testkit: no fresh free port on 127.0.0.1 after 100 tries");
}

/// Generate a name that is unique within this machine for a while (pid + counter + time), usable
/// as an S3/GCS bucket name (lowercase letters, digits and dashes).
pub fn unique_name(prefix: &str) -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    format!("{prefix}-{}-{n}-{nanos:x}", std::process::id())
}
