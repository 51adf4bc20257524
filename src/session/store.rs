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

/// Reads the saved session; `Ok(None)` when there is none or it is unusable (logged).
pub fn load(path: &Path) -> Result<Option<SavedSession>, SessionError> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(source) => {
            return Err(SessionError::File {
                what: "cannot read the saved session",
                path: path.to_path_buf(),
                source,
            });
        }
    };
    match serde_json::from_str::<SavedSession>(&text) {
        Ok(s) if s.version == FORMAT_VERSION => Ok(Some(s)),
        Ok(s) => {
            tracing::warn!(path = %path.display(), version = s.version, "saved session is from another paysay version; a new login is needed");
            Ok(None)
        }
        Err(e) => {
            tracing::warn!(path = %path.display(), error = %e, "saved session is unreadable; a new login is needed");
            Ok(None)
        }
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

