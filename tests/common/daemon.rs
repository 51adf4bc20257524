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
    let task = tokio::spawn(
        Daemon::new(config, paths.clone())
            .player(player)
            .speech(speech)
            .run(shutdown.clone()),
    );
    Running {
        paths,
        shutdown,
        task,
    }
}
