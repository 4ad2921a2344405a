//! A read-only S3 endpoint over a local directory, with an optional delay added to every request:
//! the cloud-latency benchmark's store. moto answers a few hundred requests a second, far below
//! the rates this must measure; this serves thousands from plain files.
//!
//! Path-style requests only (`GET|HEAD /BUCKET/KEY`, as object_store sends them to a custom
//! endpoint); the bucket name is ignored and KEY is a file under the root. Signatures are not
//! checked. Anything else (listing, writes) gets `501`: a bounded copy of a datastore only GETs.
//! One thread per connection, HTTP/1.1 keep-alive, so the delay is paid per request as a client
//! with a connection pool pays a cloud's latency.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Component, Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

/// A running server; stopped (no new connections) when dropped.
pub struct S3Dir {
    addr: SocketAddr,
    requests: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
}

impl S3Dir {
    /// Serves `root` on `127.0.0.1` (a free port), sleeping `delay` before answering each request.
    pub fn start(root: impl Into<PathBuf>, delay: Duration) -> S3Dir {
        let listener = TcpListener::bind("127.0.0.1:0")
            .unwrap_or_else(|e| panic!("bronze-testkit: s3dir cannot bind 127.0.0.1:0: {e}"));
        Self::serve(listener, root.into(), delay)
    }

    /// Serves `root` on an already bound listener, in background threads.
    pub fn serve(listener: TcpListener, root: PathBuf, delay: Duration) -> S3Dir {
        let addr = listener
            .local_addr()
            .expect("bound listener has an address");
        let requests = Arc::new(AtomicU64::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let (count, stopped) = (requests.clone(), stop.clone());
        let root = Arc::new(root);
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                if stopped.load(Ordering::Relaxed) {
                    break;
                }
                let Ok(stream) = stream else { continue };
                let (root, count) = (root.clone(), count.clone());
                std::thread::spawn(move || {
                    let _ = connection(stream, &root, delay, &count);
                });
            }
        });
        S3Dir {
            addr,
            requests,
            stop,
        }
    }

    /// `http://127.0.0.1:PORT`, for `source.s3_endpoint`.
    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Requests answered so far.
    pub fn requests(&self) -> u64 {
        self.requests.load(Ordering::Relaxed)
    }
}

impl Drop for S3Dir {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        // Wake the accept loop so it sees the flag.
        let _ = TcpStream::connect(self.addr);
    }
}

fn connection(
    stream: TcpStream,
    root: &Path,
    delay: Duration,
    count: &AtomicU64,
) -> std::io::Result<()> {
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
        if !delay.is_zero() {
            std::thread::sleep(delay);
        }
        count.fetch_add(1, Ordering::Relaxed);
        let (status, body) = answer(&method, &target, root);
        let head = format!(
            "HTTP/1.1 {status}\r\nContent-Length: {}\r\nETag: \"{}\"\r\nLast-Modified: Thu, 01 Jan 2026 00:00:00 GMT\r\nContent-Type: application/octet-stream\r\n\r\n",
            body.len(),
            body.len()
        );
        out.write_all(head.as_bytes())?;
        if method != "HEAD" {
            out.write_all(&body)?;
        }
        if close {
            return Ok(());
        }
    }
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
    fn percent_decoding() {
        assert_eq!(percent_decode("a%2Fb%20c"), "a/b c");
        assert_eq!(percent_decode("plain--1.xdr.zst"), "plain--1.xdr.zst");
        assert_eq!(percent_decode("bad%zz"), "bad%zz");
    }
}
