//! A read-only S3 endpoint over a local directory, with an optional delay added to every request
//! and optional injected faults: the cloud-latency and cloud-faults benchmarks' store. moto
//! answers a few hundred requests a second, far below the rates this must measure; this serves
//! thousands from plain files.
//!
//! [`Faults`] inject what clouds do, seeded: `503 SlowDown` and `500 InternalError` with S3 XML
//! error bodies, connections reset (TCP RST) after half the body, and stalls (the headers and half
//! the body, then nothing for a while, then the rest). Whether the n-th request for a key is
//! faulted depends only on the seed, the key and n, so a run is reproducible whatever the order
//! in which concurrent requests arrive.
//!
//! Path-style requests only (`GET|HEAD /BUCKET/KEY`, as object_store sends them to a custom
//! endpoint); the bucket name is ignored and KEY is a file under the root. Signatures are not
//! checked. Anything else (listing, writes) gets `501`: a bounded copy of a datastore only GETs.
//! One thread per connection, HTTP/1.1 keep-alive, so the delay is paid per request as a client
//! with a connection pool pays a cloud's latency.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::fd::AsFd;
use std::path::{Component, Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Faults to inject, as fractions of requests (GET and HEAD alike), decided per request from
/// `seed`, the key and how many times that key was asked for before.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Faults {
    pub seed: u64,
    /// Answered `503 SlowDown` or `500 InternalError` (half each), with an S3 XML error body.
    pub errors: f64,
    /// Headers and half the body sent, then the connection reset (TCP RST).
    pub resets: f64,
    /// Headers and half the body sent, then nothing for `stall`, then the rest.
    pub stalls: f64,
    pub stall: Duration,
}

impl Faults {
    /// No faults.
    pub const NONE: Faults = Faults {
        seed: 0,
        errors: 0.0,
        resets: 0.0,
        stalls: 0.0,
        stall: Duration::ZERO,
    };

    /// What a cloud store does on a bad day: 5% of requests answered 503 SlowDown or 500, 1% of
    /// connections reset mid-body, one request in 2,000 stalled for 10 s.
    pub fn cloud(seed: u64) -> Faults {
        Faults {
            seed,
            errors: 0.05,
            resets: 0.01,
            stalls: 0.0005,
            stall: Duration::from_secs(10),
        }
    }

    /// Parses `cloud`, `none` or `key=value,...` over `seed`, `errors`, `resets`, `stalls` and
    /// `stall_ms`, starting from no faults (`bronze-s3dir`'s FAULTS argument).
    pub fn parse(spec: &str) -> Result<Faults, String> {
        match spec {
            "none" | "" => return Ok(Faults::NONE),
            "cloud" => return Ok(Faults::cloud(1)),
            _ => {}
        }
        let mut faults = Faults::NONE;
        for pair in spec.split(',') {
            let (key, value) = pair
                .split_once('=')
                .ok_or_else(|| format!("fault setting {pair:?} is not key=value"))?;
            let fraction = || -> Result<f64, String> {
                value
                    .parse::<f64>()
                    .ok()
                    .filter(|f| (0.0..=1.0).contains(f))
                    .ok_or_else(|| format!("{key}={value:?}: want a fraction between 0 and 1"))
            };
            let number = || -> Result<u64, String> {
                value
                    .parse::<u64>()
                    .map_err(|_| format!("{key}={value:?}: want a whole number"))
            };
            match key {
                "seed" => faults.seed = number()?,
                "errors" => faults.errors = fraction()?,
                "resets" => faults.resets = fraction()?,
                "stalls" => faults.stalls = fraction()?,
                "stall_ms" => faults.stall = Duration::from_millis(number()?),
                _ => return Err(format!("unknown fault setting {key:?}")),
            }
        }
        if faults.errors + faults.resets + faults.stalls > 1.0 {
            return Err(format!("fault fractions add up to more than 1: {spec}"));
        }
        Ok(faults)
    }

