//! An in-process HTTP/1.1 server that records every request and answers as scripted.

use std::fmt;
use std::io::{self, BufReader, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime};

use crate::http::{content_length, header_value, is_chunked, read_chunked, read_head};

/// One request as the sink received it.
#[derive(Debug, Clone)]
pub struct RecordedRequest {
    /// 0-based arrival order across all connections.
    pub index: usize,
    /// Which TCP connection carried it (1-based, in accept order): a retry on a new connection
    /// shows up as a new number.
    pub connection: u64,
    pub method: String,
    /// The request target as sent: path plus query string.
    pub path: String,
    /// Header names as sent; look them up with [`RecordedRequest::header`].
    pub headers: Vec<(String, String)>,
    /// The body, de-chunked.
    pub body: Vec<u8>,
    /// When the request's head had arrived (monotonic: subtract two to measure retry back-off).
    pub received_at: Instant,
    /// The same moment on the wall clock.
    pub received_wall: SystemTime,
}

impl RecordedRequest {
    /// First header with this name (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        header_value(&self.headers, name)
    }

    /// The body as text (lossy UTF-8).
    pub fn body_text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The body parsed as JSON; panics with the body when it is not JSON.
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!(
                "bronze-testkit: request #{} {} {} body is not JSON ({e}): {}",
                self.index,
                self.method,
                self.path,
                self.body_text()
            )
        })
    }
}

/// What the sink does with one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    /// Wait this long before answering (or before dropping).
    pub delay: Duration,
    /// Close the connection without any answer.
    pub drop_connection: bool,
}

impl Reply {
    /// Answer with this status and an empty body.
    pub fn status(status: u16) -> Reply {
        Reply {
            status,
            headers: Vec::new(),
            body: Vec::new(),
            delay: Duration::ZERO,
            drop_connection: false,
        }
    }

    /// Close the connection without answering.
    pub fn drop_connection() -> Reply {
        Reply {
            drop_connection: true,
            ..Reply::status(0)
        }
    }

    pub fn with_body(mut self, body: impl Into<Vec<u8>>) -> Reply {
        self.body = body.into();
        self
    }

    pub fn with_header(mut self, name: &str, value: &str) -> Reply {
        self.headers.push((name.to_string(), value.to_string()));
        self
    }

    /// Add `delay` before the answer (delays add up).
    pub fn after(mut self, delay: Duration) -> Reply {
        self.delay += delay;
        self
    }
}

type Decide = dyn Fn(&RecordedRequest) -> Reply + Send + Sync;

/// The sink's script. Change it at any time with [`HttpSink::set_behaviour`].
#[derive(Clone)]
pub enum Behaviour {
    /// Answer every request with this status and an empty body.
    Status(u16),
    /// Answer the next `remaining` requests with `status`, then behave like `then`.
    FailNext {
        remaining: usize,
        status: u16,
        then: Box<Behaviour>,
    },
    /// Wait `delay` (to trigger client time-outs), then behave like `then`.
    Delay {
        delay: Duration,
        then: Box<Behaviour>,
    },
    /// Read the request, then close the connection without answering.
    DropConnection,
    /// Decide per request (keep it quick; return `Reply::..after(d)` to delay). Called with the
    /// script locked, so requests are decided one at a time.
    Custom(Arc<Decide>),
}

impl Behaviour {
    /// Always 200.
    pub fn ok() -> Behaviour {
        Behaviour::Status(200)
    }

    /// Always 201.
    pub fn created() -> Behaviour {
        Behaviour::Status(201)
    }

    /// The next `n` requests get 500, then 200.
    pub fn fail_next(n: usize) -> Behaviour {
        Behaviour::FailNext {
            remaining: n,
            status: 500,
            then: Box::new(Behaviour::ok()),
        }
    }

    /// Answer 200 after `delay`.
    pub fn delay(delay: Duration) -> Behaviour {
        Behaviour::Delay {
            delay,
            then: Box::new(Behaviour::ok()),
        }
    }

    /// Close every connection without answering.
    pub fn drop_connection() -> Behaviour {
        Behaviour::DropConnection
    }

    /// Decide per request with a closure.
    pub fn custom(f: impl Fn(&RecordedRequest) -> Reply + Send + Sync + 'static) -> Behaviour {
        Behaviour::Custom(Arc::new(f))
    }

    fn decide(&mut self, req: &RecordedRequest) -> Reply {
        match self {
            Behaviour::Status(s) => Reply::status(*s),
            Behaviour::FailNext {
                remaining,
                status,
                then,
            } => {
                if *remaining > 0 {
                    *remaining -= 1;
                    Reply::status(*status)
                } else {
                    then.decide(req)
                }
            }
            Behaviour::Delay { delay, then } => then.decide(req).after(*delay),
            Behaviour::DropConnection => Reply::drop_connection(),
            Behaviour::Custom(f) => f(req),
        }
    }
}

