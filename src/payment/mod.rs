//! Payment detection: which messages are money the shop received, and how much.
//!
//! A pure function over one decoded message and the contact it came from, with no I/O, so
//! that every rule can be tested against captured notices. The rules come from real
//! traffic (see `tests/fixtures/payments/README.md`):
//!
//! - Collection notices count only from a *verified* official account (`VerifyFlag & 8`)
//!   whose name is configured; the XML's own `<fromusername>`/`<publisher>` prove nothing,
//!   since anybody can send a card with the same XML.
//! - The amount is read by structure (the template's `topline`, the `收款金额` line of
//!   `des`, `ext_pay_info/pay_fee`), never as "the first ￥", because remarks are free text.
//!   Where several are present they must agree.
//! - The same card template announces money going out (`付款金额`) and refunds (`退款`):
//!   those are not customer payments.
//! - A transfer counts once, when it is sent to this account (`paysubtype` 1); the
//!   acceptance (3) and the return (4) of the same `transferid` never count.

mod card;
pub mod notice;

use std::fmt;
use std::str::FromStr;

pub use crate::money::{AmountError, parse_amount_fen};
pub use card::CardError;

use crate::money::{MAX_PAYMENT_FEN, Yuan, scan_amount};
use card::{Card, WcPayInfo, parse_card, unwrap_web_content};

use crate::config::PaymentsConfig;
use crate::protocol::{Contact, Message, app_msg_type, msg_type};

/// Real notices are about 10 kB escaped; a `Content` far beyond that is not one, and is
/// refused before parsing so that a hostile message cannot cost much.
pub const MAX_CONTENT_BYTES: usize = 256 * 1024;

/// What kind of money a payment is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PaymentKind {
    /// A customer paid the shop's QR code (notice from 微信支付 and similar accounts).
    Collection,
    /// A clerk's copy of a collection (`[店员消息]`, from 微信收款助手).
    ClerkCollection,
    /// A personal transfer (微信转账) sent to this account.
    Transfer,
    /// A red packet that carried its amount.
    RedPacket,
    /// A group collection (群收款) that carried its amount.
    GroupCollection,
}

impl PaymentKind {
    /// Every kind, in the order they are listed to people.
    pub const ALL: [PaymentKind; 5] = [
        PaymentKind::Collection,
        PaymentKind::ClerkCollection,
        PaymentKind::Transfer,
        PaymentKind::RedPacket,
        PaymentKind::GroupCollection,
    ];

    /// The stable name used in the ledger and in `paysay ledger` output.
    pub fn as_str(self) -> &'static str {
        match self {
            PaymentKind::Collection => "collection",
            PaymentKind::ClerkCollection => "clerk_collection",
            PaymentKind::Transfer => "transfer",
            PaymentKind::RedPacket => "red_packet",
            PaymentKind::GroupCollection => "group_collection",
        }
    }

    /// The name people read in Chinese: the owner's daily summary and the shop's page say
    /// the same words. A collection is 二维码收款, as WeChat's own notice calls it
    /// (二维码收款到账).
    pub fn label_zh(self) -> &'static str {
        match self {
            PaymentKind::Collection => "二维码收款",
            PaymentKind::ClerkCollection => "店员收款",
            PaymentKind::Transfer => "转账",
            PaymentKind::RedPacket => "红包",
            PaymentKind::GroupCollection => "群收款",
        }
    }

    /// The name people read in English, on the page in English.
    pub fn label_en(self) -> &'static str {
        match self {
            PaymentKind::Collection => "QR",
            PaymentKind::ClerkCollection => "clerk QR",
            PaymentKind::Transfer => "transfer",
            PaymentKind::RedPacket => "red packet",
            PaymentKind::GroupCollection => "group",
        }
    }
}

impl fmt::Display for PaymentKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A kind name that is not one of [`PaymentKind::as_str`]'s.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "unknown payment kind {0:?} (known: collection, clerk_collection, transfer, red_packet, group_collection)"
)]
pub struct UnknownKind(pub String);

