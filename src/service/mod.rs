//! `paysay service install|uninstall`: run paysay as the shop owner's own service, started
//! at login (or boot, with linger) and restarted when it fails, without the owner writing
//! a unit file.
//!
//! The files written are the shipped `systemd/paysay.service` and `systemd/com.paysay.plist`
//! with only the command line (and, for launchd, the home directory) filled in, so the
//! documented files and the installed ones cannot drift apart. Installing is two halves:
//! writing the file, which always works the same, and asking the service manager to load
//! it, which can fail (no user bus over ssh, no systemctl at all); then the owner is told
//! exactly which commands to run by hand.

mod launchd;
mod systemd;

use std::ffi::OsStr;
use std::fmt;
use std::path::{Path, PathBuf};
use std::process::Command;

use directories::BaseDirs;

/// Why the service could not be installed or removed.
#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    #[error("paysay can install itself as a service only with systemd (Linux) or launchd (macOS)")]
    Unsupported,
    #[error("cannot find the home directory to install the service in (set HOME)")]
    NoHome,
    #[error(
        "the path {0} cannot go into a service file (it is not UTF-8 or holds a control character); move paysay or the config somewhere plainer"
    )]
    UnusablePath(PathBuf),
    #[error("cannot write the service file {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot remove the service file {path}: {source}")]
    Remove {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("this paysay's service template lacks {0:?}; it was built from a damaged checkout")]
    Template(&'static str),
    #[error("`{command}` could not be run: {reason}\nRun these commands by hand:\n{by_hand}")]
    Tool {
        command: String,
        reason: String,
        by_hand: String,
    },
    #[error(
        "`{command}` failed ({status}): {stderr}{hint}\nRun these commands by hand:\n{by_hand}"
    )]
    Failed {
        command: String,
        status: String,
        stderr: String,
        /// Empty, or what the failure usually means, starting with a newline.
        hint: &'static str,
        by_hand: String,
    },
}

/// The service manager of the platform.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Manager {
    /// systemd's per-user manager (`systemctl --user`).
    Systemd,
    /// launchd's per-user agents (macOS).
    Launchd,
}

impl Manager {
    /// The manager of the platform paysay was built for; `None` on Windows.
    pub fn native() -> Option<Manager> {
        if cfg!(target_os = "macos") {
            Some(Manager::Launchd)
        } else if cfg!(unix) {
            Some(Manager::Systemd)
        } else {
            None
        }
    }

    /// Where this manager looks for the owner's service file of `role`.
    pub fn service_file(self, role: Role) -> Result<PathBuf, ServiceError> {
        let dirs = base_dirs()?;
        Ok(match self {
            Manager::Systemd => systemd::service_file(&dirs, role),
            Manager::Launchd => launchd::service_file(&dirs, role),
        })
    }

    /// The text of the service file that runs `invocation`.
    fn service_text(self, invocation: &Invocation) -> Result<String, ServiceError> {
        match self {
            Manager::Systemd => systemd::unit(invocation),
            Manager::Launchd => launchd::plist(invocation, &home_dir()?),
        }
    }

    /// The commands that load and (re)start the service once its file is in place.
    fn start_steps(self, role: Role, file: &Path, uid: u32) -> Vec<Step> {
        match self {
            Manager::Systemd => systemd::start_steps(role),
            Manager::Launchd => launchd::start_steps(role, file, uid),
        }
    }

    /// The commands that stop the service and keep it from starting again.
    fn stop_steps(self, role: Role, uid: u32) -> Vec<Step> {
        match self {
            Manager::Systemd => systemd::stop_steps(role),
            Manager::Launchd => launchd::stop_steps(role, uid),
        }
    }

    /// The commands to run once the service file is gone.
    fn forget_steps(self) -> Vec<Step> {
        match self {
            Manager::Systemd => systemd::forget_steps(),
            Manager::Launchd => Vec::new(),
        }
    }

    /// How to watch the installed service, and what keeps it running.
    fn advice(self, role: Role) -> String {
        match self {
            Manager::Systemd => systemd::advice(role),
            Manager::Launchd => launchd::advice(role),
        }
    }
}

