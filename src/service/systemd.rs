//! systemd's per-user manager (`systemctl --user`): the unit file, the commands that load,
//! stop and forget it, and the advice after installing.

use std::path::{Path, PathBuf};

use directories::BaseDirs;

use super::{Invocation, Role, ServiceError, Step};

/// The systemd user unit, as shipped; `ExecStart=` is replaced on install.
const UNIT: &str = include_str!("../../systemd/paysay.service");
/// The line of the shipped unit that install replaces.
const SHIPPED_EXEC_START: &str = "ExecStart=%h/.cargo/bin/paysay run";
/// The daemon's description, replaced for the speaker.
const SHIPPED_DESCRIPTION: &str = "Description=paysay: speaks WeChat Pay payments out loud\n";
/// The daemon reloads on SIGHUP; the speaker has nothing to reload (a restart does it), and
/// SIGHUP would end it.
const SHIPPED_RELOAD: &str = "ExecReload=/bin/kill -HUP $MAINPID\n";

/// The unit's name for `systemctl --user` and `journalctl --user -u`.
fn unit_name(role: Role) -> String {
    format!("{}.service", role.name())
}

/// Where the user manager looks for the unit: $XDG_CONFIG_HOME/systemd/user is in its
/// search path.
pub(super) fn service_file(dirs: &BaseDirs, role: Role) -> PathBuf {
    dirs.config_dir().join("systemd/user").join(unit_name(role))
}

/// The unit file for `invocation`: the shipped unit with its `ExecStart=` line replaced
/// (and, for the speaker, its description and reload).
pub(super) fn unit(invocation: &Invocation) -> Result<String, ServiceError> {
    for line in [SHIPPED_EXEC_START, SHIPPED_DESCRIPTION, SHIPPED_RELOAD] {
        if !UNIT.contains(line) {
            return Err(ServiceError::Template(line));
        }
    }
    let words: Vec<String> = invocation.words()?.iter().map(|w| word(w)).collect();
    let exec_start = format!("ExecStart={}", words.join(" "));
    let unit = UNIT.replacen(SHIPPED_EXEC_START, &exec_start, 1);
    Ok(match invocation.role {
        Role::Daemon => unit,
        Role::Speaker => unit
            .replacen(
                SHIPPED_DESCRIPTION,
                "Description=paysay speaker: says the payments published over MQTT\n",
                1,
            )
            .replacen(SHIPPED_RELOAD, "", 1),
    })
}

/// One word of a systemd command line: `%` and `$` would be expanded by systemd, and
/// spaces, quotes and backslashes would split or change the word, so they are escaped.
fn word(word: &str) -> String {
    let expanded = word.replace('%', "%%").replace('$', "$$");
    let needs_quotes = expanded.is_empty()
        || expanded
            .chars()
            .any(|c| c.is_whitespace() || matches!(c, '"' | '\'' | '\\' | ';'));
    if needs_quotes {
        format!(
            "\"{}\"",
            expanded.replace('\\', "\\\\").replace('"', "\\\"")
        )
    } else {
        expanded
    }
}

/// Loads and (re)starts the unit. `restart` rather than `enable --now`, so that installing
/// again after an upgrade runs the new binary.
pub(super) fn start_steps(role: Role) -> Vec<Step> {
    let name = unit_name(role);
    vec![
        Step::new("systemctl", &["--user", "daemon-reload"]),
        Step::new("systemctl", &["--user", "enable", &name]),
        Step::new("systemctl", &["--user", "restart", &name]),
    ]
}

/// Stops the unit and keeps it from starting again.
pub(super) fn stop_steps(role: Role) -> Vec<Step> {
    vec![Step::new(
        "systemctl",
        &["--user", "disable", "--now", &unit_name(role)],
    )]
}

/// After the file is gone: systemd forgets the unit only on a reload.
pub(super) fn forget_steps() -> Vec<Step> {
    vec![Step::new("systemctl", &["--user", "daemon-reload"])]
}

