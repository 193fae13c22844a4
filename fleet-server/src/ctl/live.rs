//! Following Server-Sent Events for `rollouts watch`: a thread reads the stream and turns it into
//! [`Signal`]s on a channel; the watch loop re-reads the rollout on every signal and falls back to
//! polling while the stream is down. [`SseParser`] is the pure part (tested on its own).

use std::io::{BufRead, BufReader};
use std::sync::mpsc::{Receiver, Sender, channel};
use std::time::Duration;

use super::CtlError;
use super::client::Client;

/// One Server-Sent Event (`event:` name and joined `data:` lines).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SseEvent {
    pub event: String,
    pub data: String,
}

/// Line-by-line SSE parser (text/event-stream, comments and unknown fields ignored).
#[derive(Debug, Default)]
pub struct SseParser {
    event: Option<String>,
    data: Vec<String>,
}

impl SseParser {
    /// Feeds one line (without its line ending); returns an event when a blank line ends one.
    pub fn line(&mut self, line: &str) -> Option<SseEvent> {
        if line.is_empty() {
            let event = self.event.take();
            if self.data.is_empty() {
                return None;
            }
            let data = std::mem::take(&mut self.data).join("\n");
            return Some(SseEvent {
                event: event.unwrap_or_else(|| "message".to_owned()),
                data,
            });
        }
        if line.starts_with(':') {
            return None;
        }
        let (field, value) = line.split_once(':').unwrap_or((line, ""));
        let value = value.strip_prefix(' ').unwrap_or(value);
        match field {
            "event" => self.event = Some(value.to_owned()),
            "data" => self.data.push(value.to_owned()),
            _ => {}
        }
        None
    }
}

/// What the stream thread tells the watch loop.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Signal {
    /// The stream is open: changes will be pushed (re-read once, something may have changed before).
    Connected,
    /// The rollout changed (or the server says events were missed).
    Changed,
    /// The stream broke; the thread retries after a pause. Poll meanwhile.
    Lost(String),
    /// The server refused the stream (old server, no permission): poll from now on.
    Refused(String),
}

/// Starts following `path` on a background thread. The thread ends when the receiver is dropped
/// (at its next event or retry) or when the server refuses the stream.
pub fn follow(client: Client, path: String) -> Receiver<Signal> {
    let (tx, rx) = channel();
    std::thread::spawn(move || run(&client, &path, &tx));
    rx
}

fn run(client: &Client, path: &str, tx: &Sender<Signal>) {
    let mut pause = Duration::from_secs(1);
    loop {
        let signal = match client.open_stream(path) {
            Ok(body) => {
                if tx.send(Signal::Connected).is_err() {
                    return;
                }
                pause = Duration::from_secs(1);
                match read(BufReader::new(body), tx) {
                    Ok(()) => Signal::Lost("the server closed the event stream".into()),
                    Err(Stop) => return,
                }
            }
            Err(CtlError::Refused { status, message, .. }) => {
                let _ = tx.send(Signal::Refused(format!("{status}: {message}")));
                return;
            }
            Err(e) => Signal::Lost(e.to_string()),
        };
        if tx.send(signal).is_err() {
            return;
        }
        std::thread::sleep(pause);
        pause = (pause * 2).min(Duration::from_secs(10));
    }
}

/// The receiver is gone: stop reading.
struct Stop;

/// Reads events until the stream ends (`Ok`) or nobody listens any more (`Err(Stop)`).
fn read(reader: impl BufRead, tx: &Sender<Signal>) -> Result<(), Stop> {
    let mut parser = SseParser::default();
    for line in reader.lines() {
        let Ok(line) = line else {
            return Ok(());
        };
        let Some(event) = parser.line(line.trim_end_matches('\r')) else {
            continue;
        };
        if matches!(event.event.as_str(), "change" | "lagged") {
            tx.send(Signal::Changed).map_err(|_| Stop)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};

    fn parse(text: &str) -> Vec<SseEvent> {
        let mut p = SseParser::default();
        text.lines().filter_map(|l| p.line(l)).collect()
    }

    #[test]
    fn parser_reads_named_events_and_skips_comments() {
        let events = parse(
            ": keep-alive\n\nevent: change\ndata: {\"kind\":\"rollout\",\"id\":\"r1\"}\n\n\
             data: a\ndata:b\n\nevent: lagged\nretry: 5\ndata: {}\n\n",
        );
        assert_eq!(
            events,
            vec![
                SseEvent {
                    event: "change".into(),
                    data: r#"{"kind":"rollout","id":"r1"}"#.into()
                },
                SseEvent {
                    event: "message".into(),
                    data: "a\nb".into()
                },
                SseEvent {
                    event: "lagged".into(),
                    data: "{}".into()
                },
            ]
        );
    }

    #[test]
    fn event_name_without_data_is_dropped() {
        assert!(parse("event: change\n\n").is_empty());
    }

    /// A one-shot HTTP server answering the first request with `answer`, then closing.
    fn serve_once(answer: &'static str) -> String {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = listener.local_addr().expect("addr");
        std::thread::spawn(move || {
            if let Ok((mut s, _)) = listener.accept() {
                let mut buf = [0u8; 4096];
                let _ = s.read(&mut buf);
                let _ = s.write_all(answer.as_bytes());
            }
        });
        format!("http://{addr}")
    }

    #[test]
    fn stream_changes_become_signals_and_a_closed_stream_is_lost() {
        let base = serve_once(
            "HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\nconnection: close\r\n\r\n\
             event: change\ndata: {\"kind\":\"rollout\",\"id\":\"r\"}\n\n: ping\n\n",
        );
        let rx = follow(
            Client::new(&base, Some("t".into())),
            "/api/v1/rollouts/r/events".into(),
        );
        let got: Vec<Signal> = (0..3)
            .map(|_| rx.recv_timeout(Duration::from_secs(10)).expect("signal"))
            .collect();
        assert_eq!(got[..2], [Signal::Connected, Signal::Changed]);
        assert!(matches!(got[2], Signal::Lost(_)), "{got:?}");
    }

    #[test]
    fn refused_stream_means_polling() {
        let base = serve_once(
            "HTTP/1.1 404 Not Found\r\ncontent-type: application/json\r\ncontent-length: 24\r\n\
             connection: close\r\n\r\n{\"error\":\"no rollout r\"}",
        );
        let rx = follow(Client::new(&base, None), "/api/v1/rollouts/r/events".into());
        let got = rx.recv_timeout(Duration::from_secs(10)).expect("signal");
        assert_eq!(got, Signal::Refused("404: no rollout r".into()));
    }
}
