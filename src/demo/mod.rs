//! `paysay demo`: the real daemon against the built-in WeChat simulator, which "scans" its
//! own QR code and delivers a few payments (plus a forgery and a redelivery that must stay
//! silent), so a newcomer hears paysay work with no account and no config. The demo also
//! plays the shop's phone: an Alipay payment forwarded the SmsForwarder way, and a WeChat
//! payment heard both from WeChat and from the phone, said once. Each payment also goes out
//! as a signed event to a webhook receiver the demo runs itself.

mod receiver;

use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;

use crate::audio::PlayerHandle;
use crate::config::Config;
use crate::daemon;
use crate::ledger::{Entry, Ledger};
use crate::money::Yuan;
use crate::paths::Paths;
use crate::speech::{Speech, SpeechStats};
use wechat_sim::{Endpoint, SimConfig, Simulator};

/// Why the demo did not finish.
#[derive(Debug, thiserror::Error)]
pub enum DemoError {
    #[error("cannot start the WeChat simulator: {0}")]
    Simulator(std::io::Error),
    #[error("cannot start the demo's webhook receiver: {0}")]
    Receiver(std::io::Error),
    #[error("the demo's phone could not reach paysay's intake: {0}")]
    Phone(String),
    #[error("cannot make a scratch directory for the demo: {0}")]
    Scratch(std::io::Error),
    #[error(transparent)]
    Daemon(#[from] daemon::DaemonError),
    #[error("cannot set up speech: {0}")]
    Speech(#[from] crate::speech::TtsError),
    #[error(transparent)]
    Ledger(#[from] crate::ledger::LedgerError),
    #[error(
        "only {heard} of {expected} payments were announced within {secs} s; the log above says why (no sound device? try `paysay demo --dry-run`, or `paysay doctor`)"
    )]
    NotHeard {
        heard: usize,
        expected: usize,
        secs: u64,
    },
    #[error(
        "only {sent} of {expected} payment events reached the demo's webhook within {secs} s; the log above says why"
    )]
    NotSent {
        sent: usize,
        expected: usize,
        secs: u64,
    },
}

/// The amounts the demo's customers pay, in fen, and who pays by transfer.
const PAYMENTS: &[(Option<&str>, u64)] = &[
    (None, 1250),
    (None, 1),
    (Some("张三"), 20000),
    (None, 10005),
];
const PATIENCE: Duration = Duration::from_secs(120);