    /// The fault for the `nth` (0-based) request for `key`, if any.
    fn pick(&self, key: &str, nth: u64) -> Option<Fault> {
        let x = unit(mix(self.seed ^ fnv1a(key.as_bytes()) ^ mix(nth)));
        let mut bound = self.errors / 2.0;
        for fault in [
            Fault::SlowDown,
            Fault::InternalError,
            Fault::Reset,
            Fault::Stall,
        ] {
            if x < bound {
                return Some(fault);
            }
            bound += match fault {
                Fault::SlowDown => self.errors / 2.0,
                Fault::InternalError => self.resets,
                Fault::Reset => self.stalls,
                Fault::Stall => 0.0,
            };
        }
        None
    }
}

/// One injected fault.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Fault {
    SlowDown,
    InternalError,
    Reset,
    Stall,
}

impl Fault {
    pub fn as_str(self) -> &'static str {
        match self {
            Fault::SlowDown => "503_slowdown",
            Fault::InternalError => "500_internal_error",
            Fault::Reset => "reset",
            Fault::Stall => "stall",
        }
    }
}

/// How many faults of each kind were injected so far.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FaultCounts {
    pub slow_down: u64,
    pub internal_error: u64,
    pub resets: u64,
    pub stalls: u64,
}

impl FaultCounts {
    pub fn total(&self) -> u64 {
        self.slow_down + self.internal_error + self.resets + self.stalls
    }
}

fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// splitmix64's finaliser.
fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// A uniform fraction in [0, 1).
fn unit(x: u64) -> f64 {
    (x >> 11) as f64 / (1u64 << 53) as f64
}

/// State shared by the connection threads.
struct Shared {
    root: PathBuf,
    delay: Duration,
    faults: Faults,
    requests: AtomicU64,
    /// Requests seen per key, for [`Faults::pick`].
    seen: Mutex<HashMap<String, u64>>,
    injected: Mutex<FaultCounts>,
}

/// A running server; stopped (no new connections) when dropped.
pub struct S3Dir {
    addr: SocketAddr,
    shared: Arc<Shared>,
    stop: Arc<AtomicBool>,
}

impl S3Dir {
    /// Serves `root` on `127.0.0.1` (a free port), sleeping `delay` before answering each request.
    pub fn start(root: impl Into<PathBuf>, delay: Duration) -> S3Dir {
        Self::start_with_faults(root, delay, Faults::NONE)
    }

    /// As [`S3Dir::start`], injecting `faults`.
    pub fn start_with_faults(root: impl Into<PathBuf>, delay: Duration, faults: Faults) -> S3Dir {
        let listener = TcpListener::bind("127.0.0.1:0")
            .unwrap_or_else(|e| panic!("bronze-testkit: s3dir cannot bind 127.0.0.1:0: {e}"));
        Self::serve(listener, root.into(), delay, faults)
    }

    /// Serves `root` on an already bound listener, in background threads.
    pub fn serve(listener: TcpListener, root: PathBuf, delay: Duration, faults: Faults) -> S3Dir {
        let addr = listener
            .local_addr()
            .expect("bound listener has an address");
        let shared = Arc::new(Shared {
            root,
            delay,
            faults,
            requests: AtomicU64::new(0),
            seen: Mutex::new(HashMap::new()),
            injected: Mutex::new(FaultCounts::default()),
        });
        let stop = Arc::new(AtomicBool::new(false));
        let (server, stopped) = (shared.clone(), stop.clone());
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                if stopped.load(Ordering::Relaxed) {
                    break;
                }
                let Ok(stream) = stream else { continue };
                let shared = server.clone();
                std::thread::spawn(move || {
                    let _ = connection(stream, &shared);
                });
            }
        });
        S3Dir { addr, shared, stop }
    }

    /// `http://127.0.0.1:PORT`, for `source.s3_endpoint`.
    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Requests answered so far (faulted ones included).
    pub fn requests(&self) -> u64 {
        self.shared.requests.load(Ordering::Relaxed)
    }

    /// Faults injected so far, by kind.
    pub fn faults(&self) -> FaultCounts {
        *self.shared.injected.lock().expect("not poisoned")
    }
}

impl Drop for S3Dir {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        // Wake the accept loop so it sees the flag.
        let _ = TcpStream::connect(self.addr);
    }
}

