//! Who may read the shop's page.
//!
//! The page shows what the shop earned and, while a scan is needed, a QR code that logs the
//! shop's WeChat in for whoever scans it first. So:
//! - On this computer (a loopback peer) the page opens without a token, but only under a
//!   loopback name (`localhost`, `127.0.0.1`, `[::1]`): a web site the owner visits could
//!   otherwise point a name of its own at 127.0.0.1 (DNS rebinding) and read the page.
//! - From anywhere else, only with the token: paysay makes it once (32 hex digits, in the
//!   state dir, 0600) when the page listens on an address other devices reach, and prints
//!   the page's address with it. Without such a listen address there is no token, and
//!   nothing off this computer gets in.
//!
//! The token comes as `?token=…` (the printed address), as `Authorization: Bearer …`, or
//! as the cookie the page sets on the first visit with it, so a bookmark of the bare
//! address keeps working on that tablet.

use std::net::{IpAddr, SocketAddr};
use std::path::Path;

/// The cookie that carries the token after the first visit.
pub const COOKIE: &str = "paysay_token";

/// The page's access rule: the token, if there is one.
#[derive(Debug, Clone)]
pub struct Access {
    token: Option<String>,
}

/// Why a request was refused, for the 403 page.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// From another device, without the right token.
    NeedsToken,
    /// From this computer, but under a name that is not a loopback one.
    ForeignHost,
}

impl Access {
    /// No token: this computer alone.
    pub fn loopback_only() -> Access {
        Access { token: None }
    }

    /// Requests from elsewhere need `token`.
    pub fn with_token(token: String) -> Access {
        Access { token: Some(token) }
    }

    pub fn token(&self) -> Option<&str> {
        self.token.as_deref()
    }

    /// Whether a request from `peer`, with the `Host` header `host`, presenting
    /// `presented` (from the query, a header or the cookie) may read the page.
    pub fn check(
        &self,
        peer: IpAddr,
        host: Option<&str>,
        presented: Option<&str>,
    ) -> Result<(), Refusal> {
        if let (Some(token), Some(presented)) = (&self.token, presented)
            && same_secret(token, presented)
        {
            return Ok(());
        }
        if !is_loopback(peer) {
            return Err(Refusal::NeedsToken);
        }
        // HTTP/1.0 clients may send no Host; a browser always does.
        match host {
            Some(host) if !is_loopback_host(host) => Err(Refusal::ForeignHost),
            _ => Ok(()),
        }
    }
}

/// 127.0.0.0/8, ::1, and IPv4 loopback seen through an IPv6 socket (::ffff:127.0.0.1).
pub fn is_loopback(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => v4.is_loopback(),
        IpAddr::V6(v6) => {
            v6.is_loopback() || v6.to_ipv4_mapped().is_some_and(|v4| v4.is_loopback())
        }
    }
}

/// A `Host` header naming this computer: `localhost`, a loopback address, with or without
/// a port.
fn is_loopback_host(host: &str) -> bool {
    let name = match host.rsplit_once(':') {
        // `[::1]:8151`, `[::1]`
        _ if host.starts_with('[') => host
            .split_once(']')
            .map_or(host, |(inside, _)| inside.trim_start_matches('[')),
        Some((name, port)) if port.chars().all(|c| c.is_ascii_digit()) => name,
        _ => host,
    };
    name.eq_ignore_ascii_case("localhost") || name.parse::<IpAddr>().is_ok_and(is_loopback)
}