impl FromStr for PaymentKind {
    type Err = UnknownKind;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        PaymentKind::ALL
            .into_iter()
            .find(|k| k.as_str() == s)
            .ok_or_else(|| UnknownKind(s.to_string()))
    }
}

/// The wallet the money came through. The web session hears only WeChat; the phone's
/// notices (`[intake]`) hear every wallet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Wallet {
    WeChat,
    Alipay,
    /// 云闪付.
    UnionPay,
}

impl Wallet {
    /// Every wallet, in the order they are listed to people.
    pub const ALL: [Wallet; 3] = [Wallet::WeChat, Wallet::Alipay, Wallet::UnionPay];

    /// The stable name used in the ledger, `paysay ledger --json` and the events.
    pub fn as_str(self) -> &'static str {
        match self {
            Wallet::WeChat => "wechat",
            Wallet::Alipay => "alipay",
            Wallet::UnionPay => "unionpay",
        }
    }
}

impl fmt::Display for Wallet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A wallet name that is not one of [`Wallet::as_str`]'s.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown wallet {0:?} (known: wechat, alipay, unionpay)")]
pub struct UnknownWallet(pub String);

impl FromStr for Wallet {
    type Err = UnknownWallet;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Wallet::ALL
            .into_iter()
            .find(|w| w.as_str() == s)
            .ok_or_else(|| UnknownWallet(s.to_string()))
    }
}

/// Which way paysay heard of a payment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Source {
    /// The WeChat web session (a message with its MsgId).
    Web,
    /// The shop phone's notice, forwarded to `[intake]`.
    Phone,
    /// Both: one payment, heard both ways and said once.
    Both,
}

impl Source {
    /// The stable name used in the ledger and `paysay ledger --json`.
    pub fn as_str(self) -> &'static str {
        match self {
            Source::Web => "web",
            Source::Phone => "phone",
            Source::Both => "both",
        }
    }

    /// The word in the ledger back to a source; anything else reads as the web's (the
    /// ledger's CHECK keeps other words out).
    pub fn parse(s: &str) -> Source {
        match s {
            "phone" => Source::Phone,
            "both" => Source::Both,
            _ => Source::Web,
        }
    }
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Money received, as read from one message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Payment {
    /// The message's `MsgId`: the ledger's first dedupe key.
    pub msg_id: String,
    /// The amount in fen (1/100 yuan), never a float.
    pub amount_fen: u64,
    pub kind: PaymentKind,
    /// Who paid, where the message says so (transfers; collection cards rarely do).
    pub payer: Option<String>,
    /// The payer's or the payee's remark (`付款方备注`, `收款方备注`, a transfer's memo).
    pub remark: Option<String>,
    /// `今日第3笔收款`: the day's count according to WeChat.
    pub daily_count: Option<u32>,
    /// `共计￥12.50`: the day's total according to WeChat.
    pub daily_total_fen: Option<u64>,
    /// Unix seconds, from the message's `CreateTime`.
    pub time: i64,
    /// Who delivered it: the official account's name, or the transfer sender's name.
    pub account: String,
    /// Links the messages of one transfer: the ledger's second dedupe key.
    pub transfer_id: Option<String>,
    /// WeChat for everything the web session hears; any wallet from the phone.
    pub wallet: Wallet,
    /// Which way it was heard (the web session, the phone, or both).
    pub source: Source,
}

