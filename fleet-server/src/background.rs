//! A server on its own thread and tokio runtime, for callers that are not async themselves: the
//! simulator, the demo and tests. Dropping it (or [`Background::stop`]) shuts the server down
//! gracefully and joins the thread.

use std::thread::JoinHandle;
use std::time::Duration;

use crate::server::{self, ServerError, Started};
use crate::settings::Settings;

/// A running server; HTTP on 127.0.0.1 port 0 (see `started.http`).
#[derive(Debug)]
pub struct Background {
    pub started: Started,
    /// The admin token of its data directory.
    pub admin_token: String,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

fn runtime_error(e: impl std::fmt::Display) -> ServerError {
    ServerError::Runtime(e.to_string())
}

impl Background {
    /// Starts a server with `settings`; returns once it serves (or failed to start).
    pub fn start(settings: Settings) -> Result<Self, ServerError> {
        let (tx, rx) = std::sync::mpsc::channel();
        let (stop, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let data_dir = settings.data_dir.clone();
        let thread = std::thread::spawn(move || {
            let rt = match tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
            {
                Ok(rt) => rt,
                Err(e) => return drop(tx.send(Err(runtime_error(e)))),
            };
            rt.block_on(async move {
                let listener = match tokio::net::TcpListener::bind("127.0.0.1:0").await {
                    Ok(l) => l,
                    Err(e) => return drop(tx.send(Err(ServerError::Http(e)))),
                };
                let ready = tx.clone();
                let shutdown = async move {
                    let _ = stop_rx.await;
                };
                if let Err(e) =
                    server::run(listener, shutdown, settings, move |s| drop(ready.send(Ok(s)))).await
                {
                    let _ = tx.send(Err(e));
                }
            });
        });
        let started = rx
            .recv_timeout(Duration::from_secs(60))
            .map_err(runtime_error)??;
        let admin_token = server::admin_token(&data_dir)?;
        Ok(Self {
            started,
            admin_token,
            stop: Some(stop),
            thread: Some(thread),
        })
    }

    /// `http://127.0.0.1:PORT` (`https://` with TLS).
    pub fn url(&self) -> String {
        self.started.url.clone()
    }

    /// Graceful stop.
    pub fn stop(mut self) {
        self.shut_down();
    }

    fn shut_down(&mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for Background {
    fn drop(&mut self) {
        self.shut_down();
    }
}