impl fmt::Debug for Behaviour {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Behaviour::Status(s) => write!(f, "Status({s})"),
            Behaviour::FailNext {
                remaining,
                status,
                then,
            } => {
                write!(
                    f,
                    "FailNext {{ remaining: {remaining}, status: {status}, then: {then:?} }}"
                )
            }
            Behaviour::Delay { delay, then } => {
                write!(f, "Delay {{ delay: {delay:?}, then: {then:?} }}")
            }
            Behaviour::DropConnection => write!(f, "DropConnection"),
            Behaviour::Custom(_) => write!(f, "Custom(..)"),
        }
    }
}

struct Shared {
    requests: Mutex<Vec<RecordedRequest>>,
    arrived: Condvar,
    behaviour: Mutex<Behaviour>,
    shutdown: AtomicBool,
    stop: Mutex<()>,
    stop_cv: Condvar,
    connections: Mutex<Vec<JoinHandle<()>>>,
    next_connection: AtomicU64,
    next_index: AtomicUsize,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panicking test thread must not turn every later call into a second panic.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// An HTTP/1.1 server on `127.0.0.1:<free port>`, in this process (std threads, no runtime),
/// recording every request and answering per its [`Behaviour`]. Keep-alive, chunked request
/// bodies and `Expect: 100-continue` are supported. Stopped (threads joined, sockets closed) on
/// Drop.
pub struct HttpSink {
    addr: SocketAddr,
    shared: Arc<Shared>,
    accept: Option<JoinHandle<()>>,
}

impl HttpSink {
    /// Start the sink with its initial behaviour (e.g. [`Behaviour::ok()`]).
    pub fn start(behaviour: Behaviour) -> HttpSink {
        let listener = TcpListener::bind("127.0.0.1:0")
            .unwrap_or_else(|e| panic!("bronze-testkit: HttpSink cannot bind 127.0.0.1:0: {e}"));
        let addr = listener
            .local_addr()
            .unwrap_or_else(|e| panic!("bronze-testkit: HttpSink local_addr: {e}"));
        let shared = Arc::new(Shared {
            requests: Mutex::new(Vec::new()),
            arrived: Condvar::new(),
            behaviour: Mutex::new(behaviour),
            shutdown: AtomicBool::new(false),
            stop: Mutex::new(()),
            stop_cv: Condvar::new(),
            connections: Mutex::new(Vec::new()),
            next_connection: AtomicU64::new(1),
            next_index: AtomicUsize::new(0),
        });
        let accept_shared = Arc::clone(&shared);
        let accept = std::thread::Builder::new()
            .name(format!("http-sink-{}", addr.port()))
            .spawn(move || accept_loop(listener, accept_shared))
            .unwrap_or_else(|e| panic!("bronze-testkit: cannot spawn HttpSink thread: {e}"));
        HttpSink {
            addr,
            shared,
            accept: Some(accept),
        }
    }

    /// `http://127.0.0.1:PORT`
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Everything received so far, in arrival order.
    pub fn requests(&self) -> Vec<RecordedRequest> {
        lock(&self.shared.requests).clone()
    }

    /// Number of requests received so far.
    pub fn request_count(&self) -> usize {
        lock(&self.shared.requests).len()
    }

    /// Forget the recorded requests (indices keep counting up).
    pub fn clear_requests(&self) {
        lock(&self.shared.requests).clear();
    }

    /// Replace the script; applies to requests decided from now on.
    pub fn set_behaviour(&self, behaviour: Behaviour) {
        *lock(&self.shared.behaviour) = behaviour;
    }

    /// Block until at least `n` requests have been recorded, and return them all. Panics after
    /// `timeout` with what did arrive.
    pub fn wait_for_requests(&self, n: usize, timeout: Duration) -> Vec<RecordedRequest> {
        let deadline = Instant::now() + timeout;
        let mut reqs = lock(&self.shared.requests);
        while reqs.len() < n {
            let now = Instant::now();
            if now >= deadline {
                let seen: Vec<String> = reqs
                    .iter()
                    .map(|r| {
                        format!(
                            "  #{} {} {} ({} body bytes)",
                            r.index,
                            r.method,
                            r.path,
                            r.body.len()
                        )
                    })
                    .collect();
                panic!(
                    "bronze-testkit: HttpSink {} got {} of {n} requests within {timeout:?}:\n{}",
                    self.url(),
                    reqs.len(),
                    seen.join("\n")
                );
            }
            reqs = self
                .shared
                .arrived
                .wait_timeout(reqs, deadline - now)
                .unwrap_or_else(|p| p.into_inner())
                .0;
        }
        reqs.clone()
    }
}

impl Drop for HttpSink {
    fn drop(&mut self) {
        self.shared.shutdown.store(true, Ordering::SeqCst);
        {
            let _g = lock(&self.shared.stop);
            self.shared.stop_cv.notify_all();
        }
        // Wake the blocking accept().
        let _ = TcpStream::connect_timeout(&self.addr, Duration::from_secs(1));
        if let Some(t) = self.accept.take() {
            let _ = t.join();
        }
        let conns: Vec<_> = lock(&self.shared.connections).drain(..).collect();
        for c in conns {
            let _ = c.join();
        }
    }
}

fn accept_loop(listener: TcpListener, shared: Arc<Shared>) {
    for stream in listener.incoming() {
        if shared.shutdown.load(Ordering::SeqCst) {
            return;
        }
        let Ok(stream) = stream else {
            // e.g. out of file descriptors: do not spin.
            std::thread::sleep(Duration::from_millis(10));
            continue;
        };
        let id = shared.next_connection.fetch_add(1, Ordering::SeqCst);
        let conn_shared = Arc::clone(&shared);
        let handle = std::thread::Builder::new()
            .name(format!("http-sink-conn-{id}"))
            .spawn(move || {
                let _ = serve(stream, id, &conn_shared);
            });
        if let Ok(h) = handle {
            let mut conns = lock(&shared.connections);
            conns.retain(|h| !h.is_finished());
            conns.push(h);
        }
    }
}

/// Reads that wait through read time-outs until the sink shuts down, so a partial request is
/// never lost and idle keep-alive connections notice shutdown.
struct PatientStream<'a> {
    stream: TcpStream,
    shared: &'a Shared,
}

