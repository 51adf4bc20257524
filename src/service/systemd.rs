//! systemd's per-user manager (`systemctl --user`): the unit file, the commands that load,
//! stop and forget it, and the advice after installing.

use std::path::{Path, PathBuf};

use directories::BaseDirs;

use super::{Invocation, ServiceError, Step};

/// The systemd user unit, as shipped; `ExecStart=` is replaced on install.
const UNIT: &str = include_str!("../../systemd/paysay.service");
/// The unit's name for `systemctl --user` and `journalctl --user -u`.
const UNIT_NAME: &str = "paysay.service";
/// The line of the shipped unit that install replaces.
const SHIPPED_EXEC_START: &str = "ExecStart=%h/.cargo/bin/paysay run";

/// Where the user manager looks for the unit: $XDG_CONFIG_HOME/systemd/user is in its
/// search path.
pub(super) fn service_file(dirs: &BaseDirs) -> PathBuf {
    dirs.config_dir().join("systemd/user").join(UNIT_NAME)
}

/// The unit file for `invocation`: the shipped unit with its `ExecStart=` line replaced.
pub(super) fn unit(invocation: &Invocation) -> Result<String, ServiceError> {
    if !UNIT.contains(SHIPPED_EXEC_START) {
        return Err(ServiceError::Template(SHIPPED_EXEC_START));
    }
    let words: Vec<String> = invocation.words()?.iter().map(|w| word(w)).collect();
    let exec_start = format!("ExecStart={}", words.join(" "));
    Ok(UNIT.replacen(SHIPPED_EXEC_START, &exec_start, 1))
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
pub(super) fn start_steps() -> Vec<Step> {
    vec![
        Step::new("systemctl", &["--user", "daemon-reload"]),
        Step::new("systemctl", &["--user", "enable", UNIT_NAME]),
        Step::new("systemctl", &["--user", "restart", UNIT_NAME]),
    ]
}

/// Stops the unit and keeps it from starting again.
pub(super) fn stop_steps() -> Vec<Step> {
    vec![Step::new(
        "systemctl",
        &["--user", "disable", "--now", UNIT_NAME],
    )]
}

/// After the file is gone: systemd forgets the unit only on a reload.
pub(super) fn forget_steps() -> Vec<Step> {
    vec![Step::new("systemctl", &["--user", "daemon-reload"])]
}

/// How to watch and steer the service, and how to keep it running after logout.
pub(super) fn advice() -> String {
    let mut text = String::from(
        "Watch the log:  journalctl --user -u paysay -f\n\
         Status:         systemctl --user status paysay\n\
         Reload config:  systemctl --user reload paysay\n",
    );
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
            start_steps().last().map(ToString::to_string).as_deref(),
            Some("systemctl --user restart paysay.service")
        );
    }

    #[test]
    fn control_characters_are_refused() {
        let bad = Invocation {
            program: PathBuf::from("/tmp/a\nExecStartPre=/bin/evil"),
            config: None,
        };
        assert!(matches!(unit(&bad), Err(ServiceError::UnusablePath(_))));
    }
}
