//! [`FileServer`]: an in-process HTTP/1.1 server on loopback that serves a directory's files by
//! GET (a static web server, as history archives are served), 404 for anything missing, with
//! scripted answers for chosen paths (a redirect, an HTML error page) and a log of the paths
//! asked for.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

/// A scripted answer: status, extra headers, body.
#[derive(Debug, Clone)]
pub struct Scripted {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

#[derive(Default)]
struct Shared {
    scripted: Mutex<HashMap<String, Scripted>>,
    requests: Mutex<Vec<String>>,
    stop: AtomicBool,
}

/// Serves `root` on `http://127.0.0.1:<port>/`; stopped when dropped.
pub struct FileServer {
    port: u16,
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
}

impl FileServer {
    pub fn start(root: impl Into<PathBuf>) -> FileServer {
        let root = root.into();
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
        let port = listener.local_addr().expect("bound").port();
        let shared = Arc::new(Shared::default());
        let serving = shared.clone();
        let thread = std::thread::spawn(move || {
            for stream in listener.incoming() {
                if serving.stop.load(Ordering::SeqCst) {
                    return;
                }
                let Ok(stream) = stream else { continue };
                let (root, shared) = (root.clone(), serving.clone());
                std::thread::spawn(move || {
                    let _ = serve(stream, &root, &shared);
                });
            }
        });
        FileServer {
            port,
            shared,
            thread: Some(thread),
        }
    }

    /// `http://127.0.0.1:<port>` (no trailing `/`).
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Answers `path` (relative, no leading `/`) with `answer` instead of the file.
    pub fn script(&self, path: &str, answer: Scripted) {
        self.shared
            .scripted
            .lock()
            .unwrap()
            .insert(path.trim_start_matches('/').to_string(), answer);
    }

    /// The paths requested so far, in order.
    pub fn requests(&self) -> Vec<String> {
        self.shared.requests.lock().unwrap().clone()
    }
}

impl Drop for FileServer {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(("127.0.0.1", self.port));
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn serve(stream: TcpStream, root: &std::path::Path, shared: &Shared) -> std::io::Result<()> {
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut line = String::new();
    reader.read_line(&mut line)?;
    loop {
        let mut header = String::new();
        if reader.read_line(&mut header)? == 0 || header.trim().is_empty() {
            break;
        }
    }
    let mut parts = line.split_whitespace();
    let (method, target) = (parts.next().unwrap_or(""), parts.next().unwrap_or("/"));
    let path = target
        .split('?')
        .next()
        .unwrap_or("")
        .trim_start_matches('/')
        .to_string();
    shared.requests.lock().unwrap().push(path.clone());
    let scripted = shared.scripted.lock().unwrap().get(&path).cloned();
    let answer = match scripted {
        Some(answer) => answer,
        None if method != "GET" || path.split('/').any(|p| p == "..") => Scripted {
            status: 400,
            headers: Vec::new(),
            body: Vec::new(),
        },
        None => match std::fs::read(root.join(&path)) {
            Ok(body) => Scripted {
                status: 200,
                headers: vec![("Content-Type".into(), "application/octet-stream".into())],
                body,
            },
            Err(_) => Scripted {
                status: 404,
                headers: vec![("Content-Type".into(), "text/plain".into())],
                body: b"not found".to_vec(),
            },
        },
    };
    let mut out = stream;
    let mut head = format!(
        "HTTP/1.1 {} X\r\nContent-Length: {}\r\nConnection: close\r\n",
        answer.status,
        answer.body.len()
    );
    for (k, v) in &answer.headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str("\r\n");
    out.write_all(head.as_bytes())?;
    out.write_all(&answer.body)?;
    out.flush()
}
