//! Where paysay keeps its files, from `directories` so that the XDG variables (and the
//! platform's conventions on macOS and Windows) move them.

use std::io;
use std::path::{Path, PathBuf};

use crate::config::Config;

/// Resolved file locations for one run.
#[derive(Debug, Clone)]
pub struct Paths {
    /// The config file in use (the default one need not exist).
    pub config_file: PathBuf,
    /// Session, ledger and the login QR live here.
    pub state_dir: PathBuf,
    /// Synthesized audio.
    pub cache_dir: PathBuf,
    qr_png: Option<PathBuf>,
    ledger_db: Option<PathBuf>,
}

#[derive(Debug, thiserror::Error)]
#[error("cannot find a home directory to keep paysay's files in (set HOME or XDG_STATE_HOME)")]
pub struct NoHomeError;

fn project_dirs() -> Result<directories::ProjectDirs, NoHomeError> {
    directories::ProjectDirs::from("", "", "paysay").ok_or(NoHomeError)
}

impl Paths {
    /// The config file paysay reads when `--config` is not given.
    pub fn default_config_file() -> Result<PathBuf, NoHomeError> {
        Ok(project_dirs()?.config_dir().join("config.toml"))
    }

    pub fn new(config_file: &Path, config: &Config) -> Result<Paths, NoHomeError> {
        let dirs = project_dirs()?;
        // macOS and Windows have no separate state dir: keep state with local data there.
        let state_dir = dirs
            .state_dir()
            .unwrap_or_else(|| dirs.data_local_dir())
            .to_path_buf();
        Ok(Paths {
            config_file: config_file.to_path_buf(),
            state_dir,
            cache_dir: dirs.cache_dir().to_path_buf(),
            qr_png: config.wechat.qr_path.clone(),
            ledger_db: config.ledger.path.clone(),
        })
    }

    /// The same files, but the state (session, QR code, ledger) kept under `state_dir`:
    /// the demo runs there so it never touches the shop's real session or ledger.
    pub fn with_state_dir(&self, state_dir: &Path) -> Paths {
        Paths {
            state_dir: state_dir.to_path_buf(),
            qr_png: None,
            ledger_db: None,
            ..self.clone()
        }
    }

    /// Creates the state dir owner-only (0700), and makes an existing one so: it holds the
    /// WeChat session's keys and the ledger of what the shop earned, whatever the umask.
    pub fn prepare_state_dir(&self) -> io::Result<()> {
        create_private_dir_all(&self.state_dir)?;
        restrict(&self.state_dir, 0o700)
    }

    /// The saved WeChat session (cookies and keys), mode 0600.
    pub fn session_file(&self) -> PathBuf {
        self.state_dir.join("session.json")
    }

    /// The login QR code the shop owner scans.
    pub fn qr_png(&self) -> PathBuf {
        self.qr_png
            .clone()
            .unwrap_or_else(|| self.state_dir.join("login-qr.png"))
    }

    /// The payment ledger, which is also the memory of what was announced.
    pub fn ledger_db(&self) -> PathBuf {
        self.ledger_db
            .clone()
            .unwrap_or_else(|| self.state_dir.join("ledger.sqlite3"))
    }

    /// The token other devices open the shop's page with (`[web]` on a LAN address).
    pub fn web_token(&self) -> PathBuf {
        self.state_dir.join("web-token")
    }

    /// Synthesized announcements, keyed by backend, voice, rate and text.
    pub fn tts_cache_dir(&self) -> PathBuf {
        self.cache_dir.join("tts")
    }
}

/// Creates `dir` and any missing parents owner-only (0700 on Unix), whatever the umask.
pub fn create_private_dir_all(dir: &Path) -> io::Result<()> {
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    builder.create(dir)
}

/// Makes the file at `path` owner-only (0600), creating it empty if it is missing, so that
/// a database created in it afterwards is never readable by others even for a moment
/// (SQLite gives its -wal and -shm files the database's mode). A failure to create is left
/// to whoever opens the file next, which reports it with its path.
pub fn create_private_file(path: &Path) -> io::Result<()> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        let _ = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(path);
    }
    restrict(path, 0o600)
}

/// Sets the permission bits of `path` to `mode` if they differ; a missing file is fine.
/// A no-op where there are no Unix modes.
pub fn restrict(path: &Path, mode: u32) -> io::Result<()> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        match std::fs::metadata(path) {
            Ok(m) if m.permissions().mode() & 0o7777 != mode => {
                std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
            }
            Ok(_) => Ok(()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(e),
        }
    }
    #[cfg(not(unix))]
    {
        let _ = (path, mode);
        Ok(())
    }
}
