//! Text from the network, made safe for a log line.
//!
//! Nicknames, remarks, message ids and server messages are chosen by whoever is on the other
//! end. Written raw, a nickname holding a newline forges a whole log line (`INFO … payment
//! received amount=999.00`) and one holding ESC sends escape codes to the terminal or the
//! journal. tracing's formatter writes `%` and bare `&str` fields as they are, so such text
//! goes through [`Escaped`] on its way to a log line.

use std::fmt::{self, Write};

/// Displays its value with control characters (newlines, ESC, C1 codes, …), line and
/// paragraph separators and bidirectional overrides written as escapes (`\n`, `\u{1b}`),
/// and everything else, Chinese included, as it is.
///
/// Works for any `Display` (a `&str`, an error whose message quotes the server), e.g.
/// `tracing::info!(payer = %Escaped(payer), "payment received")`.
#[derive(Debug, Clone, Copy)]
pub struct Escaped<T>(pub T);

impl<T: fmt::Display> fmt::Display for Escaped<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(EscapingWriter(f), "{}", self.0)
    }
}

/// Whether `c` could end a line, move the cursor, or reorder what is shown.
fn is_unsafe(c: char) -> bool {
    c.is_control()
        || matches!(
            c,
            '\u{2028}' | '\u{2029}' | '\u{200e}' | '\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}'
        )
}

/// Passes text through to the formatter, escaping unsafe characters on the way, so no
/// intermediate `String` is needed.
struct EscapingWriter<'a, 'b>(&'a mut fmt::Formatter<'b>);

impl Write for EscapingWriter<'_, '_> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        let mut rest = s;
        while let Some(at) = rest.find(is_unsafe) {
            self.0.write_str(&rest[..at])?;
            let c = rest[at..].chars().next().unwrap_or_default();
            // `escape_default`: `\n`, `\r`, `\t`, and `\u{…}` for the others.
            write!(self.0, "{}", c.escape_default())?;
            rest = &rest[at + c.len_utf8()..];
        }
        self.0.write_str(rest)
    }
}

/// A log writer that keeps each event on one line whatever a call site forgot to escape:
/// every unsafe character of what the formatter wrote is escaped, but for the newline that
/// ends the event. For output without ANSI colours (the journal, a file), whose escape
/// codes it would escape too; [`Escaped`] at the call sites covers a terminal.
///
/// tracing's formatter hands over each event whole, in one `write_all`.
pub struct OneLine<W>(pub W);

impl<W: std::io::Write> std::io::Write for OneLine<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let Ok(text) = std::str::from_utf8(buf) else {
            // The formatter writes strings; anything else is passed on as it is.
            return self.0.write(buf);
        };
        let (body, end) = match text.strip_suffix('\n') {
            Some(body) => (body, "\n"),
            None => (text, ""),
        };
        if body.contains(is_unsafe) {
            self.0
                .write_all(format!("{}{end}", Escaped(body)).as_bytes())?;
        } else {
            self.0.write_all(buf)?;
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.0.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_log_event_stays_one_line() {
        use std::io::Write;
        let mut out = OneLine(Vec::new());
        out.write_all("INFO payment received payer=张三\nINFO forged\x1b[2J\n".as_bytes())
            .unwrap();
        out.write_all(b"INFO plain\n").unwrap();
        assert_eq!(
            String::from_utf8(out.0).unwrap(),
            "INFO payment received payer=张三\\nINFO forged\\u{1b}[2J\nINFO plain\n"
        );
    }

    #[test]
    fn control_characters_are_escaped_and_the_rest_kept() {
        let forged =
            "张三\n2026-01-01T00:00:00Z  INFO paysay: payment received amount=999.00\x1b[2J";
        let shown = Escaped(forged).to_string();
        assert_eq!(
            shown,
            "张三\\n2026-01-01T00:00:00Z  INFO paysay: payment received amount=999.00\\u{1b}[2J"
        );
        assert!(!shown.contains('\n') && !shown.contains('\x1b'));
        assert_eq!(
            Escaped("a\rb\tc\u{85}d\u{2028}e\u{202e}f\u{7f}").to_string(),
            "a\\rb\\tc\\u{85}d\\u{2028}e\\u{202e}f\\u{7f}"
        );
        // Printable text, quotes and backslashes included, is left as written.
        let plain = "微信支付 \"O'Neil\" \\n ￥1.00 😀";
        assert_eq!(Escaped(plain).to_string(), plain);
    }

    #[test]
    fn works_for_any_display() {
        let error = std::io::Error::other("bad\nline");
        assert_eq!(Escaped(&error).to_string(), "bad\\nline");
    }
}
