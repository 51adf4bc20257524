//! Payments read from the shop phone's notifications (`[intake]`): which wallet, how much.
//!
//! A pure function over what a forwarder app reports of one Android notification (the app's
//! package, its title and its text), beside the web session's detection in this module's
//! parent. The phone shows notices as text, so the rules are about text:
//!
//! - The posting app decides the wallet: `com.tencent.mm` (WeChat), `com.eg.android.AlipayGphone`
//!   (Alipay), `com.unionpay` (云闪付). Any other app is not a payment.
//! - Each kind of notice is one line of [`RULES`]: the app, what its title must be, and the
//!   words the amount follows, in the title or in the text. Wallets change their texts
//!   between versions (Alipay moved the amount from the text into the title once), so
//!   adding a notice is adding a line.
//! - The amount is read exactly, in fen, right after those words (`微信支付收款0.01元`,
//!   `向你付款0.01元`), never as "the last number of the text": remarks and shop names are
//!   free text. `￥1e5` and friends are no amount, and nothing above
//!   [`MAX_PAYMENT_FEN`] is one.
//! - Money going out uses the same titles (`微信支付` / `已支付¥0.01`): its text never holds
//!   a rule's words, so it never matches.
//!
//! Real notices, as phones show them (title / text):
//!
//! | wallet | title | text |
//! |---|---|---|
//! | WeChat | 微信支付, 微信收款助手, 微信收款商业版 | `微信支付收款0.01元(朋友到店)`; stacked: `[3条]微信支付: 微信支付收款1.17元(朋友到店)` |
//! | Alipay | 收钱码到账通知 | `成功收款0.01元。享免费提现等更多专属服务，点击查看` |
//! | Alipay | 收款通知 | `某某通过扫码向你付款0.01元` |
//! | Alipay | `你已成功收款0.01元` | `立即查看今日收款金额>>` (the amount in the title) |
//! | Alipay (staff) | 支付宝通知, or containing 店员通 | `支付宝成功收款1.00元。` |
//! | 云闪付 | 消息推送 | containing `云闪付收款` and the amount |
//!
//! An Alipay transfer notice (`向你转了1笔钱`) carries no amount: it is logged ("check the
//! phone"), not said, since an announcement without an amount tells the counter nothing
//! the phone does not.

use std::fmt;

use super::Wallet;
use crate::money::{AmountError, MAX_PAYMENT_FEN, Yuan, scan_amount};

pub const WECHAT_APP: &str = "com.tencent.mm";
pub const ALIPAY_APP: &str = "com.eg.android.AlipayGphone";
pub const UNIONPAY_APP: &str = "com.unionpay";

/// What a rule asks of the notification's title.
#[derive(Debug, Clone, Copy)]
enum Title {
    /// Exactly one of these (trimmed).
    Is(&'static [&'static str]),
    /// Containing this.
    Contains(&'static str),
    /// Starting with this.
    StartsWith(&'static str),
}

impl Title {
    fn matches(self, title: &str) -> bool {
        match self {
            Title::Is(titles) => titles.contains(&title),
            Title::Contains(part) => title.contains(part),
            Title::StartsWith(start) => title.starts_with(start),
        }
    }
}

/// Where the amount stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Field {
    Title,
    Text,
}

/// One kind of payment notice.
#[derive(Debug, Clone, Copy)]
struct Rule {
    wallet: Wallet,
    app: &'static str,
    title: Title,
    /// The words the amount follows, in `field`.
    after: &'static str,
    field: Field,
}

const fn rule(
    wallet: Wallet,
    app: &'static str,
    title: Title,
    field: Field,
    after: &'static str,
) -> Rule {
    Rule {
        wallet,
        app,
        title,
        after,
        field,
    }
}

const WECHAT_TITLES: &[&str] = &["微信支付", "微信收款助手", "微信收款商业版"];

/// Every payment notice paysay knows, first match wins. One line each: wallet, app, title,
/// where the amount is, and the words it follows.
#[rustfmt::skip]
const RULES: &[Rule] = &[
    rule(Wallet::WeChat, WECHAT_APP, Title::Is(WECHAT_TITLES), Field::Text, "微信支付收款"),
    rule(Wallet::Alipay, ALIPAY_APP, Title::Is(&["收钱码到账通知"]), Field::Text, "成功收款"),
    rule(Wallet::Alipay, ALIPAY_APP, Title::Is(&["收款通知"]), Field::Text, "向你付款"),
    rule(Wallet::Alipay, ALIPAY_APP, Title::StartsWith("你已成功收款"), Field::Title, "成功收款"),
    rule(Wallet::Alipay, ALIPAY_APP, Title::Is(&["支付宝通知"]), Field::Text, "成功收款"),
    rule(Wallet::Alipay, ALIPAY_APP, Title::Contains("店员通"), Field::Text, "成功收款"),
    rule(Wallet::UnionPay, UNIONPAY_APP, Title::Is(&["消息推送"]), Field::Text, "云闪付收款"),
];

