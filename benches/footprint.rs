//! Footprint of `paysay run` logged in and idle: the real release binary against the
//! simulator (25 s long-polls, as WeChat's), sampled from `/proc/<pid>`.
//!
//! Targets: peak RSS (VmHWM) ≤ 20 MB, CPU ≤ 1 % of one core, no growth in RSS or open
//! files. The full run is ten minutes; the default is one for a quick check:
//!
//!     cargo bench --bench footprint                    # 60 s
//!     cargo bench --bench footprint -- --secs 600      # the full run
//!     cargo bench --bench footprint -- --bin PATH      # another paysay binary (an older
//!                                                      # build, --no-default-features)
//!     cargo bench --bench footprint -- --sinks true    # with every event sink configured
//!     cargo bench --bench footprint -- --web false     # no `[web]` in the config, for a
//!                                                      # build from before the shop's page
//!
//!     cargo bench --bench footprint -- --compose never # no voice bank (issue 20: the
//!                                                      # default builds and holds one)
//!     cargo bench --bench footprint -- --cache DIR     # XDG_CACHE_HOME kept between runs
//!                                                      # (the bank built by an earlier run)
//!
//! `--sinks true` adds a `[[webhook]]`, `[vmq]` and `[mqtt]` to the config: the webhook and
//! V免签 point at a small loopback stand-in the bench runs (it answers every request with
//! V免签's `{"code":1}` and counts them by path: heartbeats come every 30 s, and nothing goes
//! to the webhook while idle), the MQTT sink at a mosquitto broker the bench starts.
//!
//! At the end it prints where the resident memory is, from `/proc/<pid>/smaps`: the
//! binary's own pages, shared libraries, the heap, and the threads' stacks.

mod common;

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use wechat_sim::{Endpoint, SimConfig};

use common::mosquitto::Broker;
use common::{SimServer, arg, arg_str};

fn main() {
    let secs: u64 = arg("--secs", 60);
    let every = Duration::from_secs(arg("--every", (secs / 12).clamp(1, 60)));
    let scratch = tempfile::tempdir().expect("a scratch dir");
    let server = SimServer::start(SimConfig {
        auto_login: Some(Duration::from_millis(300)),
        ..SimConfig::default()
    });
    let config = scratch.path().join("config.toml");
    let mut toml = format!(
        "[wechat]\nbase_url = \"{}\"\n\n[audio]\nidle_close_ms = 1500\n",
        server.sim.base_url()
    );
    if arg("--web", true) {
        // The shop's page on a free port: served, as by default, and two runs side by side
        // do not fight over 8151.
        toml.push_str("\n[web]\nlisten = \"127.0.0.1:0\"\n");
    }
    let compose = arg_str("--compose", "");
    if !compose.is_empty() {
        toml.push_str(&format!("\n[speech]\ncompose = \"{compose}\"\n"));
    }
    let sinks = arg("--sinks", false).then(|| {
        let sinks = Sinks::start();
        toml.push_str(&sinks.config());
        sinks
    });
    std::fs::write(&config, toml).expect("the config file");
    let bin = arg_str("--bin", env!("CARGO_BIN_EXE_paysay"));
    println!(
        "binary: {bin} ({} bytes)",
        std::fs::metadata(&bin).map_or(0, |m| m.len())
    );
    let mut child = spawn_paysay(&bin, &config, scratch.path());
    let pid = child.id();
    let logged_in = server.runtime.block_on(server.sim.wait_for_requests(
        Endpoint::Sync,
        1,
        Duration::from_secs(60),
    ));
    assert!(logged_in, "paysay did not log in; see {:?}", scratch.path());
    // Past login and the first sync: from here on the daemon only long-polls.
    std::thread::sleep(Duration::from_secs(2));

    let ticks = clock_ticks_per_second();
    println!(
        "footprint: paysay run (pid {pid}), idle for {secs} s, sampled every {} s",
        every.as_secs()
    );
    println!(
        "{:>6} {:>9} {:>9} {:>6} {:>8} {:>8}",
        "t/s", "RSS/kB", "HWM/kB", "fds", "threads", "CPU%"
    );
    let first = Sample::take(pid);
    let started = Instant::now();
    let mut samples = vec![(0.0, first.clone())];
    let mut last = (Instant::now(), first.clone());
    while started.elapsed() < Duration::from_secs(secs) {
        std::thread::sleep(every);
        let now = Sample::take(pid);
        let cpu = cpu_percent(&last.1, &now, last.0.elapsed(), ticks);
        let t = started.elapsed().as_secs_f64();
        println!(
            "{t:>6.0} {:>9} {:>9} {:>6} {:>8} {cpu:>8.3}",
            now.rss_kb, now.hwm_kb, now.fds, now.threads
        );
        samples.push((t, now.clone()));
        last = (Instant::now(), now);
    }
    let end = last.1;
    let cpu = cpu_percent(&first, &end, started.elapsed(), ticks);
    println!(
        "summary: peak RSS (VmHWM) {:.1} MB, RSS {:.1} → {:.1} MB, fds {} → {}, CPU {cpu:.3} % of one core over {:.0} s",
        end.hwm_kb as f64 / 1024.0,
        first.rss_kb as f64 / 1024.0,
        end.rss_kb as f64 / 1024.0,
        first.fds,
        end.fds,
        started.elapsed().as_secs_f64(),
    );
    println!(
        "RSS trend over the run: {:+.1} kB/min",
        rss_slope_kb_per_min(&samples)
    );
    print_where_rss_is(pid, &bin);
    stop(&mut child);
    report_log(scratch.path());
    if let Some(sinks) = sinks {
        sinks.report(scratch.path());
    }
    server.stop();
}

