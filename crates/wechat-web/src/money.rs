//! Money, in one place: amounts as WeChat writes them on cards (`￥1,234.50`, `¥ 8.8`,
//! `100元`) and as a shop owner types them (`paysay say 12.50`), read into integer fen, and
//! fen written back as yuan ([`Yuan`]) for the log, the console, the ledger report and the
//! simulator's cards, so that none of them disagree.
//!
//! Digits are accumulated as integers: going through a float would turn `0.29` into 28 fen
//! now and then, and the shop owner would hear a wrong amount.

use std::fmt;

/// The most one payment can be: 100,000,000.00 yuan (一亿元, 10 000 000 000 fen), far beyond
/// any single WeChat Pay, Alipay or 云闪付 payment, and the largest amount the speech rules
/// read with 亿. Above it an amount is a misread, a typo or a forgery, never money that came:
/// the detector refuses such a notice, the phone intake such a notice and `paysay speaker`
/// such an event, so none of them says it.
pub const MAX_PAYMENT_FEN: u64 = 10_000_000_000;

/// Why an amount could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AmountError {
    /// The text holds no amount at all.
    #[error("no amount in {0:?}")]
    Missing(String),
    /// Digits are there but not in a shape money is written in (three decimals, `12,50`,
    /// `1e5`, …).
    #[error(
        "{0:?} is not a well-formed sum of money (digits with at most two decimals, like 12.50 or ￥1,234.50)"
    )]
    Malformed(String),
    /// More fen than a `u64` holds: not a real payment.
    #[error("{0:?} is too large to be a payment")]
    TooLarge(String),
}

/// Characters WeChat puts between a currency sign, the digits and `元`.
const SPACES: [char; 4] = [' ', '\t', '\u{a0}', '\u{3000}'];

/// Reads a field that holds only an amount: `￥0.01`, `¥ 8.80`, `1,234.5元`.
pub fn parse_amount_fen(text: &str) -> Result<u64, AmountError> {
    let text = text.trim();
    match scan_amount(text)? {
        Some((fen, used)) if text[used..].trim().is_empty() => Ok(fen),
        Some(_) => Err(AmountError::Malformed(text.to_string())),
        None => Err(AmountError::Missing(text.to_string())),
    }
}

/// Units an amount may be followed by: `100元`, `12块`.
const UNITS: [char; 2] = ['元', '块'];

/// Punctuation that ends a phrase and cannot continue a number (`收到转账0.10元。`,
/// `共计￥12.50，`).
const PHRASE_ENDS: [char; 8] = ['，', '。', '；', '：', '、', '！', '）', ')'];

/// Reads an amount at the start of `text` and returns it with the number of bytes it took
/// (the unit included), so that callers can read an amount that runs on into a sentence.
///
/// The number must end the text or be followed by a space, a unit or the end of a phrase:
/// `￥1e5`, `￥1.5.3` and `￥12.50abc` are not amounts, since reading their first digits
/// would announce ¥1.00 for whatever they are. After a unit, a digit (`12块5`) is refused
/// for the same reason.
///
/// `Ok(None)`: `text` does not start with an amount. `Err`: it does, but cannot be read
/// without guessing.
pub fn scan_amount(text: &str) -> Result<Option<(u64, usize)>, AmountError> {
    let after_spaces = text.trim_start_matches(SPACES);
    let after_sign = after_spaces
        .strip_prefix(['￥', '¥'])
        .map_or(after_spaces, |rest| rest.trim_start_matches(SPACES));
    let start = text.len() - after_sign.len();
    let Some((fen, digits_len)) = scan_number(after_sign, text)? else {
        return Ok(None);
    };
    let malformed = || AmountError::Malformed(text.trim().to_string());
    let rest = &after_sign[digits_len..];
    let ends_here = |c: char| SPACES.contains(&c) || PHRASE_ENDS.contains(&c);
    if rest.starts_with(|c: char| !ends_here(c) && !UNITS.contains(&c)) {
        return Err(malformed());
    }
    let after_unit = rest
        .trim_start_matches(SPACES)
        .strip_prefix(UNITS)
        .unwrap_or(rest);
    if after_unit.len() < rest.len() && after_unit.starts_with(|c: char| c.is_ascii_digit()) {
        return Err(malformed());
    }
    Ok(Some((
        fen,
        start + digits_len + (rest.len() - after_unit.len()),
    )))
}

