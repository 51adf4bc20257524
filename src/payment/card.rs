//! Reading an app message's `Content` into the few fields payment detection looks at.
//!
//! The web client wraps the XML twice: HTML-escaped (`&lt;msg&gt;`) with every newline turned
//! into a literal `<br/>` (also inside CDATA), and in groups prefixed by `@<member>:<br/>`.
//! Captures from other clients carry the raw XML. Both are accepted here, so the detector
//! sees the same `Card` whichever client the message came through.

use quick_xml::events::{BytesRef, Event};

/// The most nesting a real notice has is about ten levels; deeper is not a notice.
const MAX_DEPTH: usize = 64;

/// One key/value row of a template card (`收款金额` / `￥0.01`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Line {
    /// The row's label, e.g. `收款金额`, `付款方备注`, `汇总`.
    pub key: String,
    pub value: String,
}

/// `appmsg/wcpayinfo`: transfers, red packets and group collections.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WcPayInfo {
    pub paysubtype: Option<String>,
    pub feedesc: Option<String>,
    pub transferid: Option<String>,
    pub pay_memo: Option<String>,
    pub payer_username: Option<String>,
    pub receiver_username: Option<String>,
    /// A `<newaa>` block marks a group collection (群收款) rather than a red packet.
    pub has_newaa: bool,
}

/// The parts of `<msg><appmsg>…</appmsg></msg>` that carry money.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Card {
    /// `appmsg/type`: the AppMsgType, for clients that leave it out of the envelope.
    pub app_type: Option<u32>,
    pub title: String,
    pub des: String,
    /// `mmreader/template_detail/line_content/topline`: the amount row of a template card.
    pub topline: Option<Line>,
    /// `…/line_content/lines/line`: remark, daily summary, explanation.
    pub lines: Vec<Line>,
    /// `ext_pay_info/pay_fee`, in fen.
    pub pay_fee: Option<String>,
    pub wcpay: Option<WcPayInfo>,
}

/// Why the XML could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CardError {
    #[error("malformed XML: {0}")]
    Xml(String),
    #[error("the XML ends before <{0}> is closed (truncated message)")]
    Truncated(String),
    #[error("the XML nests deeper than {MAX_DEPTH} levels")]
    TooDeep,
}

/// The web client's wrapping undone: the group member who posted (if a group message) and
/// the XML text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unwrapped {
    pub group_member: Option<String>,
    pub xml: String,
}

/// Strips the group prefix, turns `<br/>` back into newlines and undoes the HTML escaping.
pub fn unwrap_web_content(content: &str) -> Unwrapped {
    let (group_member, body) = split_group_prefix(content);
    let body = body.replace("<br/>", "\n").replace("<br />", "\n");
    let xml = if body.trim_start().starts_with("&lt;") {
        html_unescape(&body)
    } else {
        body
    };
    Unwrapped {
        group_member: group_member.map(str::to_string),
        xml,
    }
}

/// `@abc123:<br/>rest` → (`@abc123`, `rest`). Only a plain user name counts as a prefix, so
/// content that merely starts with `@` is left alone.
fn split_group_prefix(content: &str) -> (Option<&str>, &str) {
    for separator in [":<br/>", ":\n"] {
        if let Some(pos) = content.find(separator) {
            let name = &content[..pos];
            let plain = name.len() > 1
                && name.len() <= 200
                && name.starts_with('@')
                && name[1..]
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '@' || c == '_');
            if plain {
                return (Some(name), &content[pos + separator.len()..]);
            }
        }
    }
    (None, content)
}

/// One pass over the entities the web client produces; anything else stays as written,
/// because one odd `&` in a remark must not make a payment unreadable.
pub fn html_unescape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(amp) = rest.find('&') {
        out.push_str(&rest[..amp]);
        rest = &rest[amp..];
        let entity = rest[1..]
            .find(';')
            .filter(|&end| end <= 10)
            .and_then(|end| entity_char(&rest[1..1 + end]).map(|c| (c, end + 2)));
        match entity {
            Some((c, len)) => {
                out.push(c);
                rest = &rest[len..];
            }
            None => {
                out.push('&');
                rest = &rest[1..];
            }
        }
    }
    out.push_str(rest);
    out
}

