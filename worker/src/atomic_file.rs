//! Files that hold either all of the old content or all of the new, even across a crash: the
//! checkpoint, the catalog's queue of unrecorded partitions and the standalone PAS outbox.
//!
//! Each write goes to a temp file beside the target, is fsynced, is renamed (or hard-linked)
//! into place, and then the directory is fsynced. Why the fsyncs: a rename orders nothing on
//! disk. After a power loss, ext4 and XFS can show the new name over an empty or partial file
//! (its data was never flushed), and without the directory's fsync the rename itself can be
//! lost. The callers treat what they wrote as durable (the checkpoint moves the run past a
//! committed partition; a PAS event in the outbox is what delivery reads back), so two fsyncs
//! per write are the price of that promise. The directory's fsync is best effort: some
//! filesystems refuse it on a directory, and the file's own fsync has already run.

use std::io::Write;
use std::path::{Path, PathBuf};

/// Which step of a write failed, and why. Callers add the path and what the file is.
#[derive(Debug, thiserror::Error)]
#[error("cannot {op}: {source}")]
pub struct WriteError {
    pub op: &'static str,
    #[source]
    pub source: std::io::Error,
}

fn step(op: &'static str) -> impl FnOnce(std::io::Error) -> WriteError {
    move |source| WriteError { op, source }
}

/// Replaces `path` (or creates it) with `bytes`. The directory must exist.
pub fn replace(path: &Path, bytes: &[u8]) -> Result<(), WriteError> {
    let tmp = temp_path(path);
    let result = write_synced(&tmp, bytes)
        .and_then(|()| std::fs::rename(&tmp, path).map_err(step("rename into place")));
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result?;
    sync_dir(path);
    Ok(())
}

/// Creates `path` with `bytes` only if no file has that name; `Ok(false)` (and nothing written)
/// when one has. A hard link creates the name only if it is absent, so a concurrent writer can
/// never be replaced; on filesystems without hard links it falls back to check-then-rename (not
/// race-free, still atomic).
pub fn create_new(path: &Path, bytes: &[u8]) -> Result<bool, WriteError> {
    let tmp = temp_path(path);
    if let Err(e) = write_synced(&tmp, bytes) {
        let _ = std::fs::remove_file(&tmp);
        return Err(e);
    }
    let created = match std::fs::hard_link(&tmp, path) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(false),
        Err(_) if !path.exists() => std::fs::rename(&tmp, path)
            .map(|()| true)
            .map_err(step("rename into place")),
        Err(_) => Ok(false),
    };
    let _ = std::fs::remove_file(&tmp);
    if created? {
        sync_dir(path);
        return Ok(true);
    }
    Ok(false)
}

/// A hidden name beside `path`, unique to this process and moment, so two writers never share
/// a temp file and readers that list the directory skip it.
fn temp_path(path: &Path) -> PathBuf {
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned());
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    path.with_file_name(format!(
        ".{}.tmp-{}-{nanos:x}",
        name.unwrap_or_default(),
        std::process::id()
    ))
}

fn write_synced(path: &Path, bytes: &[u8]) -> Result<(), WriteError> {
    let mut file = std::fs::File::create(path).map_err(step("write"))?;
    file.write_all(bytes).map_err(step("write"))?;
    file.sync_all().map_err(step("sync"))
}

fn sync_dir(path: &Path) {
    if let Some(dir) = path.parent()
        && let Ok(d) = std::fs::File::open(dir)
    {
        let _ = d.sync_all();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entries(dir: &Path) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }

    #[test]
    fn replace_leaves_only_the_new_content_and_no_temp_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.json");
        replace(&path, b"one").unwrap();
        replace(&path, b"two").unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"two");
        assert_eq!(entries(dir.path()), ["state.json"]);
    }

    #[test]
    fn replace_into_a_missing_directory_fails_naming_the_step_and_leaves_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let err = replace(&dir.path().join("no/such/state.json"), b"x").unwrap_err();
        assert_eq!(err.op, "write");
        assert_eq!(entries(dir.path()), Vec::<String>::new());
    }

    #[test]
    fn create_new_never_replaces_an_existing_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("2-11.json");
        assert!(create_new(&path, b"first").unwrap());
        assert!(!create_new(&path, b"second").unwrap());
        assert_eq!(std::fs::read(&path).unwrap(), b"first");
        assert_eq!(entries(dir.path()), ["2-11.json"]);
    }
}
