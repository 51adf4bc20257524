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
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .context("starting the async runtime")?
                .block_on(say(&config, &paths, fen, dry_run))
        }
    }
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
