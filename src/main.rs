//! The `paysay` command: the edge where errors become messages for the shop owner.

use std::io::{IsTerminal, Write};
use std::path::PathBuf;

use anyhow::Context;
use clap::{Parser, Subcommand};
use paysay::audio::{NullOutput, Player};
use paysay::config::{Config, SinkSpec};
use paysay::ledger::{Ledger, Redeliver, report};
use paysay::money::{Yuan, parse_yuan};
use paysay::paths::Paths;
use paysay::speech::Speech;
use time::{Date, UtcOffset};

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
    /// Hear paysay work without a WeChat account: the real daemon against the built-in
    /// WeChat simulator, which scans its own QR code and delivers a few payments.
    #[cfg(feature = "demo")]
    Demo {
        /// Go through the whole demo without opening the sound device.
        #[arg(long)]
        dry_run: bool,
    },
    /// A second speaker with no WeChat session: says the payments the daemon publishes to
    /// the `[mqtt]` broker, each once, with this config's speech and audio settings.
    Speaker {
        /// Say nothing out loud: announcements go to a null output (for trying it out).
        #[arg(long)]
        dry_run: bool,
    },
    /// Check the configuration file and print where paysay keeps its files.
    Paths,
    /// Say an amount through the speaker, as a payment would: to check the speaker and to
    /// tune the voice, rate and volume in the config.
    ///
    /// Prints which path spoke: a whole phrase (from which backend, cached or not) or one
    /// composed from the voice bank's clips (of which backend, or the voice pack).
    Say {
        /// Amount in yuan with at most two decimals, like 12.50.
        amount: String,
        /// Synthesize and time the announcement without opening the sound device.
        #[arg(long)]
        dry_run: bool,
        /// Also write the announcement's words (no chime) to this WAV file.
        #[arg(long, value_name = "FILE.wav")]
        out: Option<PathBuf>,
    },
    /// The voice bank: the clips new amounts are composed from.
    Voice {
        #[command(subcommand)]
        action: VoiceAction,
    },
    /// Print the payments of a span of days (default: today, local time) and their total.
    ///
    /// `--json` prints one JSON object per line and nothing else, a format other programs
    /// rely on: every object has at least `msg_id` (string), `amount_fen` (integer fen),
    /// `kind` (collection, clerk_collection, transfer, red_packet, group_collection),
    /// `payer` (string or null) and `time` (RFC 3339 with the local offset); also
    /// `amount_yuan`, `remark`, `account`, `transfer_id`, `daily_count`, `daily_total_fen`,
    /// `detected_at`, `announced_at` (null until spoken) and `deliveries` (each sink's
    /// state by name: pending, delivered, rejected). Fields are only ever added.
    Ledger {
        /// First day to show, YYYY-MM-DD (local). Default: the --until day.
        #[arg(long, value_name = "DATE", value_parser = parse_date)]
        since: Option<Date>,
        /// Last day to show, YYYY-MM-DD (local), included. Default: today.
        #[arg(long, value_name = "DATE", value_parser = parse_date)]
        until: Option<Date>,
        /// Print CSV with a header line, for spreadsheets.
        #[arg(long, conflicts_with = "json")]
        csv: bool,
        /// Print one JSON object per line, for programs.
        #[arg(long)]
        json: bool,
    },
    /// Send payment events again by hand (补单): the events of the payments of a span of days
    /// are marked pending for the sinks, and the running daemon (or the next start) sends
    /// them within a few seconds, with the same ids as before.
    ///
    /// Webhooks and MQTT get every event again, delivered ones too: each carries its id, so
    /// the receiver drops what it already has. V免签 gets only what it has not acknowledged
    /// (failed, refused, still pending): its appPush carries nothing but an amount and
    /// confirms whichever open order has that price, so an event it took once, pushed
    /// again, would confirm the next customer's order that nobody paid.
    Resend {
        /// First day, YYYY-MM-DD (local).
        #[arg(long, value_name = "DATE", value_parser = parse_date)]
        since: Date,
        /// Last day, YYYY-MM-DD (local), included. Default: today.
        #[arg(long, value_name = "DATE", value_parser = parse_date)]
        until: Option<Date>,
        /// Only to this sink (a `[[webhook]]` name, `vmq`, `mqtt`). Default: every configured
        /// sink.
        #[arg(long, value_name = "NAME")]
        sink: Option<String>,
        /// Push again to V免签 also what it already took. Dangerous: V免签 confirms any open
        /// order of the same amount, whether or not its customer paid. Only for a V免签 whose
        /// database lost those payments.
        #[arg(long)]
        include_delivered: bool,
    },
    /// Check the config, the state dir, the WeChat session, the ledger, the speaker and each
    /// voice, one line each with a fix for each failure. Exits non-zero when a check failed.
    Doctor,
    /// Texts to the owner in WeChat (`[notify]`). `--test` sends one test text to
    /// `[notify] to` through the saved session (`paysay login` first), for setting it up.
    /// Run it while the daemon is stopped: two clients on one session make WeChat end one.
    Notify {
        /// Send one test text and exit.
        #[arg(long)]
        test: bool,
    },
    /// Run paysay as a service of your user (systemd on Linux, launchd on macOS): started at
    /// login, or at boot with linger, and restarted after a failure.
    Service {
        #[command(subcommand)]
        action: ServiceAction,
    },
}

