//! Latency of `paysay speaker`: from a payment event published to the broker to the first
//! sample of its announcement handed to the audio output.
//!
//! The real pieces run: a mosquitto broker the bench starts on 127.0.0.1, the speaker
//! (`speaker::Speaker::run`, on a runtime built like `paysay speaker`'s) with its ledger on
//! disk (`synchronous=FULL`, each id recorded before the broker is acknowledged), the speech
//! cache and the audio thread with the chime. The output is the null output wrapped so that
//! each sound's first sample stamps the clock. The publisher is a rumqttc client (QoS 1) on
//! a runtime of its own; each payload is the daemon's own (`PaymentEvent::to_mqtt_json`) with
//! a distinct id.
//!
//! Clock start: just before the publish is handed to the publisher's client. Clock stop:
//! the first `next()` of the sound the output was given. Per payment: publish, wait for
//! the stamp, pause (the announcement finishes and is marked said). First `--amounts`
//! distinct amounts with an empty cache (espeak-ng, the default `system` voice, synthesizes
//! each), then `--payments` cycling over them with the cache warm.
//!
//!     cargo bench --bench speaker [-- --payments 200 --amounts 10 --pause-ms 150]

mod common;

use std::sync::mpsc;
use std::time::{Duration, Instant};

use paysay::audio::{NullOutput, Player};
use paysay::config::{Config, MqttConfig};
use paysay::events::PaymentEvent;
use paysay::paths::Paths;
use paysay::speaker::Speaker;
use rumqttc::{AsyncClient, Event, Incoming, MqttOptions, QoS};
use tokio::runtime::Runtime;
use tokio_util::sync::CancellationToken;

use common::mosquitto::Broker;
use common::stamping::Stamping;
use common::{arg, init_log, payment, runtime, summary_ms};

/// How long a sound may take to come before the run is called broken.
const PATIENCE: Duration = Duration::from_secs(60);

fn main() {
    let payments: usize = arg("--payments", 200);
    let amounts: u64 = arg("--amounts", 10);
    let pause = Duration::from_millis(arg("--pause-ms", 150));
    let scratch = tempfile::tempdir().expect("a scratch dir");
    init_log(scratch.path(), "speaker.log");
    let broker = Broker::start();
    let mut config = Config {
        mqtt: Some(MqttConfig {
            url: broker.url(),
            ..MqttConfig::default()
        }),
        ..Config::default()
    };
    // Cold amounts are synthesized, as before voice banks (composed ones: benches/compose.rs).
    config.speech.compose = paysay::config::Compose::Never;
    let topic = config
        .mqtt
        .as_ref()
        .map(|m| m.topic.clone())
        .unwrap_or_default();

    let (stamps, first_samples) = mpsc::channel();
    let runtime = runtime(2);
    let shutdown = CancellationToken::new();
    let speaker = {
        let _inside = runtime.enter();
        start_speaker(config, scratch.path(), stamps, shutdown.clone())
    };
    let speaker = runtime.spawn(speaker);

    let publisher = common::runtime(1);
    let client = publisher.block_on(connect(broker.port));
    wait_until_listening(&publisher, &client, &topic, &first_samples);

    let fens: Vec<u64> = (0..amounts).map(|i| 1250 + 101 * i).collect();
    println!(
        "speaker: {payments} payments over {amounts} amounts, pause {} ms, mosquitto on 127.0.0.1, QoS 1, null output",
        pause.as_millis()
    );
    let mut next_id = 0;
    let mut measure = |fens: &mut dyn Iterator<Item = u64>| {
        let mut latencies = Vec::new();
        for fen in fens {
            let payload = payload(next_id, fen);
            next_id += 1;
            let published = Instant::now();
            publisher
                .block_on(client.publish(&topic, QoS::AtLeastOnce, false, payload))
                .expect("the publisher takes the payment");
            let heard = first_samples
                .recv_timeout(PATIENCE)
                .expect("the payment was announced");
            latencies.push(heard.saturating_duration_since(published));
            std::thread::sleep(pause);
        }
        latencies
    };
    let mut cold = measure(&mut fens.iter().copied());
    let mut warm = measure(&mut fens.iter().copied().cycle().take(payments));
    println!(
        "{}",
        summary_ms("cold cache (espeak-ng): publish → sound", &mut cold)
    );
    println!("{}", summary_ms("warm cache: publish → sound", &mut warm));

    shutdown.cancel();
    match runtime.block_on(speaker) {
        Ok(Ok(())) => {}
        other => eprintln!("the speaker ended badly: {other:?}"),
    }
    let _ = publisher.block_on(client.disconnect());
}

/// The speaker as `paysay speaker` starts it, with the stamping output, its state and cache
/// in `scratch`.
fn start_speaker(
    config: Config,
    scratch: &std::path::Path,
    stamps: mpsc::Sender<Instant>,
    shutdown: CancellationToken,
) -> impl Future<Output = Result<(), paysay::speaker::SpeakerError>> + use<> {
    let mut paths = Paths::new(&scratch.join("config.toml"), &config)
        .expect("a home dir")
        .with_state_dir(&scratch.join("state"));
    paths.cache_dir = scratch.join("cache");
    let player = Player::spawn_with(&config.audio, move || {
        Box::new(Stamping {
            inner: Box::new(NullOutput::default()),
            stamps,
        })
    })
    .expect("the audio thread");
    Speaker::new(config, paths).player(player).run(shutdown)
}

/// The bench's publisher, its event loop polled on the current runtime.
async fn connect(port: u16) -> AsyncClient {
    let (client, mut events) =
        AsyncClient::new(MqttOptions::new("bench-publisher", "127.0.0.1", port), 16);
    tokio::spawn(async move {
        loop {
            match events.poll().await {
                Ok(Event::Incoming(Incoming::Disconnect)) => return,
                Ok(_) => {}
                Err(e) => {
                    eprintln!("the bench's publisher lost the broker: {e}");
                    return;
                }
            }
        }
    });
    client
}

/// The speaker has subscribed: a retained warm-up payment reaches it as soon as it does,
/// and is said. Its stamp is taken away.
fn wait_until_listening(
    publisher: &Runtime,
    client: &AsyncClient,
    topic: &str,
    first_samples: &mpsc::Receiver<Instant>,
) {
    publisher
        .block_on(client.publish(topic, QoS::AtLeastOnce, true, payload(u64::MAX, 1)))
        .expect("the warm-up payment");
    first_samples
        .recv_timeout(PATIENCE)
        .expect("the speaker said the warm-up payment");
    std::thread::sleep(Duration::from_millis(500));
    while first_samples.try_recv().is_ok() {}
}

/// The daemon's MQTT payload for payment `i` of `fen`.
fn payload(i: u64, fen: u64) -> Vec<u8> {
    let payment = payment(&format!("speaker-bench-{i}"), fen, 1_714_528_800 + i as i64);
    PaymentEvent::new(&payment, time::UtcOffset::UTC)
        .to_mqtt_json()
        .to_string()
        .into_bytes()
}