/// Characters that may stand between a rule's words and the amount: `云闪付收款到账：0.01元`
/// has a few; a remark never comes before the amount in these notices.
const MAX_GAP_CHARS: usize = 6;

/// A payment read from a notice.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NoticePayment {
    pub wallet: Wallet,
    pub amount_fen: u64,
}

/// A notice that looked like a payment but whose amount cannot be read: logged, with
/// "check the phone".
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NoticeError {
    #[error("a {wallet} payment notice whose amount cannot be read ({detail}); check the phone")]
    Amount { wallet: Wallet, detail: String },
    #[error("a {wallet} payment notice of {} yuan, more than any payment can be; check the phone", Yuan(*amount_fen))]
    TooLarge { wallet: Wallet, amount_fen: u64 },
    #[error("an Alipay transfer notice without its amount; check the phone")]
    TransferWithoutAmount,
}

/// Reads one notification. `Ok(None)`: not a payment (another app, a chat, money going out).
pub fn read_notice(
    app: &str,
    title: &str,
    text: &str,
) -> Result<Option<NoticePayment>, NoticeError> {
    let (title, text) = (title.trim(), text.trim());
    for rule in RULES.iter().filter(|r| r.app == app.trim()) {
        if !rule.title.matches(title) {
            continue;
        }
        let field = match rule.field {
            Field::Title => title,
            Field::Text => text,
        };
        let Some(at) = field.find(rule.after) else {
            continue;
        };
        let amount_fen = amount_after(&field[at + rule.after.len()..]).map_err(|detail| {
            NoticeError::Amount {
                wallet: rule.wallet,
                detail,
            }
        })?;
        if amount_fen > MAX_PAYMENT_FEN {
            return Err(NoticeError::TooLarge {
                wallet: rule.wallet,
                amount_fen,
            });
        }
        return Ok(Some(NoticePayment {
            wallet: rule.wallet,
            amount_fen,
        }));
    }
    if app.trim() == ALIPAY_APP && text.contains("向你转了") {
        return Err(NoticeError::TransferWithoutAmount);
    }
    Ok(None)
}

/// The amount right after a rule's words, a few connecting characters (`到账：`) allowed.
fn amount_after(rest: &str) -> Result<u64, String> {
    let starts: Vec<usize> = rest
        .char_indices()
        .map(|(i, _)| i)
        .take(MAX_GAP_CHARS + 1)
        .collect();
    for start in starts {
        let here = &rest[start..];
        if !here.starts_with(|c: char| c.is_ascii_digit() || c == '￥' || c == '¥') {
            continue;
        }
        return match scan_amount(here) {
            Ok(Some((fen, _))) => Ok(fen),
            Ok(None) => Err(format!("no amount in {:?}", excerpt(rest))),
            Err(e) => Err(amount_error(&e)),
        };
    }
    Err(format!("no amount in {:?}", excerpt(rest)))
}

fn amount_error(e: &AmountError) -> String {
    e.to_string()
}

/// The start of a text, for an error message (escaped where it is logged).
fn excerpt(text: &str) -> String {
    text.chars().take(24).collect()
}

impl fmt::Display for NoticePayment {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.wallet, Yuan(self.amount_fen))
    }
}