#[derive(Debug, Subcommand)]
enum VoiceAction {
    /// Build (or rebuild) the bank: each word said once by the first working backend of
    /// `speech.backends`, or by --backend, trimmed, levelled and stored in the cache dir.
    Build {
        /// The backend to speak the clips (`baidu`, `system`); it must be in speech.backends.
        #[arg(long, value_name = "NAME")]
        backend: Option<String>,
    },
    /// Check a voice pack (a directory of recordings, one file per word) without starting:
    /// every missing, unreadable, too long or too big file is named.
    Check {
        /// The directory of the pack.
        dir: PathBuf,
    },
}

#[derive(Debug, Subcommand)]
enum ServiceAction {
    /// Write the service file for this paysay binary (and --config, if given), then enable
    /// and start the service.
    Install {
        /// Only write the file, and print the commands that would start it.
        #[arg(long)]
        no_start: bool,
        /// Install `paysay speaker` (a second speaker fed over MQTT) as the service
        /// `paysay-speaker` instead of the daemon.
        #[arg(long)]
        speaker: bool,
    },
    /// Stop and disable the service and remove its file. The session and the ledger stay.
    Uninstall {
        /// Change nothing; print the commands that stop the service and then remove its
        /// file (stopping needs the file, so it stays until then).
        #[arg(long)]
        no_stop: bool,
        /// Remove the `paysay-speaker` service instead of the daemon's.
        #[arg(long)]
        speaker: bool,
    },
}

/// `2024-05-01` → a date, for `--since`/`--until`.
fn parse_date(s: &str) -> Result<Date, String> {
    let format = time::macros::format_description!("[year]-[month]-[day]");
    Date::parse(s.trim(), &format).map_err(|e| format!("expected a date like 2024-05-01: {e}"))
}

fn main() -> std::process::ExitCode {
    one_malloc_arena();
    let cli = Cli::parse();
    init_logging();
    raise_open_file_limit();
    match run(cli) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("paysay: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

/// systemd starts a service with a soft limit of 1,024 open files and a much higher hard
/// limit; the soft one is only there for programs that still use select(2), which paysay
/// does not. Raised to the hard limit, a flood of connections to the page (capped anyway,
/// see `listener`) or a burst of speech programs leaves handles for the ledger, the
/// session and the sound device. macOS refuses more than OPEN_MAX.
fn raise_open_file_limit() {
    #[cfg(unix)]
    {
        let mut limit = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        // SAFETY: getrlimit writes only the struct it is given.
        if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } != 0 {
            return;
        }
        #[cfg(target_os = "macos")]
        let wanted = limit.rlim_max.min(libc::OPEN_MAX as libc::rlim_t);
        #[cfg(not(target_os = "macos"))]
        let wanted = limit.rlim_max;
        if wanted <= limit.rlim_cur {
            return;
        }
        let before = limit.rlim_cur;
        limit.rlim_cur = wanted;
        // SAFETY: setrlimit reads only the struct it is given.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &limit) } == 0 {
            tracing::debug!(before, now = wanted, "open-file limit raised");
        } else {
            tracing::debug!(error = %std::io::Error::last_os_error(), "cannot raise the open-file limit");
        }
    }
}

