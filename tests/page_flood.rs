//! The shop's page under a flood from the shop's network (issue 17), through the real
//! `paysay run` binary started with the open-file limit a service gets: connections that
//! never send their headers and event streams that never end must not take the file
//! handles the announcements, the ledger and the session need.

#![cfg(unix)]

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::unix::process::CommandExt;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use common::shop::{Shop, signal, wait_exit, wait_for};

/// The daemon's open-file limit in these tests, soft and hard alike: well below what the
/// flood opens, as systemd's default soft limit of 1,024 is below ~1,100 connections.
const NOFILE: u64 = 256;
/// Connections the flood opens.
const FLOOD: usize = 320;

/// `paysay run` with soft and hard open-file limits of [`NOFILE`], so that raising the
/// soft one to the hard one gains nothing and only the cap can keep it alive.
fn start_limited(shop: &Shop, log: &str) -> Child {
    let log = std::fs::File::create(shop.path(log)).unwrap();
    let mut cmd = shop.command(&["run"]);
    // SAFETY: setrlimit is async-signal-safe; nothing else runs between fork and exec.
    unsafe {
        cmd.pre_exec(|| {
            let limit = libc::rlimit {
                rlim_cur: NOFILE as libc::rlim_t,
                rlim_max: NOFILE as libc::rlim_t,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &limit) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    cmd.stdout(Stdio::null()).stderr(log).spawn().unwrap()
}

/// Opens `n` connections that each send half a request line and nothing more.
fn slow_connections(addr: SocketAddr, n: usize) -> Vec<TcpStream> {
    (0..n)
        .filter_map(|_| {
            let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(5)).ok()?;
            let _ = s.write_all(b"GET / HTTP/1.1\r\nHo");
            Some(s)
        })
        .collect()
}

/// What a new connection is answered, read until it closes (or 5 s).
fn answer(addr: SocketAddr, request: &[u8]) -> String {
    let Ok(mut s) = TcpStream::connect_timeout(&addr, Duration::from_secs(5)) else {
        return String::new();
    };
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let _ = s.write_all(request);
    let mut got = Vec::new();
    let _ = s.read_to_end(&mut got);
    String::from_utf8_lossy(&got).into_owned()
}

/// Whether the server has closed `s` (EOF or reset) within `within`.
fn closed(s: &mut TcpStream, within: Duration) -> bool {
    s.set_read_timeout(Some(within)).unwrap();
    let mut buf = [0u8; 512];
    loop {
        match s.read(&mut buf) {
            Ok(0) => return true,
            Ok(_) => continue,
            Err(e) => {
                return !matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                );
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_flood_of_slow_connections_to_the_page_ends_nothing() {
    let shop = Shop::new("max_connections = 32\nheader_timeout_secs = 3\n").await;
    let mut daemon = start_limited(&shop, "run.log");
    let addr = shop.page_addr("run.log").await;
    shop.log_in().await;

    let mut flood = slow_connections(addr, FLOOD);
    assert!(
        flood.len() > 200,
        "the flood connected {} times",
        flood.len()
    );
    // Beyond the cap: refused at once.
    assert!(
        answer(addr, b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n").starts_with("HTTP/1.1 503"),
        "{}",
        shop.log("run.log")
    );
    // Payments are recorded, said, and the session saved all the while.
    shop.sim.pay(1250);
    shop.sim.pay(300);
    shop.wait_announced(2).await;
    assert!(
        daemon.try_wait().unwrap().is_none(),
        "{}",
        shop.log("run.log")
    );

    // The slow ones are closed once their headers are late; the page answers again.
    let started = Instant::now();
    assert!(
        closed(&mut flood[0], Duration::from_secs(10)),
        "a slow connection stayed open"
    );
    assert!(started.elapsed() < Duration::from_secs(10));
    drop(flood);
    wait_for("the page answers again", || {
        answer(
            addr,
            b"GET /api/status HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n",
        )
        .starts_with("HTTP/1.1 200")
    })
    .await;
    shop.sim.pay(700);
    shop.wait_announced(3).await;
    signal(&daemon, "-TERM");
    assert_eq!(wait_exit(&mut daemon).await.code(), Some(0));
    let log = shop.log("run.log");
    assert!(!log.contains("Too many open files"), "{log}");
    assert_eq!(
        log.matches("too many connections").count(),
        1,
        "said once: {log}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn event_streams_beyond_the_cap_are_refused_and_payments_go_on() {
    let shop = Shop::new("max_connections = 16\n").await;
    let mut daemon = start_limited(&shop, "run.log");
    let addr = shop.page_addr("run.log").await;
    shop.log_in().await;

    // Event streams that are never read: each holds a connection for as long as it lasts.
    let streams: Vec<TcpStream> = (0..FLOOD)
        .filter_map(|_| {
            let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(5)).ok()?;
            let _ = s.write_all(b"GET /events HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n");
            Some(s)
        })
        .collect();
    assert!(streams.len() > 200);
    shop.sim.pay(1250);
    shop.wait_announced(1).await;
    assert!(
        daemon.try_wait().unwrap().is_none(),
        "{}",
        shop.log("run.log")
    );
    drop(streams);
    shop.sim.pay(300);
    shop.wait_announced(2).await;
    signal(&daemon, "-TERM");
    assert_eq!(wait_exit(&mut daemon).await.code(), Some(0));
    assert!(!shop.log("run.log").contains("Too many open files"));
}
