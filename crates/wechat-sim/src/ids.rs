//! The shapes of the server's identifiers and tokens, so that a client which only works with
//! "nice" values (no `+`, no `/`, short numbers) fails here as it would against WeChat.

use rand::Rng;

const BASE64: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
const BASE64_URL: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
const HEX: &[u8] = b"0123456789abcdef";

fn pick(alphabet: &[u8], len: usize) -> String {
    let mut rng = rand::rng();
    (0..len)
        .map(|_| char::from(alphabet[rng.random_range(0..alphabet.len())]))
        .collect()
}

/// `len` lowercase hex digits.
pub fn hex(len: usize) -> String {
    pick(HEX, len)
}

/// A QR uuid such as `gbyKnbsmqQ==` (URL-safe alphabet, as captured).
pub fn uuid() -> String {
    format!("{}==", pick(BASE64_URL, 10))
}

/// The login ticket in the redirect: `A…@qrticket_0`.
pub fn ticket() -> String {
    format!("A{}@qrticket_0", pick(BASE64_URL, 23))
}

/// `wxsid`: 16 base64 characters. Real ones often contain `+`; this one always does, so a
/// client that forgets to encode it in a query string is caught.
pub fn wxsid() -> String {
    let mut sid = pick(BASE64, 16);
    sid.replace_range(5..6, "+");
    sid
}

/// `@crypt_<8hex>_<32hex>`.
pub fn skey() -> String {
    format!("@crypt_{}_{}", hex(8), hex(32))
}

/// The pass_ticket as the XML carries it: base64 with `/` and `+`, ending `=`, already
/// percent-encoded once (`%2F`, `%2B`, `%3D`).
pub fn pass_ticket_encoded() -> String {
    let mut raw = pick(BASE64, 63);
    raw.replace_range(7..8, "/");
    raw.replace_range(30..31, "+");
    raw.push('=');
    percent_encode(&raw)
}

/// `webwx_data_ticket`: 24 base64 characters.
pub fn data_ticket() -> String {
    pick(BASE64, 24)
}

/// `webwx_auth_ticket`: a long base64 token.
pub fn auth_ticket() -> String {
    format!("CIsBE{}", pick(BASE64, 107))
}

/// A `wxuin`: ten digits, not starting with 0.
pub fn uin() -> u64 {
    rand::rng().random_range(1_000_000_000..4_294_967_295)
}

/// A 19-digit message id (MsgId as a string, NewMsgId as the same number).
pub fn msg_id() -> u64 {
    rand::rng().random_range(1_000_000_000_000_000_000..9_000_000_000_000_000_000)
}

/// `n` decimal digits, first one non-zero (transfer ids, trade numbers).
pub fn digits(n: usize) -> String {
    let mut rng = rand::rng();
    (0..n)
        .map(|i| {
            let low = if i == 0 { 1 } else { 0 };
            char::from(b'0' + rng.random_range(low..10u8))
        })
        .collect()
}

/// Percent-encodes everything but ASCII letters, digits and `-_.~`, as the server does for
/// pass_ticket and the browser does for query values.
pub fn percent_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len() * 3);
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Like [`percent_encode`] but `.` is encoded too (`%2E`), as in `EncryFileName`.
pub fn encry_file_name(s: &str) -> String {
    percent_encode(s).replace('.', "%2E")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shapes() {
        assert_eq!(uuid().len(), 12);
        assert!(uuid().ends_with("=="));
        assert!(wxsid().contains('+'));
        let pt = pass_ticket_encoded();
        assert!(pt.contains("%2F") && pt.contains("%2B") && pt.ends_with("%3D"));
        assert_eq!(msg_id().to_string().len(), 19);
        assert_eq!(uin().to_string().len(), 10);
        assert!(skey().starts_with("@crypt_"));
        assert_eq!(encry_file_name("0.01元"), "0%2E01%E5%85%83");
    }
}