/// glibc gives threads malloc arenas of their own, and tokio's blocking threads come and go
/// (SQLite calls run there). Measured again once the delivery tasks stopped polling the
/// ledger (one `PRAGMA data_version` read every 2 s for the whole outbox instead): idle with
/// every sink for 10 minutes, the same binary grew 4.9 kB/min with glibc's default arenas
/// and 0.5 kB/min with one (BENCHMARKS.md). So it stays. paysay allocates little, so one
/// lock costs nothing it could measure. Called first, before any thread exists.
fn one_malloc_arena() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only sets a glibc tunable; no other thread is running yet.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, 1);
    }
}

fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("PAYSAY_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let terminal = std::io::stderr().is_terminal();
    // Off a terminal (the journal, a file), whatever text from the network reaches a field
    // unescaped still cannot forge a line or send escape codes.
    let writer = move || -> Box<dyn std::io::Write> {
        if terminal {
            Box::new(std::io::stderr())
        } else {
            Box::new(paysay::text::OneLine(std::io::stderr()))
        }
    };
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(writer)
        .with_ansi(terminal);
    // Under systemd, journald stamps each line itself: no second timestamp.
    if std::env::var_os("JOURNAL_STREAM").is_some() {
        builder.without_time().init();
    } else {
        builder.init();
    }
}

/// The config file to read, and whether it was named with `--config` (then it must exist).
fn config_path(cli: &Cli) -> anyhow::Result<(PathBuf, bool)> {
    Ok(match &cli.config {
        Some(p) => (p.clone(), true),
        None => (Paths::default_config_file()?, false),
    })
}

/// Loads the config named with `--config`, or the default one if it exists.
fn load_config(cli: &Cli) -> anyhow::Result<(Config, Paths)> {
    let (path, explicit) = config_path(cli)?;
    let config = Config::load(&path, explicit)?;
    let paths = Paths::new(&path, &config).context("working out paysay's directories")?;
    Ok((config, paths))
}

fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        // The doctor reports a broken config as one of its checks, so it loads it itself.
        Command::Doctor => doctor(&cli),
        _ => run_configured(cli),
    }
}