/// Reads `1,234.50` at the start of `s`; `whole` is only used in error messages.
fn scan_number(s: &str, whole: &str) -> Result<Option<(u64, usize)>, AmountError> {
    let b = s.as_bytes();
    let digits_at = |from: usize| {
        b[from.min(b.len())..]
            .iter()
            .take_while(|c| c.is_ascii_digit())
            .count()
    };
    let malformed = || AmountError::Malformed(whole.trim().to_string());
    let too_large = || AmountError::TooLarge(whole.trim().to_string());

    let int_len = digits_at(0);
    if int_len == 0 {
        return Ok(None);
    }
    let mut yuan = parse_digits(&b[..int_len]).ok_or_else(too_large)?;
    let mut i = int_len;
    // Thousands separators: only `,` followed by exactly three digits counts; anything else
    // after a comma (`12,50`) is ambiguous and refused rather than guessed.
    while b.get(i) == Some(&b',') && digits_at(i + 1) == 3 {
        if int_len > 3 {
            return Err(malformed());
        }
        let group = parse_digits(&b[i + 1..i + 4]).ok_or_else(too_large)?;
        yuan = yuan
            .checked_mul(1000)
            .and_then(|y| y.checked_add(group))
            .ok_or_else(too_large)?;
        i += 4;
    }
    if b.get(i) == Some(&b',') && digits_at(i + 1) > 0 {
        return Err(malformed());
    }
    let mut cents = 0;
    if b.get(i) == Some(&b'.') && digits_at(i + 1) > 0 {
        let decimals = &b[i + 1..i + 1 + digits_at(i + 1)];
        cents = match decimals {
            [d] => u64::from(d - b'0') * 10,
            [d1, d2] => u64::from(d1 - b'0') * 10 + u64::from(d2 - b'0'),
            _ => return Err(malformed()),
        };
        i += 1 + decimals.len();
    }
    let fen = yuan
        .checked_mul(100)
        .and_then(|f| f.checked_add(cents))
        .ok_or_else(too_large)?;
    Ok(Some((fen, i)))
}

/// ASCII digits to a number, `None` on overflow.
fn parse_digits(digits: &[u8]) -> Option<u64> {
    digits.iter().try_fold(0u64, |n, d| {
        n.checked_mul(10)?.checked_add(u64::from(d - b'0'))
    })
}

/// Parses an amount in yuan such as `12.50`, `12.5`, `12` or `0.01` into fen, exactly.
///
/// Strict on purpose: no sign, no spaces, no exponent, no thousands separators, at most two
/// decimals, so a typo is refused rather than announced as a different amount.
pub fn parse_yuan(text: &str) -> Result<u64, AmountError> {
    let malformed = || AmountError::Malformed(text.to_string());
    let (whole, decimals) = match text.split_once('.') {
        Some((w, d)) => (w, d),
        None => (text, "00"),
    };
    let all_digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    if !all_digits(whole) || !all_digits(decimals) || decimals.len() > 2 {
        return Err(malformed());
    }
    let too_large = || AmountError::TooLarge(text.to_string());
    let yuan: u64 = whole.parse().map_err(|_| too_large())?;
    let mut fen_part: u64 = decimals.parse().map_err(|_| malformed())?;
    if decimals.len() == 1 {
        fen_part *= 10;
    }
    yuan.checked_mul(100)
        .and_then(|f| f.checked_add(fen_part))
        .ok_or_else(too_large)
}