/// Which paysay a service runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// `paysay run`: the WeChat session and the speaker at the counter.
    Daemon,
    /// `paysay speaker`: a second speaker fed over MQTT, beside or instead of the daemon.
    Speaker,
}

impl Role {
    /// The service's name (`systemctl --user status NAME`).
    pub fn name(self) -> &'static str {
        match self {
            Role::Daemon => "paysay",
            Role::Speaker => "paysay-speaker",
        }
    }

    /// The paysay command the service runs.
    fn command(self) -> &'static str {
        match self {
            Role::Daemon => "run",
            Role::Speaker => "speaker",
        }
    }
}

/// The command line the service runs: `PROGRAM [--config FILE] run` (or `speaker`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invocation {
    /// Which paysay runs.
    pub role: Role,
    /// The paysay binary, absolute.
    pub program: PathBuf,
    /// The config file named with `--config`, absolute; `None` for the default one.
    pub config: Option<PathBuf>,
}

impl Invocation {
    /// The words of the command line, each as UTF-8 (service files are text).
    fn words(&self) -> Result<Vec<String>, ServiceError> {
        let mut words = vec![plain(&self.program)?];
        if let Some(config) = &self.config {
            words.push("--config".into());
            words.push(plain(config)?);
        }
        words.push(self.role.command().into());
        Ok(words)
    }
}

/// `path` as text fit for a service file.
fn plain(path: &Path) -> Result<String, ServiceError> {
    let unusable = || ServiceError::UnusablePath(path.to_path_buf());
    let text = path.to_str().ok_or_else(unusable)?;
    if text.chars().any(char::is_control) {
        return Err(unusable());
    }
    Ok(text.to_string())
}

/// A command for the service manager, shown to the owner as it would be typed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Step {
    program: &'static str,
    args: Vec<String>,
    /// A failure only means there was nothing to undo (e.g. unloading what is not loaded).
    may_fail: bool,
}

impl Step {
    fn new(program: &'static str, args: &[&str]) -> Step {
        Step {
            program,
            args: args.iter().map(|a| a.to_string()).collect(),
            may_fail: false,
        }
    }

    fn may_fail(self) -> Step {
        Step {
            may_fail: true,
            ..self
        }
    }
}

impl fmt::Display for Step {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.program)?;
        for arg in &self.args {
            if arg.chars().any(|c| c.is_whitespace() || c == '\'') {
                write!(f, " '{}'", arg.replace('\'', r"'\''"))?;
            } else {
                write!(f, " {arg}")?;
            }
        }
        Ok(())
    }
}

/// Runs `steps` in order; on the first failure, the error lists it and the rest as the
/// commands to run by hand.
pub fn run_steps(steps: &[Step]) -> Result<(), ServiceError> {
    for (i, step) in steps.iter().enumerate() {
        let by_hand = || {
            steps[i..]
                .iter()
                .map(|s| format!("    {s}"))
                .collect::<Vec<_>>()
                .join("\n")
        };
        let output = match Command::new(step.program).args(&step.args).output() {
            Ok(output) => output,
            Err(e) => {
                let reason = match e.kind() {
                    std::io::ErrorKind::NotFound => format!("{} is not installed", step.program),
                    _ => e.to_string(),
                };
                return Err(ServiceError::Tool {
                    command: step.to_string(),
                    reason,
                    by_hand: by_hand(),
                });
            }
        };
        if output.status.success() || step.may_fail {
            continue;
        }
        let stderr = String::from_utf8_lossy(&output.stderr).trim().to_string();
        return Err(ServiceError::Failed {
            command: step.to_string(),
            status: output.status.to_string(),
            hint: failure_hint(&stderr),
            stderr,
            by_hand: by_hand(),
        });
    }
    Ok(())
}