fn connection(stream: TcpStream, shared: &Shared) -> std::io::Result<()> {
    stream.set_nodelay(true)?;
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut out = stream;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line)? == 0 {
            return Ok(());
        }
        let mut parts = line.split_whitespace();
        let (method, target) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
        let (method, target) = (method.to_string(), target.to_string());
        let mut body_len = 0u64;
        let mut close = false;
        loop {
            let mut header = String::new();
            if reader.read_line(&mut header)? == 0 {
                return Ok(());
            }
            let header = header.trim_end();
            if header.is_empty() {
                break;
            }
            if let Some((name, value)) = header.split_once(':') {
                let value = value.trim();
                if name.eq_ignore_ascii_case("content-length") {
                    body_len = value.parse().unwrap_or(0);
                } else if name.eq_ignore_ascii_case("connection") {
                    close = value.eq_ignore_ascii_case("close");
                }
            }
        }
        std::io::copy(&mut (&mut reader).take(body_len), &mut std::io::sink())?;
        if !shared.delay.is_zero() {
            std::thread::sleep(shared.delay);
        }
        shared.requests.fetch_add(1, Ordering::Relaxed);
        let fault = shared.fault_for(&target);
        if let Some(fault @ (Fault::SlowDown | Fault::InternalError)) = fault {
            out.write_all(&error_response(fault, &target))?;
            if close {
                return Ok(());
            }
            continue;
        }
        let (status, body) = answer(&method, &target, &shared.root);
        let head = format!(
            "HTTP/1.1 {status}\r\nContent-Length: {}\r\nETag: \"{}\"\r\nLast-Modified: Thu, 01 Jan 2026 00:00:00 GMT\r\nContent-Type: application/octet-stream\r\n\r\n",
            body.len(),
            body.len()
        );
        out.write_all(head.as_bytes())?;
        if method == "HEAD" {
            if fault == Some(Fault::Reset) {
                return reset(out);
            }
        } else {
            let half = body.len() / 2;
            match fault {
                Some(Fault::Reset) => {
                    out.write_all(&body[..half])?;
                    out.flush()?;
                    // Let the client read what was sent before the reset discards it.
                    std::thread::sleep(Duration::from_millis(5));
                    return reset(out);
                }
                Some(Fault::Stall) => {
                    out.write_all(&body[..half])?;
                    out.flush()?;
                    std::thread::sleep(shared.faults.stall);
                    // The client may have given up: the rest then fails to send, which is fine.
                    out.write_all(&body[half..])?;
                }
                _ => out.write_all(&body)?,
            }
        }
        if close {
            return Ok(());
        }
    }
}

impl Shared {
    /// The fault for this request, if any, counted.
    fn fault_for(&self, target: &str) -> Option<Fault> {
        if self.faults == Faults::NONE {
            return None;
        }
        let key = target.split('?').next().unwrap_or("");
        let nth = {
            let mut seen = self.seen.lock().expect("not poisoned");
            let n = seen.entry(key.to_string()).or_insert(0);
            *n += 1;
            *n - 1
        };
        let fault = self.faults.pick(key, nth)?;
        let mut injected = self.injected.lock().expect("not poisoned");
        match fault {
            Fault::SlowDown => injected.slow_down += 1,
            Fault::InternalError => injected.internal_error += 1,
            Fault::Reset => injected.resets += 1,
            Fault::Stall => injected.stalls += 1,
        }
        Some(fault)
    }
}