fn entity_char(name: &str) -> Option<char> {
    match name {
        "lt" => Some('<'),
        "gt" => Some('>'),
        "amp" => Some('&'),
        "quot" => Some('"'),
        "apos" => Some('\''),
        _ => {
            let num = name.strip_prefix('#')?;
            let code = match num.strip_prefix(['x', 'X']) {
                Some(hex) => u32::from_str_radix(hex, 16).ok()?,
                None => num.parse().ok()?,
            };
            char::from_u32(code).filter(|&c| c != '\0')
        }
    }
}

/// An element being read: its name and the text directly inside it.
struct Frame {
    name: String,
    text: String,
}

/// Reads the card out of `xml` (already unwrapped).
pub fn parse_card(xml: &str) -> Result<Card, CardError> {
    let mut reader = quick_xml::Reader::from_str(xml);
    let mut stack: Vec<Frame> = Vec::new();
    let mut builder = CardBuilder::default();
    loop {
        let event = reader
            .read_event()
            .map_err(|e| CardError::Xml(e.to_string()))?;
        match event {
            Event::Start(e) => {
                if stack.len() >= MAX_DEPTH {
                    return Err(CardError::TooDeep);
                }
                let name = String::from_utf8_lossy(e.local_name().as_ref()).into_owned();
                builder.start(&stack, &name);
                stack.push(Frame {
                    name,
                    text: String::new(),
                });
            }
            Event::Empty(e) => {
                let name = String::from_utf8_lossy(e.local_name().as_ref()).into_owned();
                builder.start(&stack, &name);
            }
            Event::End(_) => {
                // quick-xml has already checked that the end tag matches the open one.
                if let Some(frame) = stack.pop() {
                    builder.end(&stack, frame);
                }
            }
            Event::Text(t) => push_text(
                &mut stack,
                &t.decode().map_err(|e| CardError::Xml(e.to_string()))?,
            ),
            Event::CData(t) => push_text(
                &mut stack,
                &t.decode().map_err(|e| CardError::Xml(e.to_string()))?,
            ),
            Event::GeneralRef(r) => push_text(&mut stack, &resolve_reference(&r)),
            Event::Eof => break,
            _ => {}
        }
    }
    match stack.last() {
        Some(open) => Err(CardError::Truncated(open.name.clone())),
        None => Ok(builder.card),
    }
}

fn push_text(stack: &mut [Frame], text: &str) {
    if let Some(frame) = stack.last_mut() {
        frame.text.push_str(text);
    }
}

/// `&amp;` → `&`, `&#65;` → `A`; an unknown entity is kept as written rather than failing
/// the whole notice.
fn resolve_reference(r: &BytesRef<'_>) -> String {
    let name = String::from_utf8_lossy(r).into_owned();
    if let Ok(Some(c)) = r.resolve_char_ref() {
        return c.to_string();
    }
    match quick_xml::escape::resolve_predefined_entity(&name) {
        Some(s) => s.to_string(),
        None => format!("&{name};"),
    }
}

/// Collects fields as elements close, by their path below the root element.
#[derive(Default)]
struct CardBuilder {
    card: Card,
    key: Option<String>,
    value: Option<String>,
}

const LINE_CONTENT: &str = "appmsg/mmreader/template_detail/line_content";

impl CardBuilder {
    fn start(&mut self, parents: &[Frame], name: &str) {
        if name == "newaa" && path_of(parents, "") == "appmsg/wcpayinfo/" {
            self.wcpay().has_newaa = true;
        }
    }

