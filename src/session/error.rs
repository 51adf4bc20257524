//! What can go wrong talking to WeChat, classified by what the daemon should do about it.

use crate::protocol::ParseError;

/// What to do about an error: retry, log in again, or give up on this run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// Network trouble, 5xx, empty bodies, slow servers: back off and try again.
    Transient,
    /// The server ended the session (1100/1101/1102…): discard it and log in anew.
    LoggedOut,
    /// The server refused this account or the client is misconfigured: a person must act.
    Fatal,
}

/// Errors of the WeChat web session.
#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    #[error("{request} to {host} failed: {}", crate::error_chain(source))]
    Network {
        request: &'static str,
        host: String,
        #[source]
        source: reqwest::Error,
    },
    #[error("{request} to {host} answered HTTP {status}: {excerpt:?}")]
    Status {
        request: &'static str,
        host: String,
        status: u16,
        excerpt: String,
    },
    #[error("{request} to {host} answered with an empty body (HTTP {status})")]
    EmptyBody {
        request: &'static str,
        host: String,
        status: u16,
    },
    #[error(
        "{request} to {host} answered more than {} MB; the reply was dropped (a server fault or an attack; paysay will try again)",
        limit / (1024 * 1024)
    )]
    TooLarge {
        request: &'static str,
        host: String,
        limit: u64,
    },
    #[error("{request} to {host} answered Ret {ret} {err_msg:?}")]
    Ret {
        request: &'static str,
        host: String,
        ret: i64,
        err_msg: String,
    },
    #[error("{request} to {host}: the session has ended (retcode {retcode}){}", describe_retcode(*retcode))]
    LoggedOut {
        request: &'static str,
        host: String,
        retcode: i64,
    },
    #[error("{request} to {host} answered something unexpected: {source}")]
    Parse {
        request: &'static str,
        host: String,
        #[source]
        source: ParseError,
    },
    #[error(
        "{request} to {host} answered JSON that does not fit: {message}; body starts {excerpt:?}"
    )]
    Json {
        request: &'static str,
        host: String,
        message: String,
        excerpt: String,
    },
    #[error(
        "WeChat refused the login (ret {ret}): {}",
        crate::text::Escaped(message)
    )]
    LoginRefused { ret: i64, message: String },
    #[error("the login redirect {uri:?} is not a URL")]
    BadRedirect { uri: String },
    #[error("{what} {path}: {source}")]
    File {
        what: &'static str,
        path: std::path::PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot make the login QR code: {0}")]
    Qr(String),
    #[error(
        "webwxsendmsg to {host}: WeChat refused the message (Ret {ret} {err_msg:?}: sending too much or too fast); paysay waits minutes before trying again"
    )]
    SendRefused {
        host: String,
        ret: i64,
        err_msg: String,
    },
    #[error(
        "no contact named {name:?} (remark or nickname) to send to; `[notify] to` must be \"filehelper\" or a contact's name"
    )]
    UnknownRecipient { name: String },
    #[error("the HTTP client cannot be built: {0}")]
    Client(#[source] reqwest::Error),
}

/// Why the server says a session ended, for the owner reading the log.
pub fn describe_retcode(retcode: i64) -> &'static str {
    match retcode {
        1100 => ": logged out on the phone, or the session's cookies were refused",
        1101 => ": logged in elsewhere, or the daily forced logout",
        1102 => ": quit on the phone, or this login mode is blocked",
        1205 => ": the server ended the session",
        _ => "",
    }
}

/// The retcodes (synccheck) and `Ret` values (JSON) that mean "this session is over".
pub fn is_logout_code(code: i64) -> bool {
    matches!(code, 1100 | 1101 | 1102 | 1205)
}

impl SessionError {
    pub fn kind(&self) -> ErrorKind {
        match self {
            SessionError::LoggedOut { .. } => ErrorKind::LoggedOut,
            SessionError::Ret { ret, .. } if is_logout_code(*ret) => ErrorKind::LoggedOut,
            SessionError::LoginRefused { .. }
            | SessionError::Client(_)
            | SessionError::File { .. }
            | SessionError::Qr(_)
            | SessionError::UnknownRecipient { .. } => ErrorKind::Fatal,
            _ => ErrorKind::Transient,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_servers_refusal_is_quoted_escaped() {
        let err = SessionError::LoginRefused {
            ret: 1203,
            message: "当前登录环境异常\nERROR paysay: forged\x1b[2J".into(),
        };
        assert_eq!(
            err.to_string(),
            "WeChat refused the login (ret 1203): 当前登录环境异常\\nERROR paysay: forged\\u{1b}[2J"
        );
    }
}