/// What a service manager's complaint usually means, for the failures owners meet.
fn failure_hint(stderr: &str) -> &'static str {
    if stderr.contains("connect to bus") || stderr.contains("XDG_RUNTIME_DIR") {
        // systemctl --user needs the user's own login session: `su` and `sudo` give none.
        "\n(systemctl --user found no session of your user: log in as this user directly, \
         on the console or with ssh, not through su or sudo, and run it again)"
    } else {
        ""
    }
}

/// Writes the service file, creating its directory. Readable by others is fine: it holds
/// no secret, and launchd refuses agents that are group- or world-writable.
fn write_service_file(path: &Path, text: &str) -> Result<(), ServiceError> {
    let write_error = |source| ServiceError::Write {
        path: path.to_path_buf(),
        source,
    };
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(write_error)?;
    }
    std::fs::write(path, text).map_err(write_error)?;
    set_mode_644(path).map_err(write_error)
}

#[cfg(unix)]
fn set_mode_644(path: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o644))
}

#[cfg(not(unix))]
fn set_mode_644(_: &Path) -> std::io::Result<()> {
    Ok(())
}

/// Removes the service file; `Ok(false)` when there was none.
fn remove_service_file(path: &Path) -> Result<bool, ServiceError> {
    match std::fs::remove_file(path) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
        Err(source) => Err(ServiceError::Remove {
            path: path.to_path_buf(),
            source,
        }),
    }
}

/// The owner's user id, for launchd's `gui/<uid>` domain: the owner of a file this process
/// just wrote is this process's user, which saves a dependency on libc for one call.
fn owner_uid(written: &Path) -> Result<u32, ServiceError> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        std::fs::metadata(written)
            .map(|m| m.uid())
            .map_err(|source| ServiceError::Write {
                path: written.to_path_buf(),
                source,
            })
    }
    #[cfg(not(unix))]
    {
        let _ = written;
        Err(ServiceError::Unsupported)
    }
}

/// True when `program` lives in a cargo build directory, which `cargo clean` empties.
fn is_build_output(program: &Path) -> bool {
    let mut parts = program.components().map(|c| c.as_os_str());
    let mut previous: Option<&OsStr> = None;
    parts.any(|part| {
        let hit = previous == Some(OsStr::new("target"))
            && (part == OsStr::new("debug") || part == OsStr::new("release"));
        previous = Some(part);
        hit
    })
}

/// A service file written by [`install_file`], and the commands that start it.
#[derive(Debug, Clone)]
pub struct Installed {
    manager: Manager,
    role: Role,
    /// The unit or plist written.
    pub file: PathBuf,
    /// The paysay binary the service runs.
    program: PathBuf,
    /// What the service runs, as a line for people.
    command_line: String,
    /// What loads and starts it.
    pub start: Vec<Step>,
}

/// Writes the service file for `invocation` where the platform's manager finds it. Starting
/// it is a separate step ([`run_steps`] on `start`), so `--no-start` and tests stop here.
pub fn install_file(manager: Manager, invocation: &Invocation) -> Result<Installed, ServiceError> {
    let file = manager.service_file(invocation.role)?;
    write_service_file(&file, &manager.service_text(invocation)?)?;
    let start = manager.start_steps(invocation.role, &file, owner_uid(&file)?);
    Ok(Installed {
        manager,
        role: invocation.role,
        program: invocation.program.clone(),
        command_line: invocation.words()?.join(" "),
        file,
        start,
    })
}

fn base_dirs() -> Result<BaseDirs, ServiceError> {
    BaseDirs::new().ok_or(ServiceError::NoHome)
}

fn home_dir() -> Result<PathBuf, ServiceError> {
    Ok(base_dirs()?.home_dir().to_path_buf())
}

