//! Regenerates the LedgerCloseMeta walker (`src/walk_gen.rs`, see `src/codegen.rs`).
//!
//! Run: `cargo run -p bronze-ledger --example gen_walker -- --write` (the unit test
//! `codegen::tests::walk_gen_is_current` says when this is needed). Without `--write` the
//! source goes to stdout.
//!
//! The file is written by this program rather than by a shell redirect on purpose: the crate
//! compiles `walk_gen.rs` itself, so truncating it before cargo builds this example would break
//! the build the regeneration needs. (If the file ever is broken, `git checkout` it first.)

use std::path::Path;

fn main() {
    let source = bronze_ledger::generated_walker_source();
    if std::env::args().nth(1).as_deref() == Some("--write") {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("src/walk_gen.rs");
        if std::fs::read_to_string(&path).ok().as_deref() == Some(source.as_str()) {
            println!("{} is up to date", path.display());
        } else {
            std::fs::write(&path, source).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            println!("wrote {}", path.display());
        }
    } else {
        print!("{source}");
    }
}
