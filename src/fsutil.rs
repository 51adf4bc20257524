//! Writing a file so that a reader sees the old one or the new one, never half of either.
//!
//! One helper for every file paysay replaces (the saved session, the login QR code, cached
//! clips): a temp file beside the target, synced, renamed over it. The temp file is removed
//! on every failure, so a full disk does not leave one behind on each start.

use std::io::Write;
use std::path::Path;

/// Writes `bytes` to `path` atomically. The file is owner-only (mode 0600 from creation, so
/// a secret is never readable by others even for a moment); the parent directory is created
/// when missing.
pub fn write_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let dir = match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    };
    std::fs::create_dir_all(dir)?;
    let mut prefix = std::ffi::OsString::from(".");
    prefix.push(path.file_name().unwrap_or_default());
    prefix.push(".");
    // tempfile creates the file 0600 and deletes it when `tmp` is dropped, which every early
    // return below does; only a successful persist keeps it (under its final name).
    let mut tmp = tempfile::Builder::new()
        .prefix(&prefix)
        .suffix(".tmp")
        .tempfile_in(dir)?;
    tmp.write_all(bytes)?;
    tmp.as_file().sync_all()?;
    tmp.persist(path).map_err(|e| e.error)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(dir: &Path) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }

    #[test]
    fn replaces_the_file_owner_only_and_leaves_nothing_else() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub").join("session.json");
        write_atomically(&path, b"old").unwrap();
        write_atomically(&path, b"new").unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"new");
        assert_eq!(names(&dir.path().join("sub")), ["session.json"]);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
    }

    #[test]
    fn a_failed_rename_leaves_no_temp_file() {
        // The temp file is written, then the rename fails: the target is a non-empty
        // directory (a file cannot replace it, even for root).
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("login-qr.png");
        std::fs::create_dir(&target).unwrap();
        std::fs::write(target.join("keep"), b"x").unwrap();
        for _ in 0..3 {
            assert!(write_atomically(&target, b"png").is_err());
        }
        assert_eq!(names(dir.path()), ["login-qr.png"]);
    }
}