/// A message that looked like a payment but could not be read. The caller logs it and goes
/// on: the shop owner then checks the phone.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PaymentError {
    #[error(
        "message {msg_id} from {account}: its content is {len} bytes, more than any payment notice ({MAX_CONTENT_BYTES}); skipped, check the phone for a payment"
    )]
    TooLarge {
        msg_id: String,
        account: String,
        len: usize,
    },
    #[error(
        "message {msg_id} from {account} looks like a payment but cannot be read ({source}); check the phone"
    )]
    Unreadable {
        msg_id: String,
        account: String,
        source: CardError,
    },
    #[error(
        "message {msg_id} from {account} looks like a {kind} but its amount cannot be read: {detail}; check the phone"
    )]
    Amount {
        msg_id: String,
        account: String,
        kind: PaymentKind,
        detail: String,
    },
    #[error(
        "message {msg_id} from {account}: the notice shows two different amounts ({first} and {second} fen); not announced, check the phone"
    )]
    AmountMismatch {
        msg_id: String,
        account: String,
        first: u64,
        second: u64,
    },
}

/// Picks payments out of messages, following the `[payments]` config.
#[derive(Debug, Clone)]
pub struct Detector {
    config: PaymentsConfig,
}

/// The message being looked at, with what was learned about it so far.
struct Context<'a> {
    msg: &'a Message,
    sender: Option<&'a Contact>,
    own_user_name: &'a str,
    group_member: Option<String>,
}

impl Context<'_> {
    /// Who delivered the message, for the ledger and for error messages: an official
    /// account by its own name, a person by the name the owner gave them, if any.
    fn account(&self) -> String {
        match self.sender {
            Some(c) if c.is_official_account() => c.nick_name.trim().to_string(),
            Some(c) if !c.remark_name.trim().is_empty() => c.remark_name.trim().to_string(),
            Some(c) if !c.nick_name.trim().is_empty() => c.nick_name.trim().to_string(),
            _ => self.msg.from_user_name.clone(),
        }
    }

    fn in_group(&self) -> bool {
        self.msg.from_user_name.starts_with("@@") || self.group_member.is_some()
    }

    fn amount_error(&self, kind: PaymentKind, detail: impl fmt::Display) -> PaymentError {
        PaymentError::Amount {
            msg_id: self.msg.msg_id.clone(),
            account: self.account(),
            kind,
            detail: detail.to_string(),
        }
    }

    fn payment(&self, kind: PaymentKind, amount_fen: u64) -> Payment {
        Payment {
            msg_id: self.msg.msg_id.clone(),
            amount_fen,
            kind,
            payer: None,
            remark: None,
            daily_count: None,
            daily_total_fen: None,
            time: self.msg.create_time,
            account: self.account(),
            transfer_id: None,
            wallet: Wallet::WeChat,
            source: Source::Web,
        }
    }
}

impl Detector {
    /// A detector for the kinds and accounts the `[payments]` config names.
    pub fn new(config: &PaymentsConfig) -> Detector {
        Detector {
            config: config.clone(),
        }
    }