/// Runs the demo to the end: every real payment announced once, then a clean stop.
pub async fn run(
    mut config: Config,
    paths: Paths,
    player: PlayerHandle,
) -> Result<Vec<Entry>, DemoError> {
    let sim = Simulator::start(SimConfig {
        long_poll: Duration::from_secs(5),
        auto_login: Some(Duration::from_millis(700)),
        ..SimConfig::default()
    })
    .await
    .map_err(DemoError::Simulator)?;
    let scratch = tempfile::tempdir().map_err(DemoError::Scratch)?;
    let paths = paths.with_state_dir(scratch.path());
    config.wechat.base_url = Some(sim.base_url());
    config.wechat.qr_path = None;
    config.ledger.path = None;
    // The demo's payments are not real: they must never reach the shop's own webhook, V免签
    // (which would confirm an order) or broker (whose speakers would say them). Its events go
    // to a receiver of its own instead.
    let receiver = receiver::Receiver::start()
        .await
        .map_err(DemoError::Receiver)?;
    config.webhooks = vec![receiver.webhook()];
    config.vmq = Default::default();
    config.mqtt = None;
    // The demo plays the shop's phone too, on a port of this computer only.
    let phone_secret = crate::mqtt::random_client_id("demo");
    config.intake = Some(crate::config::IntakeConfig {
        listen: std::net::SocketAddr::from(([127, 0, 0, 1], 0)),
        secret: phone_secret.clone(),
        ..Default::default()
    });
    println!(
        "paysay demo: a simulated WeChat at {} — the phone scans the QR code by itself.",
        sim.base_url()
    );

    // The demo's page on a free port of this computer: never the shop's port or the LAN.
    config.web.listen = std::net::SocketAddr::from(([127, 0, 0, 1], 0));

    let speech = ready_voice(&config, &paths).await?;
    let said = speech.stats();
    let shutdown = CancellationToken::new();
    let daemon = daemon::Daemon::new(config, paths.clone())
        .player(player)
        .speech(speech);
    #[cfg(feature = "web")]
    let daemon = {
        let (tx, rx) = tokio::sync::oneshot::channel();
        tokio::spawn(async move {
            if let Ok(addr) = rx.await {
                println!("  watch it on the shop's page: http://{addr}/");
            }
        });
        daemon.on_web_listening(tx)
    };
    let (intake_tx, intake_rx) = tokio::sync::oneshot::channel();
    let daemon = tokio::spawn(daemon.on_intake_listening(intake_tx).run(shutdown.clone()));
    let phone = intake_rx.await.ok().map(|addr| Phone {
        addr,
        secret: phone_secret,
    });
    let expected = match play_customers(&sim, phone.as_ref()).await {
        Ok(expected) => expected,
        Err(e) => {
            shutdown.cancel();
            let _ = daemon.await;
            return Err(e);
        }
    };
    let result = wait_until_heard(&paths, expected, &daemon).await;
    let result = match result {
        Ok(entries) => wait_until_sent(&receiver, expected, &daemon)
            .await
            .map(|()| entries),
        Err(e) => Err(e),
    };
    shutdown.cancel();
    match daemon.await {
        Ok(Err(e)) => return Err(e.into()),
        Err(e) => tracing::error!(error = %e, "the daemon task failed"),
        Ok(Ok(())) => {}
    }
    sim.shutdown().await;
    if result.is_ok() {
        print_how_said(&said);
    }
    result
}

/// The shop's voice with its bank ready, built now on a first run, so that the demo's
/// amounts, never said before, are composed at once as a shop's first payments would be.
async fn ready_voice(config: &Config, paths: &Paths) -> Result<Speech, DemoError> {
    let speech = Speech::from_config(&config.speech, paths.tts_cache_dir())?;
    if speech.bank_wanted() {
        println!("  first run: building the voice bank (each word said once, then kept)…");
        match speech.build_bank(None).await {
            Ok(m) => println!(
                "  voice bank ready: {} clips by {} in {:.1} s; new amounts are composed from it",
                m.tokens.len(),
                m.backend,
                m.build_secs
            ),
            Err(e) => println!("  no voice bank ({e}); new amounts wait for a voice"),
        }
    }
    Ok(speech)
}

fn print_how_said(said: &SpeechStats) {
    let later = if said.composed() > 0 {
        "; the whole phrase of each composed amount is synthesized in the background, for next time"
    } else {
        ""
    };
    println!(
        "  how they were said: {} composed at once from the voice bank's clips (amounts not said before), {} as whole phrases from the cache{later}",
        said.composed(),
        said.phrases()
    );
}