/// Fen shown as yuan with two decimals (`1250` → `12.50`): the one way money is written,
/// in the log, on the console, in `paysay ledger` and on the simulator's cards, so they
/// never disagree.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Yuan(pub u64);

impl fmt::Display for Yuan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // `pad` so that width and alignment (`{:>10}`) work in tables.
        f.pad(&format!("{}.{:02}", self.0 / 100, self.0 % 100))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_shapes_wechat_writes() {
        for (text, fen) in [
            ("￥0.01", 1),
            ("¥ 8.80", 880),
            ("¥8.8", 880),
            ("￥1,234.50", 123_450),
            ("12.5元", 1250),
            ("100元", 10_000),
            ("100 元", 10_000),
            ("12块", 1200),
            ("￥12.50 元", 1250),
            ("￥12.50元", 1250),
            ("  ￥\u{a0}3.00 ", 300),
            ("1,000,000", 100_000_000),
        ] {
            assert_eq!(parse_amount_fen(text), Ok(fen), "{text}");
        }
    }

    #[test]
    fn refuses_what_it_would_have_to_guess() {
        for text in [
            "￥0.015",
            "12,50",
            "1234,567",
            "￥",
            "abc",
            "-￥1.00",
            "￥1.00x",
            "",
            // Not read as ¥1.00 or ¥12.50: what follows the digits is no end, space or unit.
            "￥1e5",
            "￥1.5.3",
            "￥12.50abc",
            "1_000",
            "12块5",
            "12. 5",
        ] {
            assert!(parse_amount_fen(text).is_err(), "{text}");
        }
        assert!(matches!(
            parse_amount_fen("99999999999999999999"),
            Err(AmountError::TooLarge(_))
        ));
        assert!(matches!(
            parse_amount_fen("184467440737095516.16"),
            Err(AmountError::TooLarge(_))
        ));
    }

    #[test]
    fn scanning_stops_after_the_unit_or_at_the_end_of_a_phrase() {
        assert_eq!(scan_amount("0.10元。如需"), Ok(Some((10, "0.10元".len()))));
        assert_eq!(
            scan_amount("0.01元(朋友到店)"),
            Ok(Some((1, "0.01元".len())))
        );
        assert_eq!(
            scan_amount("￥12.50，共"),
            Ok(Some((1250, "￥12.50".len())))
        );
        assert_eq!(scan_amount("￥0.01 付款方"), Ok(Some((1, "￥0.01".len()))));
        assert_eq!(scan_amount("今日"), Ok(None));
    }

    #[test]
    fn digits_running_into_anything_else_are_no_amount() {
        // Key rows are split apart before scanning (see `split_run_on`), so a number glued
        // to a letter, a dot or the next word is not money.
        for text in [
            "￥1e5",
            "￥1.5.3",
            "￥12.50abc",
            "￥0.01收款方备注",
            "12. 下一句",
            "12块5毛",
        ] {
            assert!(
                matches!(scan_amount(text), Err(AmountError::Malformed(_))),
                "{text}"
            );
        }
    }

    #[test]
    fn parses_yuan_strictly() {
        for (text, fen) in [
            ("12.50", 1250),
            ("12.5", 1250),
            ("12", 1200),
            ("0.01", 1),
            ("007", 700),
        ] {
            assert_eq!(parse_yuan(text), Ok(fen), "{text}");
        }
        for text in [
            "", "12.", ".5", "1.234", "-1", "+1", "1e3", "1,000", " 1", "一", "1.2.3",
        ] {
            assert!(
                matches!(parse_yuan(text), Err(AmountError::Malformed(_))),
                "{text}"
            );
        }
        assert!(matches!(
            parse_yuan("999999999999999999999"),
            Err(AmountError::TooLarge(_))
        ));
    }

    #[test]
    fn yuan_shows_fen_as_the_ledger_does() {
        assert_eq!(Yuan(1).to_string(), "0.01");
        assert_eq!(Yuan(123450).to_string(), "1234.50");
        assert_eq!(format!("{:>7}", Yuan(1250)), "  12.50");
    }
}