fn run_configured(cli: Cli) -> anyhow::Result<()> {
    let (config, paths) = load_config(&cli)?;
    match cli.command {
        // Reached only when called directly: run() sends the doctor here without a config.
        Command::Doctor => doctor(&cli),
        Command::Login => runtime()?.block_on(login(&config, &paths)),
        Command::Run => {
            // Before the runtime's threads: it reads the local time zone.
            let daemon = paysay::daemon::Daemon::new(config, paths);
            runtime()?.block_on(async {
                daemon
                    .run(shutdown_on_signal())
                    .await
                    .map_err(anyhow::Error::from)
            })
        }
        #[cfg(feature = "demo")]
        Command::Demo { dry_run } => runtime()?.block_on(demo(config, paths, dry_run)),
        Command::Speaker { dry_run } => runtime()?.block_on(async {
            let null = dry_run
                .then(|| Player::spawn_with(&config.audio, || Box::new(NullOutput::default())))
                .transpose()?;
            let mut speaker = paysay::speaker::Speaker::new(config, paths);
            if let Some(null) = null {
                speaker = speaker.player(null);
            }
            speaker
                .run(shutdown_on_signal())
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
        Command::Say {
            amount,
            dry_run,
            out,
        } => {
            let fen = parse_yuan(&amount)?;
            runtime()?.block_on(say(&config, &paths, fen, dry_run, out.as_deref()))
        }
        Command::Voice { action } => runtime()?.block_on(voice(&config, &paths, action)),
        Command::Ledger {
            since,
            until,
            csv,
            json,
        } => print_ledger(&paths, since, until, Format::pick(csv, json)),
        Command::Resend {
            since,
            until,
            sink,
            include_delivered,
        } => resend(&config, &paths, since, until, sink, include_delivered),
        Command::Notify { test } => {
            if !test {
                anyhow::bail!("nothing to do: `paysay notify --test` sends a test text");
            }
            runtime()?.block_on(notify_test(&config, &paths))
        }
        Command::Service { action } => service(cli.config.as_deref(), &paths, action),
    }
}

/// `paysay doctor`: prints each check as it finishes; fails when any check failed.
fn doctor(cli: &Cli) -> anyhow::Result<()> {
    let (path, explicit) = config_path(cli)?;
    let report = paysay::doctor::run(&path, explicit, &mut |check| println!("{check}"));
    match report.failures() {
        0 => Ok(()),
        n => anyhow::bail!("{n} of {} checks failed", report.checks.len()),
    }
}

/// `paysay resend`: marks the span's events pending again for the sinks; V免签's delivered
/// ones only with `include_delivered`.
fn resend(
    config: &Config,
    paths: &Paths,
    since: Date,
    until: Option<Date>,
    sink: Option<String>,
    include_delivered: bool,
) -> anyhow::Result<()> {
    let configured = config
        .sinks()
        .map_err(|(key, problem)| anyhow::anyhow!("{key} {problem}"))?;
    let sinks: Vec<&SinkSpec> = match sink {
        Some(name) => match configured.iter().find(|s| s.name() == name) {
            Some(spec) => vec![spec],
            None => anyhow::bail!(
                "no sink named {name} in the config (configured: {})",
                shown_sinks(configured.iter())
            ),
        },
        None if configured.is_empty() => {
            anyhow::bail!("no sink is configured: add a [[webhook]], [vmq] or [mqtt] to the config")
        }
        None => configured.iter().collect(),
    };
    let offset_at = local_offset_reader();
    let until = until.unwrap_or_else(|| report::today(&offset_at));
    if since > until {
        anyhow::bail!("--since {since} is after --until {until}");
    }
    let (from, to) = report::day_range(since, until, &offset_at);
    let ledger_path = paths.ledger_db();
    if !ledger_path.exists() {
        anyhow::bail!("no ledger at {}: nothing to send", ledger_path.display());
    }
    let plan: Vec<(String, Redeliver)> = sinks
        .iter()
        .map(|spec| (spec.name().to_string(), redeliver(spec, include_delivered)))
        .collect();
    if include_delivered && sinks.iter().any(|s| matches!(s, SinkSpec::Vmq { .. })) {
        eprintln!(
            "warning: --include-delivered pushes again to V免签 the payments it already took; V免签 matches by amount alone and confirms any open order of that amount, even one nobody paid"
        );
    }
    let resent = Ledger::open(&ledger_path)
        .context("opening the payment ledger")?
        .resend(from, to, &plan)
        .context("queueing the events again")?;
    println!(
        "{} event(s) from {since} to {until} queued again for {}; the running paysay sends them within a few seconds, else the next start does",
        resent.queued,
        shown_sinks(sinks.iter().copied())
    );
    if resent.kept_delivered > 0 {
        println!(
            "{} event(s) V免签 already took were not queued: V免签 matches a push by its amount alone, so pushing one again would confirm another open order of that amount that nobody paid (--include-delivered pushes them anyway)",
            resent.kept_delivered
        );
    }
    Ok(())
}

/// What `paysay resend` sends again to `sink`: V免签 matches payments to orders by amount
/// alone, so only what it has not taken, unless the owner insists.
fn redeliver(sink: &SinkSpec, include_delivered: bool) -> Redeliver {
    match sink {
        SinkSpec::Vmq { .. } if !include_delivered => Redeliver::Undelivered,
        _ => Redeliver::Everything,
    }
}

/// `shop (webhook), vmq (V免签), mqtt (MQTT)`, or `none`.
fn shown_sinks<'a>(sinks: impl Iterator<Item = &'a SinkSpec>) -> String {
    let shown: Vec<String> = sinks
        .map(|s| format!("{} ({})", s.name(), s.kind()))
        .collect();
    if shown.is_empty() {
        "none".into()
    } else {
        shown.join(", ")
    }
}

/// `paysay service install|uninstall`.
fn service(
    config: Option<&std::path::Path>,
    paths: &Paths,
    action: ServiceAction,
) -> anyhow::Result<()> {
    use paysay::service::{self as svc, Invocation, Manager, Role, ServiceError};
    let manager = Manager::native().ok_or(ServiceError::Unsupported)?;
    let role = |speaker| if speaker { Role::Speaker } else { Role::Daemon };
    match action {
        ServiceAction::Install { no_start, speaker } => {
            let invocation = Invocation {
                role: role(speaker),
                program: std::env::current_exe().context("finding the paysay binary")?,
                config: config
                    .map(std::path::absolute)
                    .transpose()
                    .context("finding the config file")?,
            };
            let installed = svc::install_file(manager, &invocation)?;
            if !no_start {
                svc::run_steps(&installed.start).with_context(|| {
                    format!("{} is written, but not started", installed.file.display())
                })?;
            }
            print!("{}", installed.explain(!no_start, &paths.qr_png()));
        }
        ServiceAction::Uninstall { no_stop, speaker } => {
            let done = svc::uninstall(manager, role(speaker), !no_stop)?;
            print!("{}", done.explain(&paths.state_dir, &paths.ledger_db()));
        }
    }
    Ok(())
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("starting the async runtime")
}

/// `paysay login`: resume or log in, save the session, and stop. Network trouble is retried
/// as the daemon retries it (each login step on its own QR code inside `connect`, the rest
/// with the configured backoff), so a scan is never wasted; only what a person must fix
/// (a refused account, an unwritable state dir) ends it.
async fn login(config: &Config, paths: &Paths) -> anyhow::Result<()> {
    use paysay::session::ErrorKind;
    paths
        .prepare_state_dir()
        .with_context(|| format!("making {} owner-only", paths.state_dir.display()))?;
    let files = paysay::session::SessionFiles::from_paths(paths);
    let (events, _rx) = paysay::session::Events::channel();
    let mut backoff = paysay::session::backoff(&config.wechat);
    let mut session = loop {
        match paysay::session::connect(&config.wechat, &files, &events, None).await {
            Ok(session) => break session,
            Err(e) if e.kind() == ErrorKind::Fatal => {
                return Err(e).context("logging in to WeChat");
            }
            Err(e) => {
                let delay = backoff.next_delay();
                tracing::warn!(error = %paysay::text::Escaped(&e), retry_in_ms = delay.as_millis() as u64, "WeChat login failed; retrying (Ctrl-C stops)");
                tokio::time::sleep(delay).await;
            }
        }
    };
    // `connect` goes on without a saved session (the daemon must); a login is for saving.
    session
        .save(&files.session)
        .context("saving the WeChat session")?;
    println!(
        "Logged in as {} ({} contacts); session saved to {}",
        session.nick_name(),
        session.contact_count(),
        files.session.display()
    );
    Ok(())
}

/// The text `paysay notify --test` sends.
const TEST_TEXT: &str = "paysay 测试消息：每日汇总和重新登录的提醒会发到这里";

/// `paysay notify --test`: resumes the saved session, sends one text, saves the session
/// (webwxinit gave it a new skey) and stops.
async fn notify_test(config: &Config, paths: &Paths) -> anyhow::Result<()> {
    use paysay::session::{ErrorKind, Session, store};
    let Some(notify) = &config.notify else {
        anyhow::bail!(
            "[notify] is off: add a [notify] section to {} (see config.example.toml)",
            paths.config_file.display()
        );
    };
    let files = paysay::session::SessionFiles::from_paths(paths);
    let Some(saved) = store::load(&files.session).context("reading the saved session")? else {
        anyhow::bail!("not logged in to WeChat: run `paysay login` first");
    };
    let mut session = match Session::resume(&config.wechat, saved).await {
        Ok(session) => session,
        Err(e) if e.kind() == ErrorKind::LoggedOut => {
            store::discard(&files.session).context("removing the ended session")?;
            anyhow::bail!(
                "the saved WeChat session has ended ({}): run `paysay login` first",
                paysay::text::Escaped(&e)
            );
        }
        Err(e) => return Err(e).context("resuming the saved WeChat session"),
    };
    session
        .save(&files.session)
        .context("saving the WeChat session")?;
    session
        .send_text(&notify.to, TEST_TEXT)
        .await
        .with_context(|| {
            format!(
                "sending the test text to {}",
                paysay::text::Escaped(&notify.to)
            )
        })?;
    println!(
        "Sent a test text to {} as {}",
        paysay::text::Escaped(&notify.to),
        paysay::text::Escaped(session.nick_name())
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
/// path spoke (whole phrase or composed, and whose voice) and what it said.
async fn say(
    config: &Config,
    paths: &Paths,
    fen: u64,
    dry_run: bool,
    out: Option<&std::path::Path>,
) -> anyhow::Result<()> {
    let speech =
        Speech::from_config(&config.speech, paths.tts_cache_dir()).context("setting up speech")?;
    let clip = speech.announce(fen).await?;
    if let Some(out) = out {
        write_wav(&clip, out).with_context(|| format!("writing {}", out.display()))?;
    }
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
    println!("{} yuan, {}: {}", Yuan(fen), clip.origin(), clip.text);
    if let Some(out) = out {
        println!("written to {}", out.display());
    }
    if dry_run {
        println!(
            "dry run: {:.2} s of audio (chime included)",
            stats.played().as_secs_f64()
        );
    }
    if clip.is_composed() {
        // The whole phrase being synthesized for next time would die with this process.
        speech.settle().await;
    }
    Ok(())
}

/// Writes the words of `clip` (composed samples, or its file decoded) as a mono 16 kHz WAV.
fn write_wav(clip: &paysay::speech::Clip, out: &std::path::Path) -> anyhow::Result<()> {
    use paysay::speech::{ClipAudio, bank};
    let (samples, rate) = match &clip.audio {
        ClipAudio::Composed(pcm) => (pcm.samples.clone(), pcm.rate),
        ClipAudio::File(path) => {
            let bytes =
                std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
            let decoded = bank::decode_mono(bytes, usize::MAX).map_err(anyhow::Error::msg)?;
            let samples = decoded
                .iter()
                .map(|s| (s.clamp(-1.0, 1.0) * 32767.0).round() as i16)
                .collect();
            (samples, bank::RATE)
        }
    };
    std::fs::write(out, bank::wav_bytes(&samples, rate))?;
    Ok(())
}

/// `paysay voice build` and `paysay voice check`.
async fn voice(config: &Config, paths: &Paths, action: VoiceAction) -> anyhow::Result<()> {
    match action {
        VoiceAction::Build { backend } => {
            if config.speech.clips.is_some() {
                println!(
                    "note: [speech] clips names a voice pack, which the daemon uses instead of this bank"
                );
            }
            let mut speech_config = config.speech.clone();
            // The bank is built from the backends, whatever the pack.
            speech_config.clips = None;
            let speech = Speech::from_config(&speech_config, paths.tts_cache_dir())
                .context("setting up speech")?;
            let manifest = speech.build_bank(backend.as_deref()).await?;
            println!(
                "voice bank built with {} ({}): {} clips, {} kB, in {:.1} s, at {}",
                manifest.backend,
                manifest.voice,
                manifest.tokens.len(),
                manifest.bytes / 1024,
                manifest.build_secs,
                speech.bank_dir().display()
            );
            Ok(())
        }
        VoiceAction::Check { dir } => {
            let tokens = paysay::speech::bank::tokens(&config.speech);
            let bank = paysay::speech::bank::load_pack(&dir, &tokens)?;
            let alerts = tokens.iter().filter(|t| t.alert).count();
            println!(
                "voice pack {}: every word is there ({} clips; spoken alerts without a file are synthesized, {alerts} possible)",
                dir.display(),
                bank.len()
            );
            Ok(())
        }
    }
}

/// `paysay demo`: the simulator, the daemon, a few customers, and what was heard.
#[cfg(feature = "demo")]
async fn demo(config: Config, paths: Paths, mut dry_run: bool) -> anyhow::Result<()> {
    if !dry_run && let Err(e) = paysay::audio::probe(std::time::Duration::from_secs(10)) {
        // A newcomer on a machine without a speaker still sees the whole pipeline work.
        println!(
            "paysay demo: no sound device ({e}); running silently. `paysay doctor` helps find why."
        );
        dry_run = true;
    }
    let player = spawn_player(&config, dry_run)?;
    let entries = paysay::demo::run(config, paths, player).await?;
    println!("paysay demo: announced and recorded, once each:");
    for e in &entries {
        println!(
            "  {:>10} yuan  {:<8} {:<16} {:<5} {}",
            Yuan(e.payment.amount_fen).to_string(),
            e.payment.wallet.as_str(),
            e.payment.kind.to_string(),
            e.payment.source.as_str(),
            e.payment.payer.as_deref().unwrap_or(&e.payment.account)
        );
    }
    println!(
        "  total {} yuan. The forged notice and the redelivery stayed silent; the WeChat payment heard from WeChat and from the phone (source both) was said once.",
        Yuan(report::total_fen(&entries))
    );
    println!(
        "  each payment also went out as a signed webhook event; README, \"Payment events\", shows how to send them to your web shop, V免签 or MQTT."
    );
    Ok(())
}

/// The speaker, or a null output that only counts samples (`--dry-run`).
#[cfg(feature = "demo")]
fn spawn_player(config: &Config, dry_run: bool) -> anyhow::Result<paysay::audio::PlayerHandle> {
    let player = if dry_run {
        Player::spawn_with(&config.audio, || Box::new(NullOutput::default()))?
    } else {
        Player::spawn(&config.audio)?
    };
    Ok(player)
}

/// How `paysay ledger` prints.
#[derive(Debug, Clone, Copy)]
enum Format {
    Table,
    Csv,
    Json,
}

impl Format {
    fn pick(csv: bool, json: bool) -> Format {
        match (csv, json) {
            (true, _) => Format::Csv,
            (_, true) => Format::Json,
            _ => Format::Table,
        }
    }
}

/// The local offset at an instant. `time` refuses to read it in multi-threaded processes on
/// Unix (and some platforms cannot tell): then UTC, with one warning.
fn local_offset_reader() -> impl Fn(i64) -> UtcOffset {
    let warned = std::cell::Cell::new(false);
    move |unix| {
        report::local_offset_at(unix).unwrap_or_else(|| {
            if !warned.replace(true) {
                tracing::warn!("cannot read the local time zone; showing days and times in UTC");
            }
            UtcOffset::UTC
        })
    }
}

fn print_ledger(
    paths: &Paths,
    since: Option<Date>,
    until: Option<Date>,
    format: Format,
) -> anyhow::Result<()> {
    let offset_at = local_offset_reader();
    let until = until.unwrap_or_else(|| report::today(&offset_at));
    let since = since.unwrap_or(until);
    if since > until {
        anyhow::bail!("--since {since} is after --until {until}");
    }
    let (from, to) = report::day_range(since, until, &offset_at);
    let ledger_path = paths.ledger_db();
    // Reading must not create a ledger: a mistyped `[ledger] path` would otherwise show an
    // empty day as if nobody had paid.
    let entries = if ledger_path.exists() {
        Ledger::open(&ledger_path)
            .context("opening the payment ledger")?
            .entries(from, to)
            .context("reading the payment ledger")?
    } else {
        eprintln!(
            "paysay: no ledger at {} yet: no payment has been recorded there",
            ledger_path.display()
        );
        Vec::new()
    };
    let mut out = std::io::stdout().lock();
    print_entries(&mut out, &entries, format, &offset_at)
        .context("writing the ledger to stdout")?;
    // The table is for people: it says what WeChat counted that the ledger lacks. CSV and
    // JSON lines stay rows only; their `daily_count` fields carry the same facts.
    if let Format::Table = format {
        for gap in paysay::ledger::reconcile::gaps(&entries, &offset_at) {
            writeln!(
                out,
                "{}",
                paysay::ledger::reconcile::report_line(&gap, &offset_at)
            )
            .context("writing the ledger to stdout")?;
        }
    }
    Ok(())
}

fn print_entries(
    out: &mut impl std::io::Write,
    entries: &[paysay::ledger::Entry],
    format: Format,
    offset_at: &dyn Fn(i64) -> UtcOffset,
) -> std::io::Result<()> {
    match format {
        Format::Json => {
            for entry in entries {
                writeln!(out, "{}", report::json_line(entry, offset_at))?;
            }
        }
        Format::Csv => {
            writeln!(out, "{}", report::CSV_HEADER)?;
            for entry in entries {
                writeln!(out, "{}", report::csv_row(entry, offset_at))?;
            }
        }
        Format::Table => {
            for entry in entries {
                writeln!(out, "{}", report::table_row(entry, offset_at))?;
            }
            writeln!(out, "{}", report::total_line(entries))?;
        }
    }
    out.flush()
}
