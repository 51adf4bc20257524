//! `paysay service install|uninstall` run as the real binary with its config dir in a temp
//! dir. `systemctl` is a script on a PATH of the test's own, which records its arguments and
//! succeeds or fails on demand: no test touches the machine's real service manager.

#![cfg(target_os = "linux")]

mod common;

use std::path::{Path, PathBuf};
use std::process::Output;

struct Home {
    dir: tempfile::TempDir,
}

/// What the fake `systemctl` does.
enum Systemctl {
    /// Records its arguments, one call a line, and succeeds.
    Works,
    /// Prints systemd's message for a missing user session and fails.
    NoBus,
    /// Is not installed.
    Missing,
}

impl Home {
    fn new(systemctl: Systemctl) -> Home {
        let dir = tempfile::tempdir().unwrap();
        let bin = dir.path().join("bin");
        std::fs::create_dir(&bin).unwrap();
        let log = dir.path().join("systemctl.log");
        let script = match systemctl {
            Systemctl::Works => format!("#!/bin/sh\necho \"$@\" >> '{}'\n", log.display()),
            Systemctl::NoBus => {
                "#!/bin/sh\necho 'Failed to connect to bus: No medium found' >&2\nexit 1\n".into()
            }
            Systemctl::Missing => String::new(),
        };
        if !script.is_empty() {
            write_executable(&bin.join("systemctl"), &script);
        }
        Home { dir }
    }

    fn root(&self) -> &Path {
        self.dir.path()
    }

    fn unit_file(&self) -> PathBuf {
        self.root().join("config/systemd/user/paysay.service")
    }

    fn systemctl_calls(&self) -> String {
        std::fs::read_to_string(self.root().join("systemctl.log")).unwrap_or_default()
    }

    fn paysay(&self, args: &[&str]) -> Output {
        let root = self.root();
        common::paysay_in(root)
            .args(args)
            .env("PATH", root.join("bin"))
            .output()
            .unwrap()
    }
}

fn write_executable(path: &Path, text: &str) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::write(path, text).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).unwrap();
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[test]
fn install_no_start_writes_a_notify_unit_for_this_binary() {
    let home = Home::new(Systemctl::Works);
    let out = home.paysay(&["service", "install", "--no-start"]);
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let unit = std::fs::read_to_string(home.unit_file()).unwrap();
    let exec_start = format!("\nExecStart={} run\n", env!("CARGO_BIN_EXE_paysay"));
    assert!(unit.contains(&exec_start), "{unit}");
    for line in [
        "\nType=notify\n",
        "\nNotifyAccess=main\n",
        "\nRestart=on-failure\n",
        "\nExecReload=/bin/kill -HUP $MAINPID\n",
        "\nWantedBy=default.target\n",
        "\nLimitNOFILE=8192\n",
    ] {
        assert!(unit.contains(line), "{line:?} missing from\n{unit}");
    }
    assert!(unit.contains("\nWatchdogSec="), "{unit}");
    assert_eq!(home.systemctl_calls(), "", "--no-start ran systemctl");
    assert!(
        stdout.contains("systemctl --user enable paysay.service"),
        "{stdout}"
    );
    assert!(
        stdout.contains("journalctl --user -u paysay -f"),
        "{stdout}"
    );
    assert!(stdout.contains("loginctl enable-linger"), "{stdout}");
    let qr = home.root().join("state/paysay/login-qr.png");
    assert!(stdout.contains(&qr.display().to_string()), "{stdout}");
}

#[test]
fn install_passes_an_absolute_config_path_quoted_for_systemd() {
    let home = Home::new(Systemctl::Works);
    std::fs::write(home.root().join("shop config.toml"), "").unwrap();
    let out = common::paysay_in(home.root())
        .current_dir(home.root())
        .args([
            "--config",
            "shop config.toml",
            "service",
            "install",
            "--no-start",
        ])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    let unit = std::fs::read_to_string(home.unit_file()).unwrap();
    let config = home.root().join("shop config.toml");
    let expected = format!("--config \"{}\" run\n", config.display());
    assert!(unit.contains(&expected), "{unit}");
}

