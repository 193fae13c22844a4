//! A small HTTP/1.1 artifact server on 127.0.0.1:0 for the fetcher and end-to-end tests: serves named
//! files with `Range`, `ETag` and `If-Range`, counts body bytes sent, and can cut a connection after
//! a number of body bytes (once) to simulate a dropped link.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::{Arc, Mutex};

#[derive(Debug, Default)]
struct State {
    files: HashMap<String, (Vec<u8>, String)>,
    sent: u64,
    cut_after: Option<u64>,
    requests: Vec<String>,
    delay: std::time::Duration,
}

/// The server; clones share it.
#[derive(Debug, Clone)]
pub struct ArtifactServer {
    addr: SocketAddr,
    state: Arc<Mutex<State>>,
}

impl ArtifactServer {
    pub fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let server = Self {
            addr: listener.local_addr().unwrap(),
            state: Arc::default(),
        };
        let state = server.state.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let state = state.clone();
                std::thread::spawn(move || serve(stream, &state));
            }
        });
        server
    }

    pub fn url(&self, name: &str) -> String {
        format!("http://{}/v1/artifacts/{name}", self.addr)
    }

    /// Publish (or replace) a file; its ETag is derived from its content.
    pub fn put(&self, name: &str, bytes: Vec<u8>) {
        let etag = format!("\"{}\"", halyard_protocol::Sha256::of(&bytes).to_hex());
        self.state
            .lock()
            .unwrap()
            .files
            .insert(name.into(), (bytes, etag));
    }

    /// Cut the next response that would send body byte number `n` (counted from now), once.
    pub fn cut_after(&self, n: u64) {
        let mut s = self.state.lock().unwrap();
        s.cut_after = Some(s.sent + n);
    }

    /// Wait this long before answering each request (a slow link).
    pub fn delay(&self, delay: std::time::Duration) {
        self.state.lock().unwrap().delay = delay;
    }

    pub fn bytes_sent(&self) -> u64 {
        self.state.lock().unwrap().sent
    }

    /// Request summaries: "range=… if-range=… -> status".
    pub fn requests(&self) -> Vec<String> {
        self.state.lock().unwrap().requests.clone()
    }
}

fn serve(stream: TcpStream, state: &Mutex<State>) {
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut line = String::new();
    if reader.read_line(&mut line).unwrap_or(0) == 0 {
        return;
    }
    let path = line.split_whitespace().nth(1).unwrap_or("/").to_owned();
    let mut headers = HashMap::new();
    loop {
        let mut h = String::new();
        if reader.read_line(&mut h).unwrap_or(0) == 0 || h == "\r\n" {
            break;
        }
        if let Some((k, v)) = h.split_once(':') {
            headers.insert(k.trim().to_ascii_lowercase(), v.trim().to_owned());
        }
    }
    let name = path.rsplit('/').next().unwrap_or_default().to_owned();
    respond(stream, state, &name, &headers);
}

fn respond(mut stream: TcpStream, state: &Mutex<State>, name: &str, headers: &HashMap<String, String>) {
    let delay = state.lock().unwrap().delay;
    std::thread::sleep(delay);
    let mut s = state.lock().unwrap();
    let Some((bytes, etag)) = s.files.get(name).cloned() else {
        s.requests.push(format!("{name} -> 404"));
        drop(s);
        let _ = stream.write_all(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
        return;
    };
    let total = bytes.len() as u64;
    let range = headers.get("range").and_then(|r| parse_range(r, total));
    let if_range_ok = headers.get("if-range").is_none_or(|v| *v == etag);
    let (status, start, end) = match range {
        Some((a, b)) if if_range_ok => ("206 Partial Content", a, b),
        _ => ("200 OK", 0, total),
    };
    s.requests.push(format!(
        "{name} range={:?} if-range={:?} -> {}",
        headers.get("range"),
        headers.get("if-range"),
        &status[..3]
    ));
    let body = &bytes[start as usize..end as usize];
    let allowed = match s.cut_after {
        Some(limit) if s.sent + body.len() as u64 > limit => {
            s.cut_after = None;
            (limit.saturating_sub(s.sent)) as usize
        }
        _ => body.len(),
    };
    s.sent += allowed as u64;
    drop(s);
    let mut head = format!(
        "HTTP/1.1 {status}\r\nContent-Length: {}\r\nETag: {etag}\r\nAccept-Ranges: bytes\r\nConnection: close\r\n",
        body.len()
    );
    if status.starts_with("206") {
        head.push_str(&format!("Content-Range: bytes {start}-{}/{total}\r\n", end - 1));
    }
    head.push_str("\r\n");
    let _ = stream.write_all(head.as_bytes());
    let _ = stream.write_all(&body[..allowed]);
    let _ = stream.flush();
    let _ = stream.shutdown(Shutdown::Both);
}

/// `bytes=a-b` (inclusive) or `bytes=a-` → [a, b+1).
fn parse_range(value: &str, total: u64) -> Option<(u64, u64)> {
    let (a, b) = value.strip_prefix("bytes=")?.split_once('-')?;
    let start: u64 = a.parse().ok()?;
    let end = if b.is_empty() {
        total
    } else {
        b.parse::<u64>().ok()? + 1
    };
    (start < end && end <= total).then_some((start, end))
}
