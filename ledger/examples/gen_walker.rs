//! Writes the generated LedgerCloseMeta walker (see `src/codegen.rs`) to stdout.
//!
//! Run: `cargo run -p bronze-ledger --example gen_walker > ledger/src/walk_gen.rs`
//! (the unit test `codegen::tests::walk_gen_is_current` says when this is needed).

fn main() {
    print!("{}", bronze_ledger::generated_walker_source());
}
