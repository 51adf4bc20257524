//! The synthesized-audio cache: one file per (backend, voice, text), so a repeated amount
//! plays without a network round trip or a process spawn.
//!
//! Recency is the file's modification time, touched on every hit, so the least recently
//! used order survives restarts without an index file that could go stale. Files are
//! written to a temporary name and renamed, so a crash mid-write never leaves a truncated
//! clip that would later play as half an amount.
//!
//! The directory is listed (every clip's size and time) only when the cache may be over its
//! bound: once per process, then whenever the bytes stored since push the last known total
//! past it. A store, which sits between synthesis and the first sound of a new amount, does
//! not stat thousands of clips.

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use super::{Audio, AudioFormat, TtsError};

/// A cache directory bounded in size, evicting least recently used clips. Clones share
/// the known size.
#[derive(Debug, Clone)]
pub struct ClipCache {
    dir: PathBuf,
    max_bytes: u64,
    /// Bytes in the directory as of the last listing plus what was stored since; `None`
    /// until the first store lists it. Another process storing too (`paysay say` beside
    /// the daemon) only makes this low until the next listing.
    known_size: Arc<Mutex<Option<u64>>>,
}

/// The file stem of a cached clip: backend name plus a stable hash of voice and text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CacheKey(String);

const EXTENSIONS: [AudioFormat; 2] = [AudioFormat::Wav, AudioFormat::Mp3];

impl ClipCache {
    /// A cache in `dir` (created on first store) holding at most `max_bytes`.
    pub fn new(dir: PathBuf, max_bytes: u64) -> ClipCache {
        ClipCache {
            dir,
            max_bytes,
            known_size: Arc::default(),
        }
    }

    /// The directory clips live in.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The key for `text` spoken by `backend` with `voice` settings.
    pub fn key(backend: &str, voice: &str, text: &str) -> CacheKey {
        // FNV-1a over the three fields with separators: stable across Rust versions (unlike
        // std's hasher), so the cache stays valid after an upgrade.
        let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
        for byte in [backend, voice, text].join("\u{1f}").bytes() {
            hash ^= u64::from(byte);
            hash = hash.wrapping_mul(0x0100_0000_01b3);
        }
        let safe: String = backend
            .chars()
            .filter(char::is_ascii_alphanumeric)
            .collect();
        CacheKey(format!("{safe}-{hash:016x}"))
    }

    /// The cached clip for `key`, marked as just used; `None` when not cached.
    pub fn lookup(&self, key: &CacheKey) -> Option<PathBuf> {
        let path = EXTENSIONS
            .iter()
            .map(|f| self.path(key, *f))
            .find(|p| p.is_file())?;
        // A failed touch only makes this clip an earlier eviction candidate.
        if let Err(e) = touch(&path) {
            tracing::debug!("cannot mark {} as used: {e}", path.display());
        }
        Some(path)
    }

    /// Writes `audio` under `key` atomically, then evicts old clips beyond the size bound.
    pub fn store(&self, key: &CacheKey, audio: &Audio) -> Result<PathBuf, TtsError> {
        let err = |source| TtsError::Cache {
            path: self.dir.clone(),
            source,
        };
        let path = self.path(key, audio.format);
        crate::fsutil::write_atomically(&path, &audio.bytes).map_err(err)?;
        // Poisoned only by a panic in this lock's few lines; the size is a hint either way.
        let mut known = self.known_size.lock().unwrap_or_else(|e| e.into_inner());
        let stored = audio.bytes.len() as u64;
        match known.as_mut() {
            Some(total) if total.saturating_add(stored) <= self.max_bytes => *total += stored,
            _ => *known = self.evict(&path),
        }
        Ok(path)
    }

    fn path(&self, key: &CacheKey, format: AudioFormat) -> PathBuf {
        self.dir.join(format!("{}.{}", key.0, format.extension()))
    }

    /// Deletes least recently used clips until the cache fits, never `keep` (the clip about
    /// to be played), and returns the bytes left; `None` when the directory cannot be listed.
    /// Errors are logged: a full cache must not stop an announcement.
    fn evict(&self, keep: &Path) -> Option<u64> {
        let mut clips = match self.clips() {
            Ok(clips) => clips,
            Err(e) => {
                tracing::warn!("cannot list the speech cache {}: {e}", self.dir.display());
                return None;
            }
        };
        let mut total: u64 = clips.iter().map(|c| c.size).sum();
        clips.sort_by(|a, b| (a.used, &a.path).cmp(&(b.used, &b.path)));
        for clip in clips {
            if total <= self.max_bytes {
                break;
            }
            if clip.path == keep {
                continue;
            }
            match fs::remove_file(&clip.path) {
                Ok(()) => total = total.saturating_sub(clip.size),
                Err(e) => tracing::warn!("cannot evict {}: {e}", clip.path.display()),
            }
        }
        Some(total)
    }

