//! launchd's per-user agents (macOS): the plist, the `launchctl` commands that load and
//! unload it, and the advice after installing.

use std::path::{Path, PathBuf};

use directories::BaseDirs;

use super::{Invocation, Role, ServiceError, Step, home_dir, plain};

/// The launchd agent, as shipped; the program arguments and home directory are replaced.
const PLIST: &str = include_str!("../../systemd/com.paysay.plist");
/// The daemon agent's label for `launchctl`, as shipped.
const LABEL: &str = "com.paysay";
/// The home directory the shipped plist is written for.
const SHIPPED_HOME: &str = "/Users/shop";
/// The shipped plist's program arguments, replaced on install.
const SHIPPED_ARGUMENTS: &str =
    "        <string>/Users/shop/.cargo/bin/paysay</string>\n        <string>run</string>\n";

/// The agent's label for `launchctl`.
fn label(role: Role) -> &'static str {
    match role {
        Role::Daemon => LABEL,
        Role::Speaker => "com.paysay.speaker",
    }
}

/// Where launchd looks for the owner's agents.
pub(super) fn service_file(dirs: &BaseDirs, role: Role) -> PathBuf {
    dirs.home_dir()
        .join("Library/LaunchAgents")
        .join(format!("{}.plist", label(role)))
}

/// The launchd agent for `invocation`, with its logs under `home`/Library/Logs.
pub(super) fn plist(invocation: &Invocation, home: &Path) -> Result<String, ServiceError> {
    if !PLIST.contains(SHIPPED_ARGUMENTS) {
        return Err(ServiceError::Template("ProgramArguments"));
    }
    let arguments: String = invocation
        .words()?
        .iter()
        .map(|w| format!("        <string>{}</string>\n", xml_text(w)))
        .collect();
    let home = xml_text(&plain(home)?);
    let plist = PLIST.replacen(SHIPPED_ARGUMENTS, &arguments, 1).replace(
        &format!("<string>{SHIPPED_HOME}/"),
        &format!("<string>{home}/"),
    );
    Ok(match invocation.role {
        Role::Daemon => plist,
        Role::Speaker => plist
            .replace(
                &format!("<string>{LABEL}</string>"),
                &format!("<string>{}</string>", label(Role::Speaker)),
            )
            .replace("Logs/paysay.log<", "Logs/paysay-speaker.log<"),
    })
}

/// `text` escaped for an XML element.
fn xml_text(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// Where launchd writes paysay's log (the plist's `StandardErrorPath`).
fn log_file(home: &Path, role: Role) -> PathBuf {
    home.join(format!("Library/Logs/{}.log", role.name()))
}

/// Loads `file` into the user's `gui/<uid>` domain, unloading an older copy first so that
/// installing again after an upgrade runs the new binary.
pub(super) fn start_steps(role: Role, file: &Path, uid: u32) -> Vec<Step> {
    let domain = format!("gui/{uid}");
    let service = format!("{domain}/{}", label(role));
    let file = file.display().to_string();
    vec![
        Step::new("launchctl", &["bootout", &service]).may_fail(),
        Step::new("launchctl", &["enable", &service]),
        Step::new("launchctl", &["bootstrap", &domain, &file]),
    ]
}

/// Unloads the agent. Fails when it is not loaded, which is what uninstalling wants anyway.
pub(super) fn stop_steps(role: Role, uid: u32) -> Vec<Step> {
    vec![
        Step::new(
            "launchctl",
            &["bootout", &format!("gui/{uid}/{}", label(role))],
        )
        .may_fail(),
    ]
}

/// Where the log is, and that the agent runs only while the owner is logged in.
pub(super) fn advice(role: Role) -> String {
    let log = home_dir().map(|h| log_file(&h, role)).unwrap_or_default();
    format!(
        "Watch the log:  tail -f {}\n\
         paysay runs while you are logged in; turn on automatic login to have it \
         start after a power cut.\n",
        log.display()
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::service::tests::invocation;

    #[test]
    fn plist_names_the_binary_and_the_home_logs() {
        let plist = plist(&invocation(Some("/a&b.toml")), Path::new("/Users/li")).unwrap();
        assert!(
            plist.contains("<string>/opt/pay say/bin/paysay</string>\n        <string>--config</string>\n        <string>/a&amp;b.toml</string>\n        <string>run</string>"),
            "{plist}"
        );
        assert!(plist.contains("<string>/Users/li/Library/Logs/paysay.log</string>"));
        assert!(!plist.contains("/Users/shop/"), "{plist}");
        for key in [
            "RunAtLoad",
            "KeepAlive",
            "SuccessfulExit",
            "StandardErrorPath",
        ] {
            assert!(plist.contains(&format!("<key>{key}</key>")), "{key}");
        }
    }

    #[test]
    fn steps_print_as_typed() {
        let steps = start_steps(Role::Daemon, Path::new("/Users/a b/x.plist"), 501);
        assert_eq!(steps[0].to_string(), "launchctl bootout gui/501/com.paysay");
        assert_eq!(
            steps[2].to_string(),
            "launchctl bootstrap gui/501 '/Users/a b/x.plist'"
        );
        assert!(steps[0].may_fail && !steps[2].may_fail);
    }
}