/// SmsForwarder's default text template for an app's notice, `[content]` when no template
/// of the shop's own is set: the package, the text (which may span lines), the title,
/// `UID：n`, the time and the device, one per line. `(title, text)`, or `None` when the
/// content is not laid out that way (a template of the shop's own: then it is the text).
pub fn split_smsforwarder_content(content: &str) -> Option<(String, String)> {
    let lines: Vec<&str> = content.lines().collect();
    let uid = lines
        .iter()
        .rposition(|l| l.trim_start().starts_with("UID："))?;
    // Package, at least one line of text, the title, then UID.
    if uid < 3 {
        return None;
    }
    let title = lines[uid - 1].trim().to_string();
    let text = lines[1..uid - 1].join("\n").trim().to_string();
    Some((title, text))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn paid(wallet: Wallet, fen: u64) -> Result<Option<NoticePayment>, NoticeError> {
        Ok(Some(NoticePayment {
            wallet,
            amount_fen: fen,
        }))
    }

    #[test]
    fn real_notices_read_as_their_wallet_and_exact_amount() {
        use Wallet::*;
        let cases = [
            (
                WECHAT_APP,
                "微信支付",
                "微信支付收款0.01元(朋友到店)",
                paid(WeChat, 1),
            ),
            (
                WECHAT_APP,
                "微信支付",
                "[3条]微信支付: 微信支付收款1.17元(朋友到店)",
                paid(WeChat, 117),
            ),
            (
                WECHAT_APP,
                "微信收款助手",
                "微信支付收款12.50元(朋友到店)",
                paid(WeChat, 1250),
            ),
            (
                WECHAT_APP,
                "微信收款商业版",
                "微信支付收款1,234.56元",
                paid(WeChat, 123_456),
            ),
            (
                ALIPAY_APP,
                "收钱码到账通知",
                "成功收款0.01元。享免费提现等更多专属服务，点击查看",
                paid(Alipay, 1),
            ),
            (
                ALIPAY_APP,
                "收款通知",
                "某某通过扫码向你付款0.01元",
                paid(Alipay, 1),
            ),
            (
                ALIPAY_APP,
                "你已成功收款0.01元",
                "立即查看今日收款金额>>",
                paid(Alipay, 1),
            ),
            (
                ALIPAY_APP,
                "你已成功收款20.00元",
                "立即查看余额情况",
                paid(Alipay, 2000),
            ),
            (
                ALIPAY_APP,
                "支付宝通知",
                "支付宝成功收款1.00元。",
                paid(Alipay, 100),
            ),
            (
                ALIPAY_APP,
                "店员通",
                "支付宝成功收款1.00元。",
                paid(Alipay, 100),
            ),
            (
                ALIPAY_APP,
                "支付宝店员通",
                "支付宝成功收款3.50元。",
                paid(Alipay, 350),
            ),
            (
                UNIONPAY_APP,
                "消息推送",
                "云闪付收款0.01元",
                paid(UnionPay, 1),
            ),
            (
                UNIONPAY_APP,
                "消息推送",
                "云闪付收款到账：8.80元，点击查看",
                paid(UnionPay, 880),
            ),
        ];
        for (app, title, text, want) in cases {
            assert_eq!(read_notice(app, title, text), want, "{title} / {text}");
        }
    }

    #[test]
    fn money_going_out_chats_and_other_apps_are_no_payment() {
        for (app, title, text) in [
            (WECHAT_APP, "微信支付", "已支付¥0.01"),
            (WECHAT_APP, "微信支付", "微信支付凭证：已支付¥12.50"),
            // A contact's name as the title: a chat.
            (WECHAT_APP, "张三", "微信支付收款100元"),
            (WECHAT_APP, "微信支付", "你好"),
            ("com.tencent.mobileqq", "微信支付", "微信支付收款1.00元"),
            ("com.example.sms", "收款通知", "某某通过扫码向你付款0.01元"),
            (ALIPAY_APP, "支付宝", "余额宝收益到账0.01元"),
            (UNIONPAY_APP, "消息推送", "您有一笔优惠券即将到期"),
            ("", "", ""),
        ] {
            assert_eq!(
                read_notice(app, title, text),
                Ok(None),
                "{app} {title} {text}"
            );
        }
    }

    #[test]
    fn amounts_that_cannot_be_read_are_said_to_be_unreadable_not_guessed() {
        for text in [
            "微信支付收款1e5元",
            "微信支付收款1.5.3元",
            "微信支付收款元",
            "微信支付收款12.50abc",
        ] {
            assert!(
                matches!(
                    read_notice(WECHAT_APP, "微信支付", text),
                    Err(NoticeError::Amount { .. })
                ),
                "{text}"
            );
        }
        assert_eq!(
            read_notice(WECHAT_APP, "微信支付", "微信支付收款100000000.01元"),
            Err(NoticeError::TooLarge {
                wallet: Wallet::WeChat,
                amount_fen: 10_000_000_001
            })
        );
        assert_eq!(
            read_notice(ALIPAY_APP, "支付宝", "某某向你转了1笔钱"),
            Err(NoticeError::TransferWithoutAmount)
        );
    }

    #[test]
    fn smsforwarder_default_content_splits_into_title_and_text() {
        let content = "com.eg.android.AlipayGphone\n成功收款0.01元。享免费提现等更多专属服务，点击查看\n收钱码到账通知\nUID：10086\n2024-05-01 12:00:00\nRedmi Note";
        assert_eq!(
            split_smsforwarder_content(content),
            Some((
                "收钱码到账通知".to_string(),
                "成功收款0.01元。享免费提现等更多专属服务，点击查看".to_string()
            ))
        );
        let two_lines = "com.tencent.mm\n[2条]微信支付:\n微信支付收款1.00元\n微信支付\nUID：0\n2024-05-01 12:00:00\nPixel";
        assert_eq!(
            split_smsforwarder_content(two_lines),
            Some((
                "微信支付".to_string(),
                "[2条]微信支付:\n微信支付收款1.00元".to_string()
            ))
        );
        assert_eq!(split_smsforwarder_content("微信支付收款1.00元"), None);
    }
}