    /// `Ok(None)`: not a payment, or a kind switched off. `Err`: looked like a payment but
    /// could not be read; the caller logs it and skips the message.
    ///
    /// `sender` is the contact record of `msg.from_user_name`, if known; `own_user_name` is
    /// the logged-in account's (per-session) user name.
    pub fn detect(
        &self,
        msg: &Message,
        sender: Option<&Contact>,
        own_user_name: &str,
    ) -> Result<Option<Payment>, PaymentError> {
        // Money the owner sent, and the owner's acceptances, are never customer payments.
        if msg.msg_type != msg_type::APP || msg.from_user_name == own_user_name {
            return Ok(None);
        }
        let from_payment_account = self.is_payment_account(msg, sender);
        let worth_reading = match msg.app_msg_type {
            // Some clients leave AppMsgType out of the envelope: the XML's <type> decides.
            0 => true,
            app_msg_type::LINK => from_payment_account && self.config.collections,
            app_msg_type::TRANSFER => self.config.transfers,
            app_msg_type::RED_PACKET => self.config.red_packets || self.config.group_collections,
            _ => false,
        };
        if !worth_reading {
            return Ok(None);
        }
        let mut cx = Context {
            msg,
            sender,
            own_user_name,
            group_member: None,
        };
        if msg.content.len() > MAX_CONTENT_BYTES {
            return Err(PaymentError::TooLarge {
                msg_id: msg.msg_id.clone(),
                account: cx.account(),
                len: msg.content.len(),
            });
        }
        let unwrapped = unwrap_web_content(&msg.content);
        cx.group_member = unwrapped.group_member;
        let card = match parse_card(&unwrapped.xml) {
            Ok(card) => card,
            // Unknown type from an ordinary contact: nothing suggests money, so no alarm.
            Err(_) if msg.app_msg_type == 0 && !from_payment_account => return Ok(None),
            Err(source) => {
                return Err(PaymentError::Unreadable {
                    msg_id: msg.msg_id.clone(),
                    account: cx.account(),
                    source,
                });
            }
        };
        let app_type = match msg.app_msg_type {
            0 => card.app_type.unwrap_or(0),
            t => t,
        };
        let found = match app_type {
            app_msg_type::LINK if from_payment_account && self.config.collections => {
                collection(&cx, &card)
            }
            app_msg_type::TRANSFER if self.config.transfers => transfer(&cx, &card),
            app_msg_type::RED_PACKET => self.red_packet(&cx, &card),
            _ => Ok(None),
        }?;
        match found {
            Some(p) if p.amount_fen > MAX_PAYMENT_FEN => Err(cx.amount_error(
                p.kind,
                format!(
                    "{} yuan is more than any payment can be ({} at most)",
                    Yuan(p.amount_fen),
                    Yuan(MAX_PAYMENT_FEN)
                ),
            )),
            found => Ok(found),
        }
    }

    /// Only the contact record can prove a sender: a verified official account (web user
    /// names are per-session hashes) with a configured name, posting outside any group.
    fn is_payment_account(&self, msg: &Message, sender: Option<&Contact>) -> bool {
        let Some(contact) = sender else { return false };
        let same_user = contact.user_name.is_empty() || contact.user_name == msg.from_user_name;
        let name = contact.nick_name.trim();
        same_user
            && contact.is_official_account()
            && !msg.from_user_name.starts_with("@@")
            && self.config.accounts.iter().any(|a| a.trim() == name)
    }

    /// Red packets and group collections count only when they carry an amount, which they
    /// rarely do; a red packet also only when it was sent to this account alone.
    fn red_packet(&self, cx: &Context<'_>, card: &Card) -> Result<Option<Payment>, PaymentError> {
        let Some(wcpay) = &card.wcpay else {
            return Ok(None);
        };
        let kind = if wcpay.has_newaa || card.title.contains("群收款") {
            PaymentKind::GroupCollection
        } else {
            PaymentKind::RedPacket
        };
        let enabled = match kind {
            PaymentKind::GroupCollection => self.config.group_collections,
            _ => self.config.red_packets,
        };
        let addressed_to_us = kind == PaymentKind::GroupCollection
            || (!cx.in_group() && cx.msg.to_user_name == cx.own_user_name);
        let fee = wcpay.feedesc.as_deref().map(str::trim).unwrap_or("");
        if !enabled || !addressed_to_us || fee.is_empty() {
            return Ok(None);
        }
        let fen = parse_amount_fen(fee).map_err(|e| cx.amount_error(kind, e))?;
        let mut payment = cx.payment(kind, fen);
        payment.payer = cx.sender.map(|_| cx.account());
        Ok(Some(payment))
    }
}

/// Which way the money of a template card goes, from the key of its amount row.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Direction {
    Incoming,
    Outgoing,
    Refund,
    Other,
}

fn direction_of_key(key: &str) -> Direction {
    if key.contains("退款") {
        Direction::Refund
    } else if ["付款金额", "支付金额", "消费金额"]
        .iter()
        .any(|k| key.contains(k))
    {
        Direction::Outgoing
    } else if ["收款金额", "到账金额"].iter().any(|k| key.contains(k)) {
        Direction::Incoming
    } else {
        Direction::Other
    }
}