    fn end(&mut self, parents: &[Frame], frame: Frame) {
        let path = path_of(parents, &frame.name);
        let text = frame.text.trim().to_string();
        let row = path.strip_prefix(LINE_CONTENT);
        match path.as_str() {
            "appmsg/type" => self.card.app_type = text.parse().ok(),
            "appmsg/title" => self.card.title = text,
            "appmsg/des" => self.card.des = text,
            "appmsg/ext_pay_info/pay_fee" => self.card.pay_fee = Some(text),
            "appmsg/wcpayinfo/paysubtype" => self.wcpay().paysubtype = Some(text),
            "appmsg/wcpayinfo/feedesc" => self.wcpay().feedesc = Some(text),
            "appmsg/wcpayinfo/transferid" => self.wcpay().transferid = Some(text),
            "appmsg/wcpayinfo/pay_memo" => self.wcpay().pay_memo = Some(text),
            "appmsg/wcpayinfo/payer_username" => self.wcpay().payer_username = Some(text),
            "appmsg/wcpayinfo/receiver_username" => self.wcpay().receiver_username = Some(text),
            "appmsg/wcpayinfo" => {
                self.wcpay();
            }
            _ => match row {
                Some("/topline/key/word" | "/lines/line/key/word") => self.key = Some(text),
                Some("/topline/value/word" | "/lines/line/value/word") => self.value = Some(text),
                Some("/topline") => self.card.topline = Some(self.take_line()),
                Some("/lines/line") => {
                    let line = self.take_line();
                    self.card.lines.push(line);
                }
                _ => {}
            },
        }
    }

    fn take_line(&mut self) -> Line {
        Line {
            key: self.key.take().unwrap_or_default(),
            value: self.value.take().unwrap_or_default(),
        }
    }

    fn wcpay(&mut self) -> &mut WcPayInfo {
        self.card.wcpay.get_or_insert_with(WcPayInfo::default)
    }
}

/// `appmsg/des` for the element `name` under `parents`, leaving out the root element (it is
/// `<msg>` in every capture, but nothing depends on that).
fn path_of(parents: &[Frame], name: &str) -> String {
    let mut path = String::new();
    for frame in parents.iter().skip(1) {
        path.push_str(&frame.name);
        path.push('/');
    }
    path.push_str(name);
    path
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unwraps_escaped_group_content() {
        let u = unwrap_web_content(
            "@ab12:<br/>&lt;msg&gt;&lt;a&gt;x&amp;amp;y<br/>z&lt;/a&gt;&lt;/msg&gt;",
        );
        assert_eq!(u.group_member.as_deref(), Some("@ab12"));
        assert_eq!(u.xml, "<msg><a>x&amp;y\nz</a></msg>");
    }

    #[test]
    fn leaves_raw_xml_and_odd_ampersands_alone() {
        let u = unwrap_web_content("<msg>&bogus; @x</msg>");
        assert_eq!(u.group_member, None);
        assert_eq!(u.xml, "<msg>&bogus; @x</msg>");
        assert_eq!(
            html_unescape("a &#x4e2d;&#25991; & b &#0; &lt"),
            "a 中文 & b &#0; &lt"
        );
    }

    #[test]
    fn reads_template_rows_and_wcpayinfo() {
        let xml = "<msg><appmsg><type>5</type><title><![CDATA[t]]></title>\
            <mmreader><template_detail><line_content>\
            <topline><key><word>收款金额</word></key><value><word><![CDATA[￥1.00]]></word></value></topline>\
            <lines><line><key><word>备注</word></key><value><word>a&amp;b &foo;</word></value></line></lines>\
            </line_content></template_detail></mmreader>\
            <wcpayinfo><paysubtype>1</paysubtype><newaa/></wcpayinfo></appmsg></msg>";
        let card = parse_card(xml).unwrap();
        assert_eq!(card.app_type, Some(5));
        assert_eq!(card.title, "t");
        let top = card.topline.unwrap();
        assert_eq!(
            (top.key.as_str(), top.value.as_str()),
            ("收款金额", "￥1.00")
        );
        assert_eq!(card.lines[0].value, "a&b &foo;");
        let wcpay = card.wcpay.unwrap();
        assert_eq!(wcpay.paysubtype.as_deref(), Some("1"));
        assert!(wcpay.has_newaa);
    }

    #[test]
    fn truncated_and_mismatched_xml_are_errors() {
        assert!(matches!(
            parse_card("<msg><appmsg><title>x</title>"),
            Err(CardError::Truncated(_))
        ));
        assert!(parse_card("<msg><appmsg></msg>").is_err());
        assert!(parse_card("<msg><![CDATA[x").is_err());
        let deep = "<a>".repeat(100);
        assert_eq!(parse_card(&deep), Err(CardError::TooDeep));
    }
}