impl Installed {
    /// What was done and what the owner does next: where the QR code appears, how to read
    /// the log, and how to keep paysay running without anyone logged in.
    pub fn explain(&self, started: bool, qr_png: &Path) -> String {
        let mut text = format!(
            "Installed the {} service: {}
  it runs: {}
",
            self.role.name(),
            self.file.display(),
            self.command_line
        );
        if is_build_output(&self.program) {
            text.push_str(
                "  note: that binary is in a cargo build directory, which `cargo clean` empties; \
                 `cargo install --path .` and installing again from ~/.cargo/bin is safer\n",
            );
        }
        if started {
            text.push_str("Started it, and it starts again at every login and after a crash:\n");
        } else {
            text.push_str("Not started (--no-start). To start it, run:\n");
        }
        for step in &self.start {
            text.push_str(&format!("    {step}\n"));
        }
        match self.role {
            Role::Daemon => text.push_str(&format!(
                "When WeChat asks for a login (first start, then about once a day), paysay says so \
                 out loud and saves the QR code to scan as\n    {}\n\
                 On a computer without a screen, copy that PNG to a phone or laptop and scan it there.\n",
                qr_png.display()
            )),
            Role::Speaker => text.push_str(
                "It says each payment the daemon publishes to the [mqtt] broker; \
                 it needs no WeChat login.\n",
            ),
        }
        text.push_str(&self.manager.advice(self.role));
        text
    }
}

/// What [`uninstall`] did.
#[derive(Debug, Clone)]
pub enum Uninstalled {
    /// There was no service file.
    NotInstalled(PathBuf),
    /// The service was stopped and disabled, and its file removed.
    Removed(PathBuf),
    /// `--no-stop`: nothing was changed; `pending` stop the service and then remove `file`.
    Pending { file: PathBuf, pending: Vec<Step> },
}

/// Stops and disables the service, then removes its file; with `stop` false, only says
/// how. The file stays until the service is stopped, because disabling needs it: systemd
/// before v257 refuses to disable a unit whose file is gone ("Unit file … does not exist")
/// and leaves it enabled.
pub fn uninstall(manager: Manager, role: Role, stop: bool) -> Result<Uninstalled, ServiceError> {
    let file = manager.service_file(role)?;
    if !file.exists() {
        return Ok(Uninstalled::NotInstalled(file));
    }
    let stop_first = manager.stop_steps(role, owner_uid(&file)?);
    let after = manager.forget_steps();
    if !stop {
        let remove = Step::new("rm", &[&file.display().to_string()]);
        let pending = stop_first
            .into_iter()
            .chain([remove])
            .chain(after)
            .collect();
        return Ok(Uninstalled::Pending { file, pending });
    }
    run_steps(&stop_first)?;
    remove_service_file(&file)?;
    run_steps(&after)?;
    Ok(Uninstalled::Removed(file))
}

impl Uninstalled {
    /// What was done, and that the session and the ledger are still there.
    pub fn explain(&self, state_dir: &Path, ledger: &Path) -> String {
        let mut text = match self {
            Uninstalled::NotInstalled(file) => {
                return format!(
                    "No paysay service is installed ({} does not exist); nothing to do.\n",
                    file.display()
                );
            }
            Uninstalled::Removed(file) => format!(
                "Removed the paysay service: {}\n\
                 It is stopped and no longer starts at login.\n",
                file.display()
            ),
            Uninstalled::Pending { file, pending } => {
                let mut text = format!(
                    "Left the paysay service as it is (--no-stop): {}\n\
                     To stop it and remove it, run:\n",
                    file.display()
                );
                for step in pending {
                    text.push_str(&format!("    {step}\n"));
                }
                text
            }
        };
        text.push_str(&format!(
            "Kept paysay's state: the WeChat session in {}, \
             the payment ledger {}.\n\
             `paysay run` or `paysay service install` goes on from there; delete them \
             to forget the login and the payments.\n",
            state_dir.display(),
            ledger.display()
        ));
        text
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A command line with a space in the program's path, for the managers' tests.
    pub(super) fn invocation(config: Option<&str>) -> Invocation {
        Invocation {
            role: Role::Daemon,
            program: PathBuf::from("/opt/pay say/bin/paysay"),
            config: config.map(PathBuf::from),
        }
    }

    #[test]
    fn build_output_is_recognised() {
        assert!(is_build_output(Path::new(
            "/src/paysay/target/debug/paysay"
        )));
        assert!(!is_build_output(Path::new("/home/a/.cargo/bin/paysay")));
    }
}
