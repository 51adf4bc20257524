//! The `paysay` command: the edge where errors become messages for the shop owner.

use std::path::PathBuf;

use anyhow::Context;
use clap::{Parser, Subcommand};
use paysay::config::Config;
use paysay::paths::Paths;

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
    let (_config, paths) = load_config(&cli)?;
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
    }
}