#[test]
fn install_reloads_enables_and_restarts() {
    let home = Home::new(Systemctl::Works);
    let out = home.paysay(&["service", "install"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(
        home.systemctl_calls(),
        "--user daemon-reload\n--user enable paysay.service\n--user restart paysay.service\n"
    );
    assert!(text(&out.stdout).contains("Started it"));
}

#[test]
fn install_without_a_user_session_says_what_to_run_by_hand() {
    let home = Home::new(Systemctl::NoBus);
    let out = home.paysay(&["service", "install"]);
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert!(stderr.contains("is written, but not started"), "{stderr}");
    assert!(stderr.contains("not through su or sudo"), "{stderr}");
    assert!(stderr.contains("by hand"), "{stderr}");
    assert!(
        stderr.contains("    systemctl --user restart paysay.service"),
        "{stderr}"
    );
    assert!(home.unit_file().exists());
}

#[test]
fn install_without_systemctl_is_a_clear_error() {
    let home = Home::new(Systemctl::Missing);
    let out = home.paysay(&["service", "install"]);
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("systemctl is not installed"), "{stderr}");
    assert!(
        stderr.contains("systemctl --user daemon-reload"),
        "{stderr}"
    );
}

#[test]
fn uninstall_stops_removes_and_keeps_the_state() {
    let home = Home::new(Systemctl::Works);
    assert!(
        home.paysay(&["service", "install", "--no-start"])
            .status
            .success()
    );
    let state = home.root().join("state/paysay");
    std::fs::create_dir_all(&state).unwrap();
    std::fs::write(state.join("ledger.sqlite3"), "kept").unwrap();
    let out = home.paysay(&["service", "uninstall"]);
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(!home.unit_file().exists());
    assert_eq!(
        home.systemctl_calls(),
        "--user disable --now paysay.service\n--user daemon-reload\n"
    );
    assert!(stdout.contains("Kept paysay's state"), "{stdout}");
    assert!(state.join("ledger.sqlite3").exists());
    let again = home.paysay(&["service", "uninstall"]);
    assert!(again.status.success());
    assert!(text(&again.stdout).contains("No paysay service is installed"));
}

#[test]
fn uninstall_that_cannot_stop_keeps_the_file() {
    let home = Home::new(Systemctl::NoBus);
    assert!(
        home.paysay(&["service", "install", "--no-start"])
            .status
            .success()
    );
    let out = home.paysay(&["service", "uninstall"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("systemctl --user disable --now paysay.service"));
    assert!(
        home.unit_file().exists(),
        "the commands by hand need the file"
    );
}

#[test]
fn uninstall_no_stop_keeps_the_file_the_commands_by_hand_need() {
    let home = Home::new(Systemctl::Works);
    assert!(
        home.paysay(&["service", "install", "--no-start"])
            .status
            .success()
    );
    let out = home.paysay(&["service", "uninstall", "--no-stop"]);
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(home.systemctl_calls(), "", "--no-stop ran systemctl");
    // `systemctl disable` before systemd 257 fails once the unit file is gone.
    assert!(home.unit_file().exists(), "{stdout}");
    let by_hand = format!(
        "    systemctl --user disable --now paysay.service\n    rm {}\n    systemctl --user daemon-reload\n",
        home.unit_file().display()
    );
    assert!(stdout.contains(&by_hand), "{stdout}");
    assert!(stdout.contains("Kept paysay's state"), "{stdout}");
}

#[test]
fn install_speaker_writes_a_second_unit_beside_the_daemons() {
    let home = Home::new(Systemctl::Works);
    assert!(
        home.paysay(&["service", "install", "--no-start"])
            .status
            .success()
    );
    let out = home.paysay(&["service", "install", "--speaker"]);
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let speaker = home
        .root()
        .join("config/systemd/user/paysay-speaker.service");
    let unit = std::fs::read_to_string(&speaker).unwrap();
    let exec_start = format!("\nExecStart={} speaker\n", env!("CARGO_BIN_EXE_paysay"));
    assert!(unit.contains(&exec_start), "{unit}");
    assert!(
        unit.contains("\nType=notify\n") && unit.contains("\nWatchdogSec="),
        "{unit}"
    );
    assert!(
        !unit.contains("ExecReload="),
        "the speaker has no reload: {unit}"
    );
    // The daemon's unit is left as it was.
    let daemon = std::fs::read_to_string(home.unit_file()).unwrap();
    assert!(daemon.contains(" run\n"), "{daemon}");
    assert_eq!(
        home.systemctl_calls(),
        "--user daemon-reload\n--user enable paysay-speaker.service\n--user restart paysay-speaker.service\n"
    );
    assert!(
        stdout.contains("journalctl --user -u paysay-speaker -f"),
        "{stdout}"
    );
    assert!(!stdout.contains("QR code"), "{stdout}");
    let out = home.paysay(&["service", "uninstall", "--speaker"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(!speaker.exists());
    assert!(home.unit_file().exists());
}