    /// The clips in the directory (not temporary files of writes in progress).
    fn clips(&self) -> std::io::Result<Vec<CachedFile>> {
        let mut clips = Vec::new();
        for entry in fs::read_dir(&self.dir)? {
            let entry = entry?;
            let meta = entry.metadata()?;
            let is_clip = entry
                .path()
                .extension()
                .is_some_and(|e| EXTENSIONS.iter().any(|f| e == f.extension()));
            if meta.is_file() && is_clip {
                clips.push(CachedFile {
                    path: entry.path(),
                    size: meta.len(),
                    used: meta.modified().unwrap_or(SystemTime::UNIX_EPOCH),
                });
            }
        }
        Ok(clips)
    }
}

struct CachedFile {
    path: PathBuf,
    size: u64,
    used: SystemTime,
}

fn touch(path: &Path) -> std::io::Result<()> {
    fs::File::options()
        .append(true)
        .open(path)?
        .set_modified(SystemTime::now())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn audio(len: usize) -> Audio {
        Audio {
            bytes: vec![7; len],
            format: AudioFormat::Wav,
        }
    }

    #[test]
    fn key_depends_on_every_field_and_is_stable() {
        let k = ClipCache::key("system", "cmn|160", "微信收款一元");
        assert_eq!(k, ClipCache::key("system", "cmn|160", "微信收款一元"));
        assert_ne!(k, ClipCache::key("baidu", "cmn|160", "微信收款一元"));
        assert_ne!(k, ClipCache::key("system", "cmn|170", "微信收款一元"));
        assert_ne!(k, ClipCache::key("system", "cmn|160", "微信收款二元"));
    }

    #[test]
    fn store_then_lookup_round_trips() {
        let dir = tempfile::tempdir().unwrap();
        let cache = ClipCache::new(dir.path().join("tts"), 1 << 20);
        let key = ClipCache::key("system", "v", "t");
        assert_eq!(cache.lookup(&key), None);
        let path = cache.store(&key, &audio(100)).unwrap();
        assert_eq!(cache.lookup(&key), Some(path.clone()));
        assert_eq!(fs::read(&path).unwrap(), vec![7; 100]);
        // No temporary files are left behind by the atomic write.
        assert_eq!(fs::read_dir(cache.dir()).unwrap().count(), 1);
    }

    #[test]
    fn size_bound_evicts_least_recently_used() {
        let dir = tempfile::tempdir().unwrap();
        let cache = ClipCache::new(dir.path().to_path_buf(), 2500);
        let keys: Vec<CacheKey> = (0..3)
            .map(|i| ClipCache::key("s", "v", &i.to_string()))
            .collect();
        for key in &keys[..2] {
            cache.store(key, &audio(1000)).unwrap();
        }
        // Using clip 0 makes clip 1 the least recently used one.
        let old = SystemTime::now() - std::time::Duration::from_secs(60);
        for key in &keys[..2] {
            let f = fs::File::options()
                .append(true)
                .open(cache.path(key, AudioFormat::Wav))
                .unwrap();
            f.set_modified(old).unwrap();
        }
        assert!(cache.lookup(&keys[0]).is_some());
        cache.store(&keys[2], &audio(1000)).unwrap();
        assert!(
            cache.lookup(&keys[0]).is_some(),
            "recently used clip was evicted"
        );
        assert!(
            cache.lookup(&keys[1]).is_none(),
            "least recently used clip was kept"
        );
        assert!(cache.lookup(&keys[2]).is_some(), "new clip was evicted");
    }

    #[test]
    fn a_clip_larger_than_the_bound_is_still_kept_for_playing() {
        let dir = tempfile::tempdir().unwrap();
        let cache = ClipCache::new(dir.path().to_path_buf(), 10);
        let key = ClipCache::key("s", "v", "t");
        let path = cache.store(&key, &audio(100)).unwrap();
        assert!(path.is_file());
    }
}
