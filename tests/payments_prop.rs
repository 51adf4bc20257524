//! Property tests: the detector never panics on what the network may send, and an amount
//! written any way WeChat writes it reads back as the exact fen.

use paysay::config::PaymentsConfig;
use paysay::money::MAX_PAYMENT_FEN;
use paysay::payment::{Detector, PaymentError, parse_amount_fen};
use paysay::protocol::{Contact, Message};
use proptest::prelude::*;

const OWN: &str = "@me";
const SENDER: &str = "@sender";

fn detector() -> Detector {
    Detector::new(&PaymentsConfig {
        red_packets: true,
        group_collections: true,
        ..PaymentsConfig::default()
    })
}

fn official() -> Contact {
    Contact {
        user_name: SENDER.into(),
        nick_name: "微信支付".into(),
        verify_flag: 24,
        ..Contact::default()
    }
}

fn message(content: String, app_msg_type: u32) -> Message {
    Message {
        msg_id: "1".into(),
        from_user_name: SENDER.into(),
        to_user_name: OWN.into(),
        msg_type: 49,
        content,
        app_msg_type,
        ..Message::default()
    }
}

fn web_escape(xml: &str) -> String {
    xml.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('\n', "<br/>")
}

const SEED: &str = include_str!("fixtures/payments/wxpay_personal_qr_2019.xml");
const TRANSFER: &str = include_str!("fixtures/payments/transfer_memo_with_amount_2024.xml");

/// `fen` written as WeChat might: sign, space, thousands separators, decimals, `元`.
fn written(fen: u64, sign: usize, space: bool, commas: bool, yuan: bool) -> String {
    let (whole, cents) = (fen / 100, fen % 100);
    let mut digits = whole.to_string();
    if commas {
        let mut grouped = String::new();
        for (i, c) in digits.chars().enumerate() {
            if i > 0 && (digits.len() - i) % 3 == 0 {
                grouped.push(',');
            }
            grouped.push(c);
        }
        digits = grouped;
    }
    let decimals = match (cents, cents % 10) {
        (0, _) => String::new(),
        (_, 0) => format!(".{}", cents / 10),
        _ => format!(".{cents:02}"),
    };
    let sign = ["", "￥", "¥"][sign];
    let space = if space && !sign.is_empty() { " " } else { "" };
    let yuan = if yuan { "元" } else { "" };
    format!("{sign}{space}{digits}{decimals}{yuan}")
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn never_panics_on_arbitrary_content(content in any::<String>(), app_type in prop::sample::select(vec![0u32, 5, 2000, 2001])) {
        let _ = detector().detect(&message(content, app_type), Some(&official()), OWN);
    }

    #[test]
    fn never_panics_on_mutated_notices(
        cut in 0usize..SEED.len(),
        at in 0usize..SEED.len(),
        junk in "(&[a-z#0-9]{0,6};?|<!\\[CDATA\\[|\\]\\]>|<br/>|</?[a-z]{1,8}>|[\\u{0}-\\u{10FFFF}]{0,4}|￥[0-9,.]{0,8})",
        escape in any::<bool>(),
        transfer in any::<bool>(),
    ) {
        let seed = if transfer { TRANSFER } else { SEED };
        let floor = |i: usize| (0..=i.min(seed.len())).rev().find(|&j| seed.is_char_boundary(j)).unwrap_or(0);
        let (cut, at) = (floor(cut), floor(at));
        let mut xml = seed[..cut.max(at)].to_string();
        xml.insert_str(at, &junk);
        let content = if escape { web_escape(&xml) } else { xml };
        let _ = detector().detect(&message(content, if transfer { 2000 } else { 5 }), Some(&official()), OWN);
    }

    #[test]
    fn written_amounts_read_back_exactly(
        fen in 0u64..100_000_000_000,
        sign in 0usize..3,
        space in any::<bool>(),
        commas in any::<bool>(),
        yuan in any::<bool>(),
    ) {
        let text = written(fen, sign, space, commas, yuan);
        prop_assert_eq!(parse_amount_fen(&text), Ok(fen), "{}", text);
    }

    #[test]
    fn a_notice_carries_its_amount_to_the_payment(fen in 1u64..=MAX_PAYMENT_FEN, sign in 1usize..3, commas in any::<bool>()) {
        let amount = written(fen, sign, false, commas, false);
        let xml = SEED.replace("￥0.01", &amount).replace("0.01元", "");
        let p = detector()
            .detect(&message(web_escape(&xml), 5), Some(&official()), OWN)
            .map_err(|e| TestCaseError::fail(e.to_string()))?;
        prop_assert_eq!(p.map(|p| p.amount_fen), Some(fen), "{}", amount);
    }

    #[test]
    fn a_notice_of_more_than_any_payment_is_refused(fen in MAX_PAYMENT_FEN + 1.., sign in 1usize..3, commas in any::<bool>()) {
        let amount = written(fen, sign, false, commas, false);
        let xml = SEED.replace("￥0.01", &amount).replace("0.01元", "");
        let found = detector().detect(&message(web_escape(&xml), 5), Some(&official()), OWN);
        prop_assert!(matches!(found, Err(PaymentError::Amount { .. })), "{}: {:?}", amount, found);
    }
}
