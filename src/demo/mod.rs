//! `paysay demo`: the real daemon against the built-in WeChat simulator, which "scans" its
//! own QR code and delivers a few payments (plus a forgery and a redelivery that must stay
//! silent), so a newcomer hears paysay work with no account and no config. Each payment also
//! goes out as a signed event to a webhook receiver the demo runs itself.

mod receiver;

use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;

use crate::audio::PlayerHandle;
use crate::config::Config;
use crate::daemon;
use crate::ledger::{Entry, Ledger};
use crate::money::Yuan;
use crate::paths::Paths;
use wechat_sim::{Endpoint, SimConfig, Simulator};

/// Why the demo did not finish.
#[derive(Debug, thiserror::Error)]
pub enum DemoError {
    #[error("cannot start the WeChat simulator: {0}")]
    Simulator(std::io::Error),
    #[error("cannot start the demo's webhook receiver: {0}")]
    Receiver(std::io::Error),
    #[error("cannot make a scratch directory for the demo: {0}")]
    Scratch(std::io::Error),
    #[error(transparent)]
    Daemon(#[from] daemon::DaemonError),
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
    println!(
        "paysay demo: a simulated WeChat at {} — the phone scans the QR code by itself.",
        sim.base_url()
    );

    // The demo's page on a free port of this computer: never the shop's port or the LAN.
    config.web.listen = std::net::SocketAddr::from(([127, 0, 0, 1], 0));

    let shutdown = CancellationToken::new();
    let daemon = daemon::Daemon::new(config, paths.clone()).player(player);
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
    let daemon = tokio::spawn(daemon.run(shutdown.clone()));
    let expected = play_customers(&sim).await;
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
    result
}

/// The shop's afternoon: payments, a forgery, a redelivery. Returns how many are real.
async fn play_customers(sim: &Simulator) -> usize {
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
    PAYMENTS.len()
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
