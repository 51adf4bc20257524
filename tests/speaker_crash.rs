//! `paysay speaker` whose announcer dies must stop with an error (so the service restarts
//! it), with the payment it did not say still unsaid in its ledger, and say it on the next
//! start: the same composition of announcer and ledger as the daemon (daemon_crash.rs).

#![cfg(unix)]

mod common;
#[path = "common/mosquitto.rs"]
mod mosquitto;

use std::path::Path;
use std::time::Duration;

use mosquitto::Broker;
use paysay::audio::{NullOutput, Player};
use paysay::config::Config;
use paysay::paths::Paths;
use paysay::speaker::{Heard, Speaker, SpeakerError};
use paysay::speech::{ClipCache, Speech, SynthFuture, Synthesizer};
use rumqttc::{AsyncClient, Event, Incoming, MqttOptions, QoS};
use tokio_util::sync::CancellationToken;

const WAIT: Duration = Duration::from_secs(30);

/// A voice with a bug: it panics on whatever it is asked to say.
struct PanickingVoice;

impl Synthesizer for PanickingVoice {
    fn name(&self) -> &'static str {
        "panicking"
    }

    fn voice(&self) -> String {
        "none".into()
    }

    fn synthesize<'a>(&'a self, _text: &'a str) -> SynthFuture<'a> {
        Box::pin(async move { panic!("a voice with a bug") })
    }
}

/// A speaker for `broker` with its files under `dir`, speaking with `voice` onto `output`.
fn speaker(
    broker: &Broker,
    dir: &Path,
    voice: Box<dyn Synthesizer>,
    output: NullOutput,
) -> (Speaker, Paths) {
    let config = Config {
        mqtt: Some(broker.config()),
        ..Config::default()
    };
    let mut paths = Paths::new(&dir.join("config.toml"), &config)
        .unwrap()
        .with_state_dir(&dir.join("state"));
    paths.cache_dir = dir.join("cache");
    let speech = Speech::new(
        vec![voice],
        ClipCache::new(dir.join("cache/tts"), 1 << 20),
        &config.speech.template,
    );
    let player = Player::spawn_with(&config.audio, move || Box::new(output)).unwrap();
    let speaker = Speaker::new(config, paths.clone())
        .speech(speech)
        .player(player);
    (speaker, paths)
}

async fn publish(port: u16, payload: &str) {
    let options = MqttOptions::new("test-publisher", "127.0.0.1", port);
    let (client, mut events) = AsyncClient::new(options, 16);
    client
        .publish("paysay/payments", QoS::AtLeastOnce, false, payload)
        .await
        .unwrap();
    tokio::time::timeout(WAIT, async {
        while let Ok(event) = events.poll().await {
            if let Event::Incoming(Incoming::PubAck(_)) = event {
                return;
            }
        }
        panic!("the broker went away");
    })
    .await
    .unwrap();
}

/// Waits until the speaker's ledger knows `id`.
async fn wait_recorded(paths: &Paths, id: &str) -> Heard {
    let started = std::time::Instant::now();
    loop {
        if let Ok(heard) = Heard::open(&Speaker::ledger_path(paths))
            && heard.unannounced().unwrap().iter().any(|p| p.id == id)
        {
            return heard;
        }
        assert!(started.elapsed() < WAIT, "{id} never recorded");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crashed_announcer_stops_the_speaker_with_an_error_and_the_next_start_says_the_payment() {
    let broker = Broker::start();
    let dir = tempfile::tempdir().unwrap();

    // First run: the voice panics on the payment.
    let output = NullOutput::default();
    let (first, paths) = speaker(&broker, dir.path(), Box::new(PanickingVoice), output);
    open_session_for(&broker, &paths).await;
    publish(
        broker.port,
        r#"{"id":"p1","amount_fen":1250,"wallet":"alipay"}"#,
    )
    .await;
    let shutdown = CancellationToken::new();
    let run = tokio::spawn(first.run(shutdown.clone()));
    let result = tokio::time::timeout(WAIT, run)
        .await
        .expect("the speaker stops by itself")
        .unwrap();
    assert!(
        matches!(result, Err(SpeakerError::AnnouncerCrashed(_))),
        "{result:?}"
    );
    let heard = wait_recorded(&paths, "p1").await;
    assert!(!heard.announced("p1").unwrap(), "not said, not marked said");
    drop(heard);

    // Second run, with a voice that works: the payment is said, and marked said.
    let output = NullOutput::default();
    let stats = output.stats();
    let (second, paths) = speaker(&broker, dir.path(), Box::new(common::daemon::Beep), output);
    let shutdown = CancellationToken::new();
    let run = tokio::spawn(second.run(shutdown.clone()));
    let started = std::time::Instant::now();
    while !Heard::open(&Speaker::ledger_path(&paths))
        .unwrap()
        .announced("p1")
        .unwrap()
    {
        assert!(started.elapsed() < WAIT, "p1 never said after the restart");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(stats.sounds(), 1, "said once");
    shutdown.cancel();
    tokio::time::timeout(WAIT, run)
        .await
        .expect("the speaker stops on shutdown")
        .unwrap()
        .unwrap();
}

/// Opens the speaker's persistent session at the broker before the speaker runs, with the
/// client id its ledger keeps: the broker then holds what is published for it, and a test
/// needs no wait for the speaker to subscribe.
async fn open_session_for(broker: &Broker, paths: &Paths) {
    let client_id = Heard::open(&Speaker::ledger_path(paths))
        .unwrap()
        .client_id()
        .unwrap();
    let mut options = MqttOptions::new(client_id, "127.0.0.1", broker.port);
    options.set_clean_session(false);
    let (client, mut events) = AsyncClient::new(options, 16);
    client
        .subscribe("paysay/payments", QoS::AtLeastOnce)
        .await
        .unwrap();
    tokio::time::timeout(WAIT, async {
        while let Ok(event) = events.poll().await {
            if let Event::Incoming(Incoming::SubAck(_)) = event {
                return;
            }
        }
        panic!("the broker went away");
    })
    .await
    .unwrap();
    client.disconnect().await.unwrap();
    // The DISCONNECT goes out on the next poll.
    let _ = tokio::time::timeout(Duration::from_secs(2), events.poll()).await;
}
