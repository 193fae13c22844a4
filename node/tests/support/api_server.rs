//! A scripted fleet-server HTTP API on 127.0.0.1:0 for the enrollment and polling-fallback tests:
//! each route ("POST /v1/enroll") answers with the status and body set for it (404 otherwise), and
//! every request's route and body are recorded.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::{Arc, Mutex};

#[derive(Debug, Default)]
struct State {
    routes: HashMap<String, (u16, Vec<u8>)>,
    seen: Vec<(String, Vec<u8>)>,
}

/// The server; clones share it.
#[derive(Debug, Clone)]
pub struct ApiServer {
    addr: SocketAddr,
    state: Arc<Mutex<State>>,
}

impl ApiServer {
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

    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Answer `route` ("METHOD /path") with `status` and `body` from now on.
    pub fn route(&self, route: &str, status: u16, body: impl Into<Vec<u8>>) {
        self.state
            .lock()
            .unwrap()
            .routes
            .insert(route.into(), (status, body.into()));
    }

    /// Bodies of the requests on `route` so far.
    pub fn bodies(&self, route: &str) -> Vec<Vec<u8>> {
        let s = self.state.lock().unwrap();
        s.seen
            .iter()
            .filter(|(r, _)| r == route)
            .map(|(_, b)| b.clone())
            .collect()
    }
}

fn serve(stream: TcpStream, state: &Mutex<State>) {
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut line = String::new();
    if reader.read_line(&mut line).unwrap_or(0) == 0 {
        return;
    }
    let mut parts = line.split_whitespace();
    let route = format!(
        "{} {}",
        parts.next().unwrap_or_default(),
        parts.next().unwrap_or_default()
    );
    let mut length = 0usize;
    loop {
        let mut h = String::new();
        if reader.read_line(&mut h).unwrap_or(0) == 0 || h == "\r\n" {
            break;
        }
        if let Some((k, v)) = h.split_once(':')
            && k.trim().eq_ignore_ascii_case("content-length")
        {
            length = v.trim().parse().unwrap_or(0);
        }
    }
    let mut body = vec![0u8; length];
    if reader.read_exact(&mut body).is_err() {
        return;
    }
    let (status, answer) = {
        let mut s = state.lock().unwrap();
        s.seen.push((route.clone(), body));
        s.routes.get(&route).cloned().unwrap_or((404, Vec::new()))
    };
    let head = format!(
        "HTTP/1.1 {status} X\r\nContent-Length: {}\r\nContent-Type: application/json\r\nConnection: close\r\n\r\n",
        answer.len()
    );
    let mut stream = stream;
    let _ = stream.write_all(head.as_bytes());
    let _ = stream.write_all(&answer);
    let _ = stream.flush();
}