/// What `--sinks` adds: a loopback stand-in for the webhook receiver and the V免签 server,
/// and a mosquitto broker.
struct Sinks {
    stand_in: u16,
    /// Requests the stand-in answered, by path (`/appHeart`, `/hook`, …).
    requests: Arc<Mutex<Vec<String>>>,
    broker: Broker,
}

impl Sinks {
    fn start() -> Sinks {
        let listener = TcpListener::bind("127.0.0.1:0").expect("a port for the stand-in");
        let stand_in = listener.local_addr().expect("an address").port();
        let requests = Arc::new(Mutex::new(Vec::new()));
        let seen = requests.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                if let Some(path) = answer(stream) {
                    seen.lock().unwrap_or_else(|e| e.into_inner()).push(path);
                }
            }
        });
        Sinks {
            stand_in,
            requests,
            broker: Broker::start(),
        }
    }

    fn config(&self) -> String {
        format!(
            "\n[[webhook]]\nurl = \"http://127.0.0.1:{0}/hook\"\nsecret = \"bench-secret\"\n\n[vmq]\nserver = \"127.0.0.1:{0}/benchkey\"\n\n[mqtt]\nurl = \"{1}\"\n",
            self.stand_in,
            self.broker.url()
        )
    }

    /// What the sinks saw: requests to the stand-in by path, and the MQTT connection from
    /// the daemon's log.
    fn report(&self, scratch: &Path) {
        let requests = self.requests.lock().unwrap_or_else(|e| e.into_inner());
        let count = |path: &str| requests.iter().filter(|p| p.as_str() == path).count();
        println!(
            "sinks: {} V免签 heartbeats, {} webhook requests, {} other requests to the stand-in",
            count("/appHeart"),
            count("/hook"),
            requests.len() - count("/appHeart") - count("/hook"),
        );
        let log = std::fs::read_to_string(scratch.join("paysay.log")).unwrap_or_default();
        println!(
            "sinks: the daemon's log says \"connected to the MQTT broker\" {} times",
            log.matches("connected to the MQTT broker").count()
        );
    }
}

