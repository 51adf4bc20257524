//! The `paysay` command: the edge where errors become messages for the shop owner.

use std::path::PathBuf;

use anyhow::Context;
use clap::{Parser, Subcommand};
use paysay::audio::{NullOutput, Player};
use paysay::config::Config;
use paysay::paths::Paths;
use paysay::speech::{Speech, Yuan, parse_yuan};

/// Speaks WeChat Pay payments out loud at the shop counter.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Cli {
    /// Config file (TOML). Default: config.toml in paysay's config dir.
    #[arg(long, global = true, value_name = "FILE")]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Log in to WeChat (QR code, or the saved session while it lasts), save the session, exit.
    Login,
    /// Keep the WeChat session alive and announce payments: the daemon.
    Run,
    /// Check the configuration file and print where paysay keeps its files.
    Paths,
    /// Say an amount through the speaker, as a payment would: to check the speaker and to
    /// tune the voice, rate and volume in the config.
    Say {
        /// Amount in yuan with at most two decimals, like 12.50.
        amount: String,
        /// Synthesize and time the announcement without opening the sound device.
        #[arg(long)]
        dry_run: bool,
    },
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    init_logging();
    match run(cli) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("paysay: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("PAYSAY_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
}

/// Loads the config named with `--config`, or the default one if it exists.
fn load_config(cli: &Cli) -> anyhow::Result<(Config, Paths)> {
    let (path, explicit) = match &cli.config {
        Some(p) => (p.clone(), true),
        None => (Paths::default_config_file()?, false),
    };
    let config = Config::load(&path, explicit)?;
    let paths = Paths::new(&path, &config).context("working out paysay's directories")?;
    Ok((config, paths))
}

fn run(cli: Cli) -> anyhow::Result<()> {
    let (config, paths) = load_config(&cli)?;
    match cli.command {
        Command::Login => runtime()?.block_on(login(&config, &paths)),
        Command::Run => runtime()?.block_on(async {
            paysay::daemon::run(config, paths, shutdown_on_signal())
                .await
                .map_err(anyhow::Error::from)
        }),
        Command::Paths => {
            println!("config:  {}", paths.config_file.display());
            println!("state:   {}", paths.state_dir.display());
            println!("cache:   {}", paths.cache_dir.display());
            println!("session: {}", paths.session_file().display());
            println!("qr:      {}", paths.qr_png().display());
            println!("ledger:  {}", paths.ledger_db().display());
            Ok(())
        }
        Command::Say { amount, dry_run } => {
            let fen = parse_yuan(&amount)?;
            runtime()?.block_on(say(&config, &paths, fen, dry_run))
        }
    }
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("starting the async runtime")
}

/// `paysay login`: resume or log in, save the session, and stop.
async fn login(config: &Config, paths: &Paths) -> anyhow::Result<()> {
    let files = paysay::session::SessionFiles::from_paths(paths);
    let (events, _rx) = paysay::session::Events::channel();
    let session = paysay::session::connect(&config.wechat, &files, &events, None)
        .await
        .context("logging in to WeChat")?;
    println!(
        "Logged in as {} ({} contacts); session saved to {}",
        session.nick_name(),
        session.contact_count(),
        files.session.display()
    );
    Ok(())
}

/// A token cancelled on SIGINT or SIGTERM (systemd stops services with SIGTERM).
fn shutdown_on_signal() -> tokio_util::sync::CancellationToken {
    let token = tokio_util::sync::CancellationToken::new();
    let cancel = token.clone();
    tokio::spawn(async move {
        wait_for_signal().await;
        tracing::info!("stopping: finishing what is under way");
        cancel.cancel();
    });
    token
}

#[cfg(unix)]
async fn wait_for_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    match signal(SignalKind::terminate()) {
        Ok(mut term) => {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
        }
        Err(e) => {
            tracing::warn!(error = %e, "cannot listen for SIGTERM; only Ctrl-C stops paysay cleanly");
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}

#[cfg(not(unix))]
async fn wait_for_signal() {
    let _ = tokio::signal::ctrl_c().await;
}

/// Announces `fen` through the configured speech chain and player, then prints which
/// backend spoke and what it said.
async fn say(config: &Config, paths: &Paths, fen: u64, dry_run: bool) -> anyhow::Result<()> {
    let speech =
        Speech::from_config(&config.speech, paths.tts_cache_dir()).context("setting up speech")?;
    let clip = speech.announce(fen).await?;
    let null = NullOutput::default();
    let stats = null.stats();
    let player = if dry_run {
        Player::spawn_with(&config.audio, move || Box::new(null))?
    } else {
        Player::spawn(&config.audio)?
    };
    let played = player.play(clip.clone()).await;
    player.shutdown().await;
    played.context("playing the announcement")?;
    let source = if clip.cached { ", from the cache" } else { "" };
    println!(
        "{} yuan, spoken by {}{source}: {}",
        Yuan(fen),
        clip.backend,
        clip.text
    );
    if dry_run {
        println!(
            "dry run: {:.2} s of audio (chime included)",
            stats.played().as_secs_f64()
        );
    }
    Ok(())
}
