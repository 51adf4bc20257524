//! The simulated account's address book. Identities (nicknames, flags) persist for the whole
//! run; user names are per-login hashes and are drawn anew at every login, as on WeChat, so a
//! client that remembers a user name across logins breaks here too.

use wechat_web::Contact;

use super::ids;

/// What a contact is, which decides the shape of its user name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// `@` + 64 hex.
    Person,
    /// `@@` + 64 hex.
    Group,
    /// `@` + 32 hex, as in the payment captures.
    Official,
    /// A fixed name such as `filehelper`.
    Special,
}

/// One entry of the address book.
#[derive(Debug, Clone)]
pub struct Entry {
    pub contact: Contact,
    pub kind: Kind,
    /// Listed by webwxgetcontact; strangers are only known through webwxbatchgetcontact.
    pub listed: bool,
}

/// The official account that sends collection notices.
pub const WXPAY: &str = "微信支付";
/// The official account that sends clerk copies of collections.
pub const CASHIER_ASSISTANT: &str = "微信收款助手";

const NAMES: &[&str] = &[
    "张伟", "王芳", "李娜", "刘洋", "陈静", "杨磊", "赵敏", "黄强", "周杰", "吴婷", "徐丽", "孙浩",
    "马超", "朱琳", "胡军", "郭靖", "何欢", "林峰", "高翔", "罗敏",
];

/// The address book a fresh simulator starts with: specials, the two payment accounts,
/// three groups, and `extra` ordinary people.
pub fn initial(extra: usize) -> Vec<Entry> {
    let mut book = vec![
        special("filehelper", "文件传输助手", 0),
        special("weixin", "微信团队", 56),
        official(WXPAY),
        official(CASHIER_ASSISTANT),
    ];
    for name in ["家人群", "小区团购群", "供货商群"] {
        book.push(entry(Kind::Group, name, 0, true));
    }
    for i in 0..extra {
        let base = NAMES[i % NAMES.len()];
        let nick = if i < NAMES.len() {
            base.to_string()
        } else {
            format!("{base}{}", i / NAMES.len() + 1)
        };
        book.push(entry(Kind::Person, &nick, 0, true));
    }
    book
}

fn special(user_name: &str, nick: &str, verify_flag: u32) -> Entry {
    let mut e = entry(Kind::Special, nick, verify_flag, true);
    e.contact.user_name = user_name.to_string();
    e
}

/// A verified official account (VerifyFlag 24, KeyWord `gh_`), as the payment accounts are.
pub fn official(nick: &str) -> Entry {
    let mut e = entry(Kind::Official, nick, 24, true);
    e.contact.key_word = "gh_".to_string();
    e
}

/// A new entry with a fresh user name for its kind.
pub fn entry(kind: Kind, nick: &str, verify_flag: u32, listed: bool) -> Entry {
    let contact = Contact {
        user_name: user_name(kind),
        nick_name: nick.to_string(),
        verify_flag,
        contact_flag: if kind == Kind::Group { 2 } else { 3 },
        member_count: if kind == Kind::Group { 12 } else { 0 },
        ..Contact::default()
    };
    Entry {
        contact,
        kind,
        listed,
    }
}

/// A fresh user name of the shape `kind` has.
pub fn user_name(kind: Kind) -> String {
    match kind {
        Kind::Person => format!("@{}", ids::hex(64)),
        Kind::Group => format!("@@{}", ids::hex(64)),
        Kind::Official => format!("@{}", ids::hex(32)),
        Kind::Special => String::new(),
    }
}

/// Draws new user names for everyone but the specials (a new login).
pub fn rename_all(book: &mut [Entry]) {
    for e in book.iter_mut().filter(|e| e.kind != Kind::Special) {
        e.contact.user_name = user_name(e.kind);
    }
}

/// The JSON of a contact record with the fields a real one has beyond [`Contact`]'s.
pub fn contact_json(c: &Contact) -> serde_json::Value {
    use serde_json::json;
    let mut v = serde_json::to_value(c).unwrap_or_else(|_| json!({}));
    let head = format!(
        "/cgi-bin/mmwebwx-bin/webwxgeticon?seq=0&username={}&skey=",
        c.user_name
    );
    if let serde_json::Value::Object(map) = &mut v {
        for (k, val) in [
            ("Uin", json!(0)),
            ("HeadImgUrl", json!(head)),
            ("MemberList", json!([])),
            ("OwnerUin", json!(0)),
            ("StarFriend", json!(0)),
            ("AppAccountFlag", json!(0)),
            ("HideInputBarFlag", json!(0)),
            ("Statues", json!(0)),
            ("AttrStatus", json!(0)),
            ("Sex", json!(0)),
            ("Signature", json!("")),
            ("Province", json!("")),
            ("City", json!("")),
            ("Alias", json!("")),
            ("SnsFlag", json!(0)),
            ("UniFriend", json!(0)),
            ("DisplayName", json!("")),
            ("ChatRoomId", json!(0)),
            ("EncryChatRoomId", json!("")),
            ("IsOwner", json!(0)),
            ("PYInitial", json!("")),
            ("PYQuanPin", json!("")),
            ("RemarkPYInitial", json!("")),
            ("RemarkPYQuanPin", json!("")),
        ] {
            map.insert(k.to_string(), val);
        }
    }
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn book_has_payment_accounts_and_names_change_per_login() {
        let mut book = initial(25);
        let wxpay = book
            .iter()
            .position(|e| e.contact.nick_name == WXPAY)
            .unwrap_or(usize::MAX);
        assert!(book[wxpay].contact.is_official_account());
        assert_eq!(book[wxpay].contact.user_name.len(), 33);
        let before = book[wxpay].contact.user_name.clone();
        rename_all(&mut book);
        assert_ne!(before, book[wxpay].contact.user_name);
        assert!(book.iter().any(|e| e.contact.user_name == "filehelper"));
        assert_eq!(book.iter().filter(|e| e.kind == Kind::Person).count(), 25);
        assert!(book.iter().any(|e| e.contact.nick_name == "张伟2"));
    }
}