/// Answers one HTTP request as V免签 answers a good one; returns its path.
fn answer(mut stream: TcpStream) -> Option<String> {
    let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
    let mut head = Vec::new();
    let mut buf = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < 16 * 1024 {
        let n = stream.read(&mut buf).ok().filter(|n| *n > 0)?;
        head.extend_from_slice(&buf[..n]);
    }
    let head = String::from_utf8_lossy(&head);
    let target = head.split_whitespace().nth(1)?;
    let path = target.split('?').next().unwrap_or(target).to_string();
    let body = r#"{"code":1,"msg":"成功","data":null}"#;
    let _ = write!(
        stream,
        "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    Some(path)
}

/// Resident memory by kind of mapping, from `/proc/<pid>/smaps`: the binary's own pages
/// (code and data), shared libraries, the heap (`[heap]` and the anonymous mappings malloc
/// takes for its per-thread arenas and large blocks), and each thread's stack.
fn print_where_rss_is(pid: u32, bin: &str) {
    let smaps = std::fs::read_to_string(format!("/proc/{pid}/smaps")).unwrap_or_default();
    let bin_name = Path::new(bin)
        .file_name()
        .map(|n| n.to_string_lossy().into_owned());
    let mut kinds: Vec<(String, u64)> = Vec::new();
    let mut current = String::new();
    for line in smaps.lines() {
        let mut words = line.split_whitespace();
        let first = words.next().unwrap_or("");
        if first.contains('-') && first.contains(|c: char| c.is_ascii_hexdigit()) {
            // A mapping's header: address perms offset dev inode [path].
            let path = line.split_whitespace().nth(5).unwrap_or("");
            current = match path {
                "" => "anonymous (malloc arenas, thread stacks)".into(),
                "[heap]" => "[heap] (the main malloc arena)".into(),
                "[stack]" => "[stack] (the main thread)".into(),
                p if bin_name.as_deref().is_some_and(|b| p.ends_with(b)) => {
                    "the paysay binary".into()
                }
                p if p.contains(".so") => format!(
                    "lib {}",
                    Path::new(p)
                        .file_name()
                        .map_or(p.into(), |n| n.to_string_lossy())
                ),
                p => p.to_string(),
            };
        } else if first == "Rss:" {
            let kb: u64 = words.next().and_then(|v| v.parse().ok()).unwrap_or(0);
            match kinds.iter_mut().find(|(k, _)| *k == current) {
                Some((_, total)) => *total += kb,
                None => kinds.push((current.clone(), kb)),
            }
        }
    }
    kinds.sort_by_key(|(_, kb)| std::cmp::Reverse(*kb));
    println!("where the resident memory is (kB):");
    for (kind, kb) in kinds.iter().filter(|(_, kb)| *kb >= 64) {
        println!("  {kb:>7}  {kind}");
    }
    let rest: u64 = kinds
        .iter()
        .filter(|(_, kb)| *kb < 64)
        .map(|(_, kb)| kb)
        .sum();
    println!("  {rest:>7}  everything else");
}

/// The scratch dir's cache, or `--cache DIR` (kept between runs: a second run starts with
/// the voice bank the first one built, as a shop's daemon does after its first day).
fn cache_home(scratch: &Path) -> std::path::PathBuf {
    let kept = arg_str("--cache", "");
    if kept.is_empty() {
        scratch.join("cache")
    } else {
        kept.into()
    }
}

fn spawn_paysay(bin: &str, config: &Path, scratch: &Path) -> Child {
    let log = std::fs::File::create(scratch.join("paysay.log")).expect("a log file");
    Command::new(bin)
        .arg("--config")
        .arg(config)
        .arg("run")
        .env("XDG_STATE_HOME", scratch.join("state"))
        .env("XDG_CACHE_HOME", cache_home(scratch))
        .env("XDG_CONFIG_HOME", scratch.join("config"))
        // A sound device without a sound card: the login alert is heard, and the daemon
        // goes idle rather than retrying a speaker that is not there.
        .env(
            "ALSA_CONFIG_PATH",
            concat!(env!("CARGO_MANIFEST_DIR"), "/tests/asound-capture.conf"),
        )
        .env("AUDIO_CAPTURE", scratch.join("capture.wav"))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .expect("paysay starts")
}

/// SIGTERM, as systemd stops it, then wait for the clean exit.
fn stop(child: &mut Child) {
    let _ = Command::new("kill")
        .arg("-TERM")
        .arg(child.id().to_string())
        .status();
    match child.wait() {
        Ok(status) if status.success() => {}
        Ok(status) => println!("paysay exited with {status}"),
        Err(e) => println!("cannot wait for paysay: {e}"),
    }
}

/// What `/proc/<pid>` says at one moment.
#[derive(Debug, Clone)]
struct Sample {
    rss_kb: u64,
    hwm_kb: u64,
    threads: u64,
    fds: usize,
    /// utime + stime, in clock ticks.
    cpu_ticks: u64,
}

impl Sample {
    fn take(pid: u32) -> Sample {
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
        let field = |name: &str| {
            status
                .lines()
                .find_map(|l| l.strip_prefix(name))
                .and_then(|v| v.split_whitespace().next())
                .and_then(|v| v.parse().ok())
                .unwrap_or(0)
        };
        let fds = std::fs::read_dir(format!("/proc/{pid}/fd")).map_or(0, |d| d.count());
        Sample {
            rss_kb: field("VmRSS:"),
            hwm_kb: field("VmHWM:"),
            threads: field("Threads:"),
            fds,
            cpu_ticks: cpu_ticks(pid),
        }
    }
}

/// utime + stime from `/proc/<pid>/stat` (fields 14 and 15, counted after the `(comm)`,
/// which may hold spaces).
fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let after_comm = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
    let fields: Vec<&str> = after_comm.split_whitespace().collect();
    let get = |i: usize| {
        fields
            .get(i)
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0)
    };
    // After the comm: state is index 0, so utime (field 14) is 11 and stime 12.
    get(11) + get(12)
}

fn clock_ticks_per_second() -> f64 {
    Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(100.0)
}

fn cpu_percent(from: &Sample, to: &Sample, over: Duration, ticks: f64) -> f64 {
    let used = to.cpu_ticks.saturating_sub(from.cpu_ticks) as f64 / ticks;
    100.0 * used / over.as_secs_f64().max(1e-9)
}

/// Least-squares slope of RSS over time.
fn rss_slope_kb_per_min(samples: &[(f64, Sample)]) -> f64 {
    let n = samples.len() as f64;
    if n < 2.0 {
        return 0.0;
    }
    let mean_t = samples.iter().map(|(t, _)| t).sum::<f64>() / n;
    let mean_r = samples.iter().map(|(_, s)| s.rss_kb as f64).sum::<f64>() / n;
    let (mut num, mut den) = (0.0, 0.0);
    for (t, s) in samples {
        num += (t - mean_t) * (s.rss_kb as f64 - mean_r);
        den += (t - mean_t) * (t - mean_t);
    }
    if den == 0.0 { 0.0 } else { 60.0 * num / den }
}

/// What the daemon logged besides the routine: warnings and errors say the run was not idle.
fn report_log(scratch: &Path) {
    let log = std::fs::read_to_string(scratch.join("paysay.log")).unwrap_or_default();
    let trouble: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("WARN") || l.contains("ERROR"))
        .collect();
    println!(
        "paysay logged {} lines, {} warnings or errors",
        log.lines().count(),
        trouble.len()
    );
    for line in trouble.iter().take(5) {
        println!("  {line}");
    }
}
