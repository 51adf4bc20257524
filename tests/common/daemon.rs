//! The real daemon in this process, against the simulator: its files in a temp dir, a test
//! voice and a test output, so a test can count what it says.

use std::path::Path;

use paysay::audio::{AudioOutput, Player};
use paysay::config::Config;
use paysay::daemon::{Daemon, DaemonError};
use paysay::paths::Paths;
use paysay::speech::{ClipCache, Speech, Synthesizer};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use wechat_sim::Simulator;

/// The daemon's config for talking to `sim`, with a long-poll short enough that a test
/// does not wait on it.
pub fn config_for(sim: &Simulator) -> Config {
    let mut config = Config::default();
    config.wechat.base_url = Some(sim.base_url());
    config.wechat.long_poll_timeout_secs = 3;
    // Tests run side by side: each page on a port of its own.
    config.web.listen = std::net::SocketAddr::from(([127, 0, 0, 1], 0));
    config
}

/// A daemon started by [`start`].
pub struct Running {
    /// Where its ledger and session are.
    pub paths: Paths,
    pub shutdown: CancellationToken,
    /// `Daemon::run`, as a task.
    pub task: JoinHandle<Result<(), DaemonError>>,
}

/// Starts the daemon with `config`, its config, state and cache under `dir`, speaking with
/// `voice` alone onto `output`.
pub fn start(
    config: Config,
    dir: &Path,
    voice: Box<dyn Synthesizer>,
    output: impl AudioOutput + Send + 'static,
) -> Running {
    start_custom(config, dir, voice, output, |d| d)
}

/// [`start`] with a beep for a voice onto a null output, the daemon changed by `customize`
/// before it runs (`|d| d.on_web_listening(tx)`).
pub fn start_with(config: Config, dir: &Path, customize: impl FnOnce(Daemon) -> Daemon) -> Running {
    let output = paysay::audio::NullOutput::default();
    start_custom(config, dir, Box::new(Beep), output, customize)
}

/// A voice that says everything as a short beep, at once.
pub struct Beep;

impl Synthesizer for Beep {
    fn name(&self) -> &'static str {
        "beep"
    }

    fn voice(&self) -> String {
        "beep".into()
    }

    fn synthesize<'a>(&'a self, _text: &'a str) -> paysay::speech::SynthFuture<'a> {
        Box::pin(async move {
            Ok(paysay::speech::Audio {
                bytes: super::wav::beep(8_000, 400),
                format: paysay::speech::AudioFormat::Wav,
            })
        })
    }
}

/// [`start`], the daemon changed by `customize` before it runs (`|d| d.clock(clock)`).
pub fn start_custom(
    config: Config,
    dir: &Path,
    voice: Box<dyn Synthesizer>,
    output: impl AudioOutput + Send + 'static,
    customize: impl FnOnce(Daemon) -> Daemon,
) -> Running {
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
    let shutdown = CancellationToken::new();
    let daemon = customize(Daemon::new(config, paths.clone()))
        .player(player)
        .speech(speech);
    let task = tokio::spawn(daemon.run(shutdown.clone()));
    Running {
        paths,
        shutdown,
        task,
    }
}
