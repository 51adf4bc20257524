//! Payment detection against real and derived notices, one row per rule.
//!
//! Each XML fixture is wrapped in a `Message` the way the web client delivers it
//! (HTML-escaped, newlines as `<br/>`, a `@member:<br/>` prefix in groups) and, separately,
//! as the raw XML other clients capture; both must give the same answer.

use std::path::PathBuf;

use paysay::config::PaymentsConfig;
use paysay::payment::{Detector, Payment, PaymentError, PaymentKind};
use paysay::protocol::{Contact, Message, SyncResponse};

/// The logged-in account (its per-session user name).
const OWN: &str = "@me0000000000000000000000000000000000000000000000000000000000000000";
const OFFICIAL: &str = "@ff802473e3aad986d24443a5d379203c";
const PERSON: &str = "@a1b2c3d4e5f60718293a4b5c6d7e8f90a1b2c3d4e5f60718293a4b5c6d7e8f90";
const GROUP: &str = "@@0f1e2d3c4b5a69788796a5b4c3d2e1f00f1e2d3c4b5a69788796a5b4c3d2e1f0";
const MEMBER: &str = "@77aa88bb99cc00dd11ee22ff33aa44bb55cc66dd77ee88ff99aa00bb11cc22dd";
const CREATE_TIME: i64 = 1_714_528_800;