/// Keys that name an amount row, in `des` and in template lines.
const AMOUNT_KEYS: [&str; 5] = ["收款金额", "到账金额", "付款金额", "支付金额", "退款金额"];

/// Keys the `des` of a card is made of. When the capture lost the separators, these are
/// what splits the run-on text; longer keys come first where one contains another.
const DES_KEYS: [&str; 13] = [
    "收款方备注",
    "付款方备注",
    "收款金额",
    "到账金额",
    "付款金额",
    "支付金额",
    "退款金额",
    "付款方",
    "付款人",
    "汇总",
    "备注",
    "说明",
    "到账时间",
];

/// A collection notice from a payment account.
fn collection(cx: &Context<'_>, card: &Card) -> Result<Option<Payment>, PaymentError> {
    let des = des_fields(&card.des);
    let direction = card
        .topline
        .as_ref()
        .map(|l| direction_of_key(&l.key))
        .filter(|d| *d != Direction::Other)
        .or_else(|| {
            des.iter()
                .find(|(k, _)| AMOUNT_KEYS.contains(k))
                .map(|(k, _)| direction_of_key(k))
        });
    if matches!(direction, Some(Direction::Outgoing | Direction::Refund))
        || card.title.contains("退款")
    {
        return Ok(None);
    }
    let kind = if card.title.contains("[店员消息]") || card.des.starts_with("[店员消息]") {
        PaymentKind::ClerkCollection
    } else {
        PaymentKind::Collection
    };
    let Some(fen) = collection_amount(cx, kind, card, &des)? else {
        return Ok(None);
    };
    let field = |keys: &[&str]| {
        keys.iter().find_map(|key| {
            let from_lines = card
                .lines
                .iter()
                .find(|l| l.key == *key)
                .map(|l| l.value.as_str());
            let from_des = des.iter().find(|(k, _)| k == key).map(|(_, v)| *v);
            from_lines
                .or(from_des)
                .map(str::trim)
                .filter(|v| !v.is_empty())
        })
    };
    let mut payment = cx.payment(kind, fen);
    payment.remark = field(&["付款方备注", "收款方备注"]).map(str::to_string);
    payment.payer = field(&["付款方", "付款人"]).map(str::to_string);
    if let Some(summary) = field(&["汇总"]) {
        (payment.daily_count, payment.daily_total_fen) = daily_summary(summary);
    }
    Ok(Some(payment))
}

/// The amount of a collection card: every structural place that carries it must agree.
/// `Ok(None)`: the card carries no incoming amount at all (an ad, a bill, a reminder).
fn collection_amount(
    cx: &Context<'_>,
    kind: PaymentKind,
    card: &Card,
    des: &[(&str, &str)],
) -> Result<Option<u64>, PaymentError> {
    let incoming = |key: &str| direction_of_key(key) == Direction::Incoming;
    let mut found: Vec<u64> = Vec::new();
    let rows = card
        .topline
        .iter()
        .chain(&card.lines)
        .filter(|l| incoming(&l.key));
    for row in rows {
        found.push(parse_amount_fen(&row.value).map_err(|e| cx.amount_error(kind, e))?);
    }
    for (_, value) in des.iter().filter(|(k, _)| incoming(k)) {
        match scan_amount(value) {
            Ok(Some((fen, _))) => found.push(fen),
            Ok(None) => {
                return Err(cx.amount_error(kind, format!("no amount after the key in {value:?}")));
            }
            Err(e) => return Err(cx.amount_error(kind, e)),
        }
    }
    if let Some(fee) = card
        .pay_fee
        .as_deref()
        .map(str::trim)
        .filter(|f| !f.is_empty())
    {
        let fen = fee.parse::<u64>().map_err(|_| {
            cx.amount_error(kind, format!("pay_fee {fee:?} is not a number of fen"))
        })?;
        found.push(fen);
    }
    if let Some(&first) = found.first() {
        return match found.iter().find(|&&f| f != first) {
            Some(&second) => Err(PaymentError::AmountMismatch {
                msg_id: cx.msg.msg_id.clone(),
                account: cx.account(),
                first,
                second,
            }),
            None => Ok(Some(first)),
        };
    }
    // The title is the last resort: its wording changes, but `…收款0.01元` has been stable.
    Ok(title_amount(&card.title))
}

