//! End-to-end tests of the `bronze-copier` binary against real servers on loopback. One test
//! binary (modules per area) so the heavy crate is linked once.

// Shared by the test modules.
mod binary;
mod datastore;
mod harness;
mod oracle;

mod archive;
mod bad_input;
mod catalog;
mod catalog_tls;
mod cli;
mod cloud;
mod dashboard;
mod delta;
mod faults;
mod follow;
mod health;
mod local;
mod metrics;
mod overwrite;
mod pas;
mod pas_stream;
mod runbook;
mod terminal;
mod tip;
mod tip_bench;
mod verify;
mod worker_mode;