fn fixture(name: &str) -> String {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/payments")
        .join(name);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Who a message comes from.
#[derive(Debug, Clone, Copy)]
enum From {
    /// A verified official account (VerifyFlag 24) with this name.
    Official(&'static str),
    /// An ordinary contact with this nickname.
    Person(&'static str),
    /// A member of a group, posting in the group.
    GroupMember,
    /// The logged-in account itself.
    Own,
}

impl From {
    fn user_name(self) -> &'static str {
        match self {
            From::Official(_) => OFFICIAL,
            From::Person(_) => PERSON,
            From::GroupMember => GROUP,
            From::Own => OWN,
        }
    }

    fn contact(self) -> Contact {
        let (nick, verify_flag) = match self {
            From::Official(name) => (name, 24),
            From::Person(name) => (name, 0),
            From::GroupMember => ("店铺群", 0),
            From::Own => ("店长", 0),
        };
        Contact {
            user_name: self.user_name().to_string(),
            nick_name: nick.to_string(),
            verify_flag,
            ..Contact::default()
        }
    }
}

/// What the web client does to app-message XML.
fn web_escape(xml: &str) -> String {
    xml.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('\n', "<br/>")
}

fn message(content: String, app_msg_type: u32, from: From) -> Message {
    Message {
        msg_id: "7700000000000000001".into(),
        from_user_name: from.user_name().into(),
        to_user_name: if matches!(from, From::Own) {
            PERSON.into()
        } else {
            OWN.into()
        },
        msg_type: 49,
        content,
        status: 3,
        create_time: CREATE_TIME,
        app_msg_type,
        ..Message::default()
    }
}

/// The fixture as the web client would deliver it, and as raw XML.
fn messages(xml: &str, app_msg_type: u32, from: From) -> Vec<(&'static str, Message)> {
    let prefix = |body: String| match from {
        From::GroupMember => format!("{MEMBER}:<br/>{body}"),
        _ => body,
    };
    let raw_prefix = |body: String| match from {
        From::GroupMember => format!("{MEMBER}:\n{body}"),
        _ => body,
    };
    vec![
        ("web", message(prefix(web_escape(xml)), app_msg_type, from)),
        (
            "raw",
            message(raw_prefix(xml.to_string()), app_msg_type, from),
        ),
    ]
}

#[derive(Debug)]
enum Expect {
    Paid {
        fen: u64,
        kind: PaymentKind,
        payer: Option<&'static str>,
        remark: Option<&'static str>,
    },
    Nothing,
    Unreadable,
}

use Expect::*;

fn paid(fen: u64, kind: PaymentKind) -> Expect {
    Paid {
        fen,
        kind,
        payer: None,
        remark: None,
    }
}

fn check(
    label: &str,
    got: Result<Option<Payment>, PaymentError>,
    expect: &Expect,
    msg: &Message,
    from: From,
) {
    match (expect, got) {
        (Nothing, Ok(None)) | (Unreadable, Err(_)) => {}
        (
            Paid {
                fen,
                kind,
                payer,
                remark,
            },
            Ok(Some(p)),
        ) => {
            assert_eq!(p.amount_fen, *fen, "{label}: amount");
            assert_eq!(p.kind, *kind, "{label}: kind");
            assert_eq!(p.payer.as_deref(), *payer, "{label}: payer");
            assert_eq!(p.remark.as_deref(), *remark, "{label}: remark");
            assert_eq!(p.msg_id, msg.msg_id, "{label}: msg_id");
            assert_eq!(p.time, msg.create_time, "{label}: time");
            assert_eq!(p.account, from.contact().nick_name, "{label}: account");
        }
        (expect, got) => panic!("{label}: expected {expect:?}, got {got:?}"),
    }
}

/// A config with every kind switched on, so that "nothing" means the rule, not a switch.
fn all_on() -> PaymentsConfig {
    PaymentsConfig {
        red_packets: true,
        group_collections: true,
        ..PaymentsConfig::default()
    }
}

struct Case {
    fixture: &'static str,
    app_msg_type: u32,
    from: From,
    expect: Expect,
}

fn case(fixture: &'static str, app_msg_type: u32, from: From, expect: Expect) -> Case {
    Case {
        fixture,
        app_msg_type,
        from,
        expect,
    }
}

#[test]
fn fixtures_table() {
    use PaymentKind::*;
    let wxpay = From::Official("微信支付");
    let zhang = From::Person("张三");
    let cases = [
        // Real captures.
        case(
            "wxpay_personal_qr_2019.xml",
            5,
            wxpay,
            Paid {
                fen: 1,
                kind: Collection,
                payer: None,
                remark: Some("good"),
            },
        ),
        case(
            "cashier_assistant_clerk_2019.xml",
            5,
            From::Official("微信收款助手"),
            paid(1, ClerkCollection),
        ),
        case(
            "transfer_2018.xml",
            2000,
            zhang,
            Paid {
                fen: 1,
                kind: Transfer,
                payer: Some("张三"),
                remark: None,
            },
        ),
        case(
            "transfer_sent_paysubtype1_2019.xml",
            2000,
            zhang,
            Paid {
                fen: 10,
                kind: Transfer,
                payer: Some("张三"),
                remark: None,
            },
        ),
        case(
            "transfer_accepted_paysubtype3_2019.xml",
            2000,
            zhang,
            Nothing,
        ),
        case(
            "transfer_accepted_paysubtype3_2019.xml",
            2000,
            From::Own,
            Nothing,
        ),
        case("red_packet_2018.xml", 2001, zhang, Nothing),
        // Wording, money and separator variants.
        case(
            "wxpay_2018_colon_des_only.xml",
            5,
            wxpay,
            paid(1250, Collection),
        ),
        // `1e5` is no amount: reading its first digit would announce ¥1.00.
        case("wxpay_exponent_amount.xml", 5, wxpay, Unreadable),
        case("wxpay_yen_u00a5_space.xml", 5, wxpay, paid(880, Collection)),
        case(
            "wxpay_business_thousands_separator.xml",
            5,
            From::Official("微信收款商业版"),
            paid(123_450, Collection),
        ),
        case("wxpay_one_decimal.xml", 5, wxpay, paid(1250, Collection)),
        case(
            "wxpay_merchant_integer_yuan.xml",
            5,
            From::Official("微信商家助手"),
            paid(10_000, Collection),
        ),
        case(
            "wxpay_crlf_des.xml",
            5,
            wxpay,
            Paid {
                fen: 660,
                kind: Collection,
                payer: None,
                remark: Some("谢谢老板"),
            },
        ),
        case(
            "wxpay_remark_with_amount.xml",
            5,
            wxpay,
            Paid {
                fen: 500,
                kind: Collection,
                payer: None,
                remark: Some("不要退款，另付￥100.00"),
            },
        ),
        case(
            "wxpay_ext_pay_info_only.xml",
            5,
            wxpay,
            paid(2500, Collection),
        ),
        // AppMsgType missing from the envelope: the XML's <type> decides.
        case("wxpay_one_decimal.xml", 0, wxpay, paid(1250, Collection)),
        // Same template, not a customer payment.
        case("wxpay_payment_receipt_outgoing.xml", 5, wxpay, Nothing),
        case("wxpay_refund.xml", 5, wxpay, Nothing),
        case("wxpay_refund_arrival_wording.xml", 5, wxpay, Nothing),
        case("wxpay_bill_reminder_not_a_payment.xml", 5, wxpay, Nothing),
        // Forgeries: the same XML from anyone but a verified, configured account.
        case(
            "wxpay_personal_qr_2019.xml",
            5,
            From::Person("微信支付"),
            Nothing,
        ),
        case(
            "wxpay_personal_qr_2019.xml",
            5,
            From::Official("微信支付宝小助手"),
            Nothing,
        ),
        case("wxpay_personal_qr_2019.xml", 5, From::GroupMember, Nothing),
        case(
            "cashier_assistant_clerk_2019.xml",
            5,
            From::Person("微信收款助手"),
            Nothing,
        ),
        // Unreadable notices from the real account are reported, not guessed.
        case("wxpay_personal_qr_2019_truncated.xml", 5, wxpay, Unreadable),
        case("wxpay_amounts_disagree.xml", 5, wxpay, Unreadable),
        // A truncated card from an ordinary contact is just not a payment.
        case("wxpay_personal_qr_2019_truncated.xml", 5, zhang, Nothing),
        // Transfers.
        case("transfer_returned_paysubtype4.xml", 2000, zhang, Nothing),
        case(
            "transfer_sent_paysubtype1_2019.xml",
            2000,
            From::Own,
            Nothing,
        ),
        case(
            "transfer_memo_with_amount_2024.xml",
            2000,
            zhang,
            Paid {
                fen: 100_000,
                kind: Transfer,
                payer: Some("张三"),
                remark: Some("房租，上月多给的￥99退我"),
            },
        ),
        case(
            "transfer_group_to_me.xml",
            2000,
            From::GroupMember,
            Paid {
                fen: 2000,
                kind: Transfer,
                payer: Some(MEMBER),
                remark: Some("房租，上月多给的￥99退我"),
            },
        ),
        case(
            "transfer_group_to_someone_else.xml",
            2000,
            From::GroupMember,
            Nothing,
        ),
        case(
            "transfer_group_paid_by_me.xml",
            2000,
            From::GroupMember,
            Nothing,
        ),
        // Red packets and group collections: only with an amount.
        case(
            "red_packet_with_amount.xml",
            2001,
            zhang,
            Paid {
                fen: 888,
                kind: RedPacket,
                payer: Some("张三"),
                remark: None,
            },
        ),
        case(
            "group_collection_no_amount.xml",
            2001,
            From::GroupMember,
            Nothing,
        ),
    ];
    let detector = Detector::new(&all_on());
    for c in &cases {
        let xml = fixture(c.fixture);
        for (how, msg) in messages(&xml, c.app_msg_type, c.from) {
            let label = format!("{} ({how}, from {:?})", c.fixture, c.from);
            let contact = c.from.contact();
            let got = detector.detect(&msg, Some(&contact), OWN);
            check(&label, got, &c.expect, &msg, c.from);
        }
    }
}

/// The web capture, exactly as webwxsync returned it.
fn web_capture() -> Message {
    let body = fixture("web_webwxsync_wxpay_2018.json");
    let sync: SyncResponse = serde_json::from_str(&body).expect("the capture is a webwxsync body");
    sync.add_msg_list
        .into_iter()
        .next()
        .expect("one message in the capture")
}

#[test]
fn web_capture_is_a_one_fen_collection_from_the_verified_account() {
    let msg = web_capture();
    let official = Contact {
        user_name: msg.from_user_name.clone(),
        nick_name: "微信支付".into(),
        verify_flag: 24,
        ..Contact::default()
    };
    let p = Detector::new(&PaymentsConfig::default())
        .detect(&msg, Some(&official), &msg.to_user_name)
        .expect("readable")
        .expect("a payment");
    assert_eq!(p.amount_fen, 1);
    assert_eq!(p.kind, PaymentKind::Collection);
    assert_eq!(p.msg_id, "4286233522359858164");
    assert_eq!(p.time, 1_530_522_194);
    assert_eq!(p.account, "微信支付");
    assert_eq!((p.daily_count, p.daily_total_fen), (Some(1), Some(1)));
    assert_eq!((p.payer, p.remark, p.transfer_id), (None, None, None));
}

#[test]
fn web_capture_from_a_forger_or_an_unknown_sender_is_nothing() {
    let msg = web_capture();
    let detector = Detector::new(&PaymentsConfig::default());
    let forger = Contact {
        user_name: msg.from_user_name.clone(),
        nick_name: "微信支付".into(),
        verify_flag: 0,
        ..Contact::default()
    };
    assert_eq!(
        detector.detect(&msg, Some(&forger), &msg.to_user_name),
        Ok(None)
    );
    assert_eq!(detector.detect(&msg, None, &msg.to_user_name), Ok(None));
    // The verified contact of somebody else does not vouch for this sender.
    let other = Contact {
        user_name: "@someoneelse".into(),
        nick_name: "微信支付".into(),
        verify_flag: 24,
        ..Contact::default()
    };
    assert_eq!(
        detector.detect(&msg, Some(&other), &msg.to_user_name),
        Ok(None)
    );
    // Sent by the logged-in account itself.
    assert_eq!(
        detector.detect(&msg, Some(&forger), &msg.from_user_name),
        Ok(None)
    );
}

#[test]
fn daily_summary_and_transfer_id_are_read() {
    let detector = Detector::new(&PaymentsConfig::default());
    let clerk = From::Official("微信收款助手");
    let msg = &messages(&fixture("cashier_assistant_clerk_2019.xml"), 5, clerk)[0].1;
    let p = detector
        .detect(msg, Some(&clerk.contact()), OWN)
        .unwrap()
        .unwrap();
    assert_eq!((p.daily_count, p.daily_total_fen), (Some(2), Some(2)));
    let biz = From::Official("微信收款商业版");
    let msg = &messages(&fixture("wxpay_business_thousands_separator.xml"), 5, biz)[0].1;
    let p = detector
        .detect(msg, Some(&biz.contact()), OWN)
        .unwrap()
        .unwrap();
    assert_eq!(
        (p.daily_count, p.daily_total_fen),
        (Some(12), Some(567_890))
    );

    let zhang = From::Person("张三");
    let sent = &messages(&fixture("transfer_sent_paysubtype1_2019.xml"), 2000, zhang)[0].1;
    let p = detector
        .detect(sent, Some(&zhang.contact()), OWN)
        .unwrap()
        .unwrap();
    assert_eq!(
        p.transfer_id.as_deref(),
        Some("1000050101201909111009170910447")
    );
    // The owner's name for a person is what the ledger shows as payer.
    let renamed = Contact {
        remark_name: "老张 (隔壁)".into(),
        ..zhang.contact()
    };
    let p = detector.detect(sent, Some(&renamed), OWN).unwrap().unwrap();
    assert_eq!(p.payer.as_deref(), Some("老张 (隔壁)"));
    assert_eq!(p.account, "老张 (隔壁)");
}

#[test]
fn switched_off_kinds_are_nothing() {
    let off = Detector::new(&PaymentsConfig {
        collections: false,
        transfers: false,
        red_packets: false,
        group_collections: false,
        ..PaymentsConfig::default()
    });
    for (name, app_type, from) in [
        ("wxpay_personal_qr_2019.xml", 5, From::Official("微信支付")),
        ("transfer_2018.xml", 2000, From::Person("张三")),
        ("red_packet_with_amount.xml", 2001, From::Person("张三")),
    ] {
        for (how, msg) in messages(&fixture(name), app_type, from) {
            assert_eq!(
                off.detect(&msg, Some(&from.contact()), OWN),
                Ok(None),
                "{name} ({how})"
            );
        }
    }
    // Red packets are off by default.
    let default = Detector::new(&PaymentsConfig::default());
    let zhang = From::Person("张三");
    let msg = &messages(&fixture("red_packet_with_amount.xml"), 2001, zhang)[0].1;
    assert_eq!(default.detect(msg, Some(&zhang.contact()), OWN), Ok(None));
}

#[test]
fn accounts_come_from_the_config() {
    let only_assistant = Detector::new(&PaymentsConfig {
        accounts: vec!["微信收款助手".into()],
        ..PaymentsConfig::default()
    });
    let wxpay = From::Official("微信支付");
    let msg = &messages(&fixture("wxpay_personal_qr_2019.xml"), 5, wxpay)[0].1;
    assert_eq!(
        only_assistant.detect(msg, Some(&wxpay.contact()), OWN),
        Ok(None)
    );
}

#[test]
fn system_texts_and_other_message_types_are_nothing() {
    let detector = Detector::new(&all_on());
    let mut msg = message("收到红包，请在手机上查看".into(), 0, From::Person("张三"));
    msg.msg_type = 10000;
    assert_eq!(detector.detect(&msg, None, OWN), Ok(None));
    let mut text = message("收款金额￥5.00".into(), 0, From::Official("微信支付"));
    text.msg_type = 1;
    assert_eq!(
        detector.detect(&text, Some(&From::Official("微信支付").contact()), OWN),
        Ok(None)
    );
}

#[test]
fn huge_content_from_the_payment_account_is_refused() {
    let wxpay = From::Official("微信支付");
    let mut xml = fixture("wxpay_personal_qr_2019.xml");
    xml.push_str(&" ".repeat(paysay::payment::MAX_CONTENT_BYTES));
    let msg = message(xml, 5, wxpay);
    let got = Detector::new(&all_on()).detect(&msg, Some(&wxpay.contact()), OWN);
    assert!(matches!(got, Err(PaymentError::TooLarge { .. })), "{got:?}");
}