/// The shop's afternoon: payments, a forgery, a redelivery, and two payments heard from
/// the phone. Returns how many payments are real.
async fn play_customers(sim: &Simulator, phone: Option<&Phone>) -> Result<usize, DemoError> {
    // The daemon is logged in once it syncs.
    sim.wait_for_requests(Endpoint::SyncCheck, 1, PATIENCE)
        .await;
    let mut first = None;
    for (payer, fen) in PAYMENTS {
        tokio::time::sleep(Duration::from_millis(800)).await;
        let id = match payer {
            Some(name) => {
                println!("  {name} sends a transfer of {} yuan", Yuan(*fen));
                sim.transfer(name, *fen)
            }
            None => {
                println!("  a customer pays {} yuan by QR code", Yuan(*fen));
                sim.pay(*fen)
            }
        };
        first.get_or_insert(id);
        if *fen == 1 {
            println!(
                "  a friend renamed \"微信支付\" sends a fake notice of 999 yuan (must stay silent)"
            );
            sim.forged_payment(99900);
            if let Some(id) = &first {
                println!("  WeChat delivers the first payment again (must not be said twice)");
                sim.redeliver(id);
            }
        }
    }
    let Some(phone) = phone else {
        return Ok(PAYMENTS.len());
    };
    tokio::time::sleep(Duration::from_millis(800)).await;
    println!(
        "  a customer pays 6.60 yuan with Alipay: the shop's phone forwards the notice (SmsForwarder)"
    );
    phone
        .forward(
            "com.eg.android.AlipayGphone",
            "收钱码到账通知",
            "成功收款6.60元。享免费提现等更多专属服务，点击查看",
        )
        .await?;
    tokio::time::sleep(Duration::from_millis(800)).await;
    println!(
        "  a customer pays 8.80 yuan by WeChat: WeChat and the phone both tell paysay (said once)"
    );
    phone
        .forward("com.tencent.mm", "微信支付", "微信支付收款8.80元(朋友到店)")
        .await?;
    sim.pay(880);
    Ok(PAYMENTS.len() + 2)
}

/// The shop's phone as SmsForwarder makes it speak: its webhook, signed with the secret.
struct Phone {
    addr: std::net::SocketAddr,
    secret: String,
}

impl Phone {
    /// Forwards one notification in the JSON template the README gives.
    async fn forward(&self, app: &str, title: &str, text: &str) -> Result<(), DemoError> {
        // SmsForwarder signs the millisecond timestamp alone, and paysay refuses a signature
        // it has seen (a replay): two notices in one second must not share one.
        let millis = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis());
        tokio::time::sleep(std::time::Duration::from_millis(2)).await;
        let timestamp = millis.to_string();
        let sign = crate::intake::sign::smsforwarder_sign(&self.secret, &timestamp);
        let body = serde_json::json!({
            "from": app, "title": title, "content": text, "timestamp": timestamp, "sign": sign,
        });
        let reply = reqwest::Client::new()
            .post(format!("http://{}/intake/smsforwarder", self.addr))
            .header("content-type", "application/json")
            .body(body.to_string())
            .send()
            .await
            .map_err(|e| DemoError::Phone(crate::error_chain(&e)))?;
        if !reply.status().is_success() {
            return Err(DemoError::Phone(format!("answered {}", reply.status())));
        }
        Ok(())
    }
}

/// Watches the demo's ledger until `expected` payments are announced.
async fn wait_until_heard(
    paths: &Paths,
    expected: usize,
    daemon: &tokio::task::JoinHandle<Result<(), daemon::DaemonError>>,
) -> Result<Vec<Entry>, DemoError> {
    let started = Instant::now();
    loop {
        let ledger = Ledger::open(&paths.ledger_db())?;
        let entries = ledger.entries(0, i64::MAX)?;
        let heard = entries.iter().filter(|e| e.announced_at.is_some()).count();
        if heard >= expected || daemon.is_finished() || started.elapsed() > PATIENCE {
            if heard < expected {
                return Err(DemoError::NotHeard {
                    heard,
                    expected,
                    secs: PATIENCE.as_secs(),
                });
            }
            return Ok(entries);
        }
        drop(ledger);
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Waits until the demo's webhook has `expected` events: delivery follows the ledger's
/// commit by milliseconds, so this is short.
async fn wait_until_sent(
    receiver: &receiver::Receiver,
    expected: usize,
    daemon: &tokio::task::JoinHandle<Result<(), daemon::DaemonError>>,
) -> Result<(), DemoError> {
    let started = Instant::now();
    loop {
        let sent = receiver.events();
        if sent >= expected {
            return Ok(());
        }
        if daemon.is_finished() || started.elapsed() > PATIENCE {
            return Err(DemoError::NotSent {
                sent,
                expected,
                secs: PATIENCE.as_secs(),
            });
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