/// How to watch and steer the service, and how to keep it running after logout.
pub(super) fn advice(role: Role) -> String {
    let name = role.name();
    let mut text = format!(
        "Watch the log:  journalctl --user -u {name} -f\n\
         Status:         systemctl --user status {name}\n"
    );
    text.push_str(&match role {
        Role::Daemon => format!("Reload config:  systemctl --user reload {name}\n"),
        Role::Speaker => format!("New config:     systemctl --user restart {name}\n"),
    });
    if linger_enabled() != Some(true) {
        text.push_str(
            "To keep paysay running after you log out, and start it at boot before \
             anyone logs in:\n    sudo loginctl enable-linger $USER\n",
        );
    }
    text
}

/// Whether systemd keeps this user's services running after logout (`loginctl
/// enable-linger`), as far as can be told without asking logind over D-Bus.
fn linger_enabled() -> Option<bool> {
    let user = std::env::var_os("USER")?;
    Some(Path::new("/var/lib/systemd/linger").join(user).exists())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::service::tests::invocation;

    #[test]
    fn systemd_words_are_escaped_for_systemd_not_a_shell() {
        assert_eq!(word("/usr/bin/paysay"), "/usr/bin/paysay");
        assert_eq!(word("/a b/c"), "\"/a b/c\"");
        assert_eq!(word("/50%/$HOME"), "/50%%/$$HOME");
        assert_eq!(word(r#"/x"y\z"#), r#""/x\"y\\z""#);
        assert_eq!(word(""), "\"\"");
    }

    #[test]
    fn unit_runs_the_given_binary_and_config() {
        let unit = unit(&invocation(Some("/etc/shop.toml"))).unwrap();
        assert!(
            unit.contains("\nExecStart=\"/opt/pay say/bin/paysay\" --config /etc/shop.toml run\n"),
            "{unit}"
        );
        assert!(!unit.contains("%h/.cargo"), "{unit}");
        assert_eq!(unit.matches("ExecStart=").count(), 1);
        for line in [
            "Type=notify",
            "NotifyAccess=main",
            "WatchdogSec=",
            "Restart=on-failure",
        ] {
            assert!(unit.contains(line), "{line} missing");
        }
    }

    #[test]
    fn speaker_unit_runs_the_speaker_without_a_reload() {
        let mut speaker = invocation(None);
        speaker.role = Role::Speaker;
        let unit = unit(&speaker).unwrap();
        assert!(
            unit.contains("\nExecStart=\"/opt/pay say/bin/paysay\" speaker\n"),
            "{unit}"
        );
        assert!(!unit.contains("ExecReload="), "{unit}");
        assert!(unit.contains("Description=paysay speaker"), "{unit}");
        assert!(unit.contains("Type=notify") && unit.contains("WatchdogSec="));
    }

    #[test]
    fn shipped_unit_keeps_audio_reachable() {
        for forbidden in ["PrivateDevices=yes", "ProtectHome=yes", "PrivateUsers=yes"] {
            assert!(!UNIT.contains(forbidden), "{forbidden}");
        }
        let families = UNIT
            .lines()
            .find(|l| l.starts_with("RestrictAddressFamilies="))
            .unwrap_or_default();
        for family in ["AF_UNIX", "AF_INET", "AF_INET6"] {
            assert!(families.split([' ', '=']).any(|f| f == family), "{family}");
        }
    }

    #[test]
    fn start_ends_with_a_restart() {
        assert_eq!(
            start_steps(Role::Daemon)
                .last()
                .map(ToString::to_string)
                .as_deref(),
            Some("systemctl --user restart paysay.service")
        );
    }

    #[test]
    fn control_characters_are_refused() {
        let bad = Invocation {
            role: Role::Daemon,
            program: PathBuf::from("/tmp/a\nExecStartPre=/bin/evil"),
            config: None,
        };
        assert!(matches!(unit(&bad), Err(ServiceError::UnusablePath(_))));
    }
}