/// `微信支付收款0.01元(朋友到店)`, `[店员消息]收款到账0.01元` → 1.
fn title_amount(title: &str) -> Option<u64> {
    title.match_indices("收款").find_map(|(at, key)| {
        let rest = &title[at + key.len()..];
        let rest = rest.strip_prefix("到账").unwrap_or(rest);
        scan_amount(rest).ok().flatten().map(|(fen, _)| fen)
    })
}

/// `今日第3笔收款，共计￥12.50` → (3, 1250). Informational, so whatever is unreadable is `None`.
fn daily_summary(text: &str) -> (Option<u32>, Option<u64>) {
    let count = text.split_once('第').and_then(|(_, rest)| {
        let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
        rest[digits.len()..]
            .starts_with('笔')
            .then(|| digits.parse().ok())
            .flatten()
    });
    let total = text.split_once("共计").and_then(|(_, rest)| {
        let rest = rest.trim_start_matches([':', '：', ' ']);
        scan_amount(rest).ok().flatten().map(|(fen, _)| fen)
    });
    (count, total)
}

/// The `des` of a card as (key, value) rows. Lines are split on newlines (`\n`, `\r\n`,
/// the web's `<br/>` already turned into `\n`); when a capture lost them, on the known keys.
/// A row without a known key has the key `""`.
fn des_fields(des: &str) -> Vec<(&'static str, &str)> {
    let lines: Vec<&str> = des
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect();
    if lines.len() > 1 {
        return lines.into_iter().map(split_key).collect();
    }
    split_run_on(des.trim())
}

fn split_key(line: &str) -> (&'static str, &str) {
    for key in DES_KEYS {
        if let Some(rest) = line.strip_prefix(key) {
            return (key, rest.trim_start_matches([':', '：', ' ']).trim());
        }
    }
    ("", line)
}