/// An S3 error response, as S3 words it.
fn error_response(fault: Fault, target: &str) -> Vec<u8> {
    let (status, code, message) = match fault {
        Fault::SlowDown => (
            "503 Slow Down",
            "SlowDown",
            "Please reduce your request rate.",
        ),
        _ => (
            "500 Internal Server Error",
            "InternalError",
            "We encountered an internal error. Please try again.",
        ),
    };
    let resource = target.split('?').next().unwrap_or("");
    let body = format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>{code}</Code><Message>{message}</Message><Resource>{resource}</Resource><RequestId>BRONZES3DIRFAULT</RequestId></Error>"
    );
    format!(
        "HTTP/1.1 {status}\r\nContent-Length: {}\r\nContent-Type: application/xml\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

/// Closes the connection with a TCP RST (SO_LINGER 0), as a dropped cloud connection looks.
fn reset(stream: TcpStream) -> std::io::Result<()> {
    use nix::sys::socket::{setsockopt, sockopt::Linger};
    let linger = nix::libc::linger {
        l_onoff: 1,
        l_linger: 0,
    };
    setsockopt(&stream.as_fd(), Linger, &linger).map_err(std::io::Error::from)?;
    drop(stream);
    Ok(())
}

/// The status line and body for one request.
fn answer(method: &str, target: &str, root: &Path) -> (&'static str, Vec<u8>) {
    if method != "GET" && method != "HEAD" {
        return ("501 Not Implemented", Vec::new());
    }
    let path = target.split('?').next().unwrap_or("");
    if target.contains('?') && path.trim_matches('/').split('/').count() < 2 {
        return ("501 Not Implemented", Vec::new()); // a bucket listing
    }
    // `/bucket/key...`: drop the bucket.
    let Some(key) = path.trim_start_matches('/').split_once('/').map(|(_, k)| k) else {
        return ("404 Not Found", Vec::new());
    };
    let key = percent_decode(key);
    let relative = Path::new(&key);
    if relative
        .components()
        .any(|c| !matches!(c, Component::Normal(_)))
    {
        return ("400 Bad Request", Vec::new());
    }
    match std::fs::read(root.join(relative)) {
        Ok(bytes) => ("200 OK", bytes),
        Err(_) => ("404 Not Found", Vec::new()),
    }
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && i + 2 < bytes.len()
            && let Some(v) = std::str::from_utf8(&bytes[i + 1..i + 3])
                .ok()
                .and_then(|h| u8::from_str_radix(h, 16).ok())
        {
            out.push(v);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn faults_are_seeded_per_key_and_attempt_and_near_their_rates() {
        let faults = Faults::cloud(7);
        let picks = |f: &Faults| {
            (0..20_000)
                .map(|i| f.pick(&format!("/b/key-{i}"), 0))
                .collect::<Vec<_>>()
        };
        let first = picks(&faults);
        assert_eq!(first, picks(&faults), "same seed, same faults");
        assert_ne!(
            first,
            picks(&Faults::cloud(8)),
            "another seed, other faults"
        );
        let count = |which: Fault| first.iter().filter(|f| **f == Some(which)).count();
        // 20,000 draws: 500 expected for each error kind, 200 resets, 10 stalls.
        for (fault, expected) in [
            (Fault::SlowDown, 500.0),
            (Fault::InternalError, 500.0),
            (Fault::Reset, 200.0),
        ] {
            let n = count(fault) as f64;
            assert!(
                (expected * 0.75..expected * 1.25).contains(&n),
                "{fault:?}: {n} vs {expected}"
            );
        }
        assert!((1..40).contains(&count(Fault::Stall)));
        // A retry of a faulted key is decided afresh.
        let faulted = (0..20_000)
            .find(|i| faults.pick(&format!("/b/key-{i}"), 0).is_some())
            .unwrap();
        assert!(
            (1..10).any(|n| faults.pick(&format!("/b/key-{faulted}"), n).is_none()),
            "retries get through"
        );
    }

    #[test]
    fn fault_specs_parse() {
        assert_eq!(Faults::parse("none").unwrap(), Faults::NONE);
        assert_eq!(Faults::parse("cloud").unwrap(), Faults::cloud(1));
        let f = Faults::parse("seed=3,errors=0.1,resets=0.02,stalls=0.01,stall_ms=2000").unwrap();
        assert_eq!(
            f,
            Faults {
                seed: 3,
                errors: 0.1,
                resets: 0.02,
                stalls: 0.01,
                stall: Duration::from_secs(2),
            }
        );
        assert!(Faults::parse("errors=2").is_err());
        assert!(Faults::parse("errors=0.6,resets=0.6").is_err());
        assert!(Faults::parse("bogus=1").is_err());
    }

    #[test]
    fn percent_decoding() {
        assert_eq!(percent_decode("a%2Fb%20c"), "a/b c");
        assert_eq!(percent_decode("plain--1.xdr.zst"), "plain--1.xdr.zst");
        assert_eq!(percent_decode("bad%zz"), "bad%zz");
    }
}
