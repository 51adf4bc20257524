//! The saved session: what lets a restart resume without a new scan while the server allows.
//!
//! It holds the keys to the owner's WeChat account (cookies, sid, skey), so it is written
//! with mode 0600, atomically (a temp file renamed over the old one), so a crash or power cut
//! mid-write leaves the previous session rather than half a file.

use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Serialize};

use super::error::SessionError;
use crate::protocol::{Hosts, SyncKey};

/// Bumped when the layout changes; an older file is discarded (costs one scan).
const FORMAT_VERSION: u32 = 1;

/// Everything needed to go on with a logged-in session.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct SavedSession {
    pub version: u32,
    pub uin: u64,
    pub sid: String,
    pub skey: String,
    /// As the ticket XML gave it (already percent-encoded once).
    pub pass_ticket: String,
    pub device_id: String,
    pub hosts: Hosts,
    pub cookies: BTreeMap<String, String>,
    pub sync_key: SyncKey,
    pub sync_check_key: SyncKey,
    /// Our own per-session UserName: messages from it are our own.
    pub user_name: String,
    pub nick_name: String,
    /// Unix seconds of the last save.
    pub saved_at: i64,
}

impl SavedSession {
    pub fn new_version() -> u32 {
        FORMAT_VERSION
    }
}

/// Reads the saved session; `Ok(None)` when there is none or it is unusable.
///
/// A session that cannot be read (bad bytes, bad JSON, an old layout, even an I/O error) is
/// logged and treated as no session: a new login costs one scan, while refusing to start
/// would put a service into a restart loop that no scan can end.
pub fn load(path: &Path) -> Result<Option<SavedSession>, SessionError> {
    let unusable = |reason: &dyn std::fmt::Display| {
        tracing::warn!(path = %path.display(), reason = %reason, "the saved session cannot be used; a new login is needed");
        Ok(None)
    };
    let bytes = match std::fs::read(path) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return unusable(&format_args!("cannot read it: {e}")),
    };
    match serde_json::from_slice::<SavedSession>(&bytes) {
        Ok(s) if s.version == FORMAT_VERSION => Ok(Some(s)),
        Ok(s) => unusable(&format_args!(
            "it is from another paysay version (format {})",
            s.version
        )),
        Err(e) => unusable(&format_args!("it is not a saved session: {e}")),
    }
}

/// Writes the session atomically with owner-only permissions.
pub fn save(path: &Path, session: &SavedSession) -> Result<(), SessionError> {
    let file_error = |what, source| SessionError::File {
        what,
        path: path.to_path_buf(),
        source,
    };
    let json = serde_json::to_vec_pretty(session)
        .map_err(|e| file_error("cannot encode the session for", std::io::Error::other(e)))?;
    crate::fsutil::write_atomically(path, &json)
        .map_err(|e| file_error("cannot save the session to", e))
}

/// Removes the saved session after the server ended it.
pub fn discard(path: &Path) -> Result<(), SessionError> {
    match std::fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(source) => Err(SessionError::File {
            what: "cannot remove the ended session",
            path: path.to_path_buf(),
            source,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_unreadable_session_is_no_session() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("session.json");
        assert!(load(&path).unwrap().is_none(), "missing");
        for bytes in [
            &b"{\"version\": 1, \"sid\": \"\xff\xfe\"}"[..],
            b"\xff\xfe\x00garbage",
            b"{\"version\": 999}",
            b"",
        ] {
            std::fs::write(&path, bytes).unwrap();
            assert!(load(&path).unwrap().is_none(), "{bytes:?}");
        }
        // Not even a file: still no session rather than an error that stops the start.
        std::fs::remove_file(&path).unwrap();
        std::fs::create_dir(&path).unwrap();
        assert!(load(&path).unwrap().is_none(), "directory");
    }
}