impl Read for PatientStream<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        loop {
            match self.stream.read(buf) {
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                    ) =>
                {
                    if self.shared.shutdown.load(Ordering::SeqCst) {
                        return Err(e);
                    }
                }
                other => return other,
            }
        }
    }
}

fn serve(stream: TcpStream, connection: u64, shared: &Shared) -> io::Result<()> {
    stream.set_read_timeout(Some(Duration::from_millis(100)))?;
    stream.set_write_timeout(Some(Duration::from_secs(10)))?;
    stream.set_nodelay(true)?;
    let mut writer = stream.try_clone()?;
    let mut reader = BufReader::new(PatientStream { stream, shared });
    loop {
        let Some((start, headers)) = read_head(&mut reader)? else {
            return Ok(()); // client closed
        };
        let received_at = Instant::now();
        let received_wall = SystemTime::now();
        let mut parts = start.split_whitespace();
        let method = parts.next().unwrap_or("").to_string();
        let path = parts.next().unwrap_or("").to_string();
        let version = parts.next().unwrap_or("HTTP/1.1").to_string();

        if header_value(&headers, "expect").is_some_and(|v| v.eq_ignore_ascii_case("100-continue"))
        {
            writer.write_all(b"HTTP/1.1 100 Continue\r\n\r\n")?;
        }
        let body = if is_chunked(&headers) {
            read_chunked(&mut reader)?
        } else if let Some(len) = content_length(&headers)? {
            let mut buf = vec![0; len];
            reader.read_exact(&mut buf)?;
            buf
        } else {
            Vec::new()
        };
        let close_requested = header_value(&headers, "connection")
            .is_some_and(|v| v.eq_ignore_ascii_case("close"))
            || version == "HTTP/1.0";

        let reply = {
            // The script lock orders decisions and recording, so indices follow arrival order.
            let mut behaviour = lock(&shared.behaviour);
            let req = RecordedRequest {
                index: shared.next_index.fetch_add(1, Ordering::SeqCst),
                connection,
                method,
                path,
                headers,
                body,
                received_at,
                received_wall,
            };
            let reply = behaviour.decide(&req);
            lock(&shared.requests).push(req);
            shared.arrived.notify_all();
            reply
        };

        if !reply.delay.is_zero() && !sleep_unless_shutdown(shared, reply.delay) {
            let _ = writer.shutdown(Shutdown::Both);
            return Ok(());
        }
        if reply.drop_connection {
            let _ = writer.shutdown(Shutdown::Both);
            return Ok(());
        }
        let mut head = format!("HTTP/1.1 {} {}\r\n", reply.status, reason(reply.status));
        for (k, v) in &reply.headers {
            head.push_str(&format!("{k}: {v}\r\n"));
        }
        head.push_str(&format!("Content-Length: {}\r\n", reply.body.len()));
        head.push_str(if close_requested {
            "Connection: close\r\n\r\n"
        } else {
            "Connection: keep-alive\r\n\r\n"
        });
        writer.write_all(head.as_bytes())?;
        writer.write_all(&reply.body)?;
        writer.flush()?;
        if close_requested {
            let _ = writer.shutdown(Shutdown::Both);
            return Ok(());
        }
    }
}

/// Sleep, waking early on shutdown. Returns false when shutting down.
fn sleep_unless_shutdown(shared: &Shared, delay: Duration) -> bool {
    let deadline = Instant::now() + delay;
    let mut guard = lock(&shared.stop);
    loop {
        if shared.shutdown.load(Ordering::SeqCst) {
            return false;
        }
        let now = Instant::now();
        if now >= deadline {
            return true;
        }
        guard = shared
            .stop_cv
            .wait_timeout(guard, deadline - now)
            .unwrap_or_else(|p| p.into_inner())
            .0;
    }
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        201 => "Created",
        202 => "Accepted",
        204 => "No Content",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        408 => "Request Timeout",
        409 => "Conflict",
        413 => "Payload Too Large",
        429 => "Too Many Requests",
        500 => "Internal Server Error",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        _ => "Status",
    }
}