/// Compares in time that does not depend on where the strings first differ.
fn same_secret(expected: &str, presented: &str) -> bool {
    let (a, b) = (expected.as_bytes(), presented.as_bytes());
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Whether the page listens where other devices can reach it.
pub fn reachable_from_elsewhere(listen: SocketAddr) -> bool {
    !is_loopback(listen.ip())
}

/// The token kept at `path`, made (random, 32 hex digits, 0600) on first use. A file that
/// does not hold a token is replaced, with a warning: the old address then stops working.
pub fn load_or_create_token(path: &Path) -> std::io::Result<String> {
    match std::fs::read_to_string(path) {
        Ok(text) if is_token(text.trim()) => return Ok(text.trim().to_string()),
        Ok(_) => {
            tracing::warn!(path = %path.display(), "the page's token file holds no token; making a new one")
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    let bytes: [u8; 16] = rand::random();
    let token: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    crate::fsutil::write_atomically(path, format!("{token}\n").as_bytes())?;
    Ok(token)
}

fn is_token(s: &str) -> bool {
    s.len() == 32 && s.chars().all(|c| c.is_ascii_hexdigit())
}

#[cfg(test)]
mod tests {
    use super::*;

    const TOKEN: &str = "0123456789abcdef0123456789abcdef";

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn this_computer_reads_without_a_token_under_a_loopback_name() {
        let access = Access::with_token(TOKEN.into());
        for (peer, host) in [
            ("127.0.0.1", Some("127.0.0.1:8151")),
            ("127.0.0.1", Some("localhost:8151")),
            ("127.0.0.1", Some("LOCALHOST")),
            ("::1", Some("[::1]:8151")),
            ("::ffff:127.0.0.1", Some("127.0.0.1")),
            ("127.0.0.1", None),
        ] {
            assert_eq!(
                access.check(ip(peer), host, None),
                Ok(()),
                "{peer} {host:?}"
            );
        }
        assert_eq!(
            Access::loopback_only().check(ip("127.0.0.1"), Some("localhost"), None),
            Ok(())
        );
    }

    #[test]
    fn another_device_needs_the_token() {
        let access = Access::with_token(TOKEN.into());
        let tablet = ip("192.168.1.23");
        let host = Some("192.168.1.10:8151");
        assert_eq!(access.check(tablet, host, None), Err(Refusal::NeedsToken));
        assert_eq!(
            access.check(tablet, host, Some("0123456789abcdef0123456789abcdee")),
            Err(Refusal::NeedsToken)
        );
        assert_eq!(
            access.check(tablet, host, Some("")),
            Err(Refusal::NeedsToken)
        );
        assert_eq!(access.check(tablet, host, Some(TOKEN)), Ok(()));
        // IPv6 on the LAN, and an IPv4-mapped LAN address, are elsewhere too.
        assert_eq!(
            access.check(ip("fe80::1"), host, None),
            Err(Refusal::NeedsToken)
        );
        assert_eq!(
            access.check(ip("::ffff:192.168.1.23"), host, None),
            Err(Refusal::NeedsToken)
        );
    }

    #[test]
    fn without_a_token_nothing_from_elsewhere_gets_in() {
        let access = Access::loopback_only();
        assert_eq!(
            access.check(ip("10.0.0.2"), Some("10.0.0.1:8151"), Some("")),
            Err(Refusal::NeedsToken)
        );
        assert_eq!(
            access.check(ip("10.0.0.2"), Some("10.0.0.1:8151"), Some(TOKEN)),
            Err(Refusal::NeedsToken)
        );
    }

    #[test]
    fn a_rebound_name_on_loopback_needs_the_token() {
        let access = Access::with_token(TOKEN.into());
        let me = ip("127.0.0.1");
        for host in [
            "evil.example:8151",
            "localhost.evil.example",
            "127.0.0.1.nip.io",
        ] {
            assert_eq!(
                access.check(me, Some(host), None),
                Err(Refusal::ForeignHost),
                "{host}"
            );
        }
        assert_eq!(access.check(me, Some("evil.example"), Some(TOKEN)), Ok(()));
    }

    #[test]
    fn the_token_is_made_once_and_kept_private() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("web-token");
        let token = load_or_create_token(&path).unwrap();
        assert!(is_token(&token), "{token}");
        assert_eq!(load_or_create_token(&path).unwrap(), token);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        std::fs::write(&path, "not a token").unwrap();
        let new = load_or_create_token(&path).unwrap();
        assert!(is_token(&new) && new != token);
    }

    #[test]
    fn listening_on_the_lan_is_reaching_elsewhere() {
        assert!(!reachable_from_elsewhere("127.0.0.1:8151".parse().unwrap()));
        assert!(!reachable_from_elsewhere("[::1]:0".parse().unwrap()));
        assert!(reachable_from_elsewhere("0.0.0.0:8151".parse().unwrap()));
        assert!(reachable_from_elsewhere(
            "192.168.1.10:8151".parse().unwrap()
        ));
    }
}