/// `收款金额￥0.01收款方备注good汇总…` → rows at every known key.
fn split_run_on(text: &str) -> Vec<(&'static str, &str)> {
    let mut starts: Vec<(usize, &'static str)> = Vec::new();
    let mut i = 0;
    while i < text.len() {
        match DES_KEYS.iter().find(|k| text[i..].starts_with(*k)) {
            Some(key) => {
                starts.push((i, key));
                i += key.len();
            }
            None => i += text[i..].chars().next().map_or(1, char::len_utf8),
        }
    }
    let mut fields = Vec::new();
    let first = starts.first().map_or(text.len(), |(at, _)| *at);
    if first > 0 {
        fields.push(("", text[..first].trim()));
    }
    for (n, (at, key)) in starts.iter().enumerate() {
        let end = starts.get(n + 1).map_or(text.len(), |(next, _)| *next);
        let value = text[at + key.len()..end]
            .trim_start_matches([':', '：', ' '])
            .trim();
        fields.push((*key, value));
    }
    fields
}

/// A personal transfer: counts only when sent (`paysubtype` 1) by someone else to this
/// account. In a group the receiver must be named as this account, since the reader of a
/// group message is not necessarily the one paid.
fn transfer(cx: &Context<'_>, card: &Card) -> Result<Option<Payment>, PaymentError> {
    let kind = PaymentKind::Transfer;
    let Some(wcpay) = &card.wcpay else {
        return Err(cx.amount_error(kind, "the transfer has no <wcpayinfo>"));
    };
    let subtype = wcpay.paysubtype.as_deref().map(str::trim).unwrap_or("");
    match subtype {
        "1" => {}
        // 3 accepted, 4 returned, and whatever else: never a new payment.
        "" => return Err(cx.amount_error(kind, "the transfer has no <paysubtype>")),
        _ => return Ok(None),
    }
    let named = |name: &Option<String>| name.as_deref().map(str::trim) == Some(cx.own_user_name);
    if named(&wcpay.payer_username) {
        return Ok(None);
    }
    let to_us = if cx.in_group() {
        named(&wcpay.receiver_username)
    } else {
        cx.msg.to_user_name == cx.own_user_name
    };
    if !to_us {
        return Ok(None);
    }
    let fen = transfer_amount(wcpay, &card.des).map_err(|e| cx.amount_error(kind, e))?;
    let mut payment = cx.payment(kind, fen);
    payment.payer = match &cx.group_member {
        Some(member) => Some(member.clone()),
        None => cx.sender.map(|_| cx.account()),
    };
    payment.remark = wcpay
        .pay_memo
        .as_deref()
        .map(str::trim)
        .filter(|m| !m.is_empty())
        .map(str::to_string);
    payment.transfer_id = wcpay
        .transferid
        .as_deref()
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .map(str::to_string);
    Ok(Some(payment))
}

/// `feedesc` is the amount; the fallback `des` (`收到转账0.10元。…`) only when it is missing.
fn transfer_amount(wcpay: &WcPayInfo, des: &str) -> Result<u64, AmountError> {
    if let Some(fee) = wcpay.feedesc.as_deref().filter(|f| !f.trim().is_empty()) {
        return parse_amount_fen(fee);
    }
    let after = des
        .split_once("收到转账")
        .map(|(_, rest)| rest)
        .ok_or_else(|| AmountError::Missing(des.to_string()))?;
    scan_amount(after)?
        .map(|(fen, _)| fen)
        .ok_or_else(|| AmountError::Missing(des.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kind_names_round_trip() {
        for kind in PaymentKind::ALL {
            assert_eq!(kind.as_str().parse::<PaymentKind>(), Ok(kind));
        }
        assert!("cash".parse::<PaymentKind>().is_err());
    }

    #[test]
    fn run_on_des_splits_on_known_keys() {
        let fields =
            des_fields("收款金额￥0.01收款方备注good汇总今日第1笔收款，共计￥0.01备注收款成功");
        assert_eq!(
            fields,
            vec![
                ("收款金额", "￥0.01"),
                ("收款方备注", "good"),
                ("汇总", "今日第1笔收款，共计￥0.01"),
                ("备注", "收款成功"),
            ]
        );
    }

    #[test]
    fn des_lines_keep_remarks_whole() {
        let fields =
            des_fields("收款金额：￥5.00\r\n付款方备注：备注汇总￥9\r\n汇总：今日第2笔收款");
        assert_eq!(fields[1], ("付款方备注", "备注汇总￥9"));
        assert_eq!(fields[2], ("汇总", "今日第2笔收款"));
    }

    #[test]
    fn daily_summary_reads_count_and_total() {
        assert_eq!(
            daily_summary("今日第3笔收款，共计￥12.50"),
            (Some(3), Some(1250))
        );
        assert_eq!(
            daily_summary("今日第2笔收款, 共计￥0.02"),
            (Some(2), Some(2))
        );
        assert_eq!(daily_summary("第x笔"), (None, None));
    }

    #[test]
    fn title_amount_needs_the_collection_word() {
        assert_eq!(title_amount("微信支付收款0.01元(朋友到店)"), Some(1));
        assert_eq!(title_amount("[店员消息]收款到账1,000.5元"), Some(100_050));
        assert_eq!(title_amount("收款到账通知"), None);
        assert_eq!(title_amount("付款0.01元"), None);
    }
}
