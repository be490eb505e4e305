//! What every in-repo fake API shares: an axum router served on a free 127.0.0.1 port for as
//! long as the handle lives.

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::{Context, Result};
use axum::http::StatusCode;
use axum::Router;

pub struct Served {
    addr: SocketAddr,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<()>,
}

impl Served {
    /// Serves `app`; `what` names the fake in the error if the port cannot be bound.
    pub async fn start(app: Router, what: &str) -> Result<Served> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .with_context(|| format!("binding {what} to 127.0.0.1"))?;
        let addr = listener.local_addr()?;
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app)
                .with_graceful_shutdown(async {
                    let _ = rx.await;
                })
                .await;
        });
        Ok(Served {
            addr,
            shutdown: Some(tx),
            task,
        })
    }

    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        self.task.abort();
    }
}

/// Faults a test asks a fake for: the next N requests fail with a status, or answer late.
#[derive(Debug, Default)]
pub struct Faults {
    failures: u32,
    status: Option<StatusCode>,
    delays: u32,
    delay: Duration,
}

impl Faults {
    /// The next `n` requests get `status`.
    pub fn fail_next(&mut self, n: u32, status: u16) {
        self.failures = n;
        self.status = StatusCode::from_u16(status).ok();
    }

    /// The next `n` requests are answered only after `delay`.
    pub fn delay_next(&mut self, n: u32, delay: Duration) {
        self.delays = n;
        self.delay = delay;
    }

    /// The status this request must fail with, if a failure is owed (`fallback` when the test
    /// asked for something that is no HTTP status).
    pub fn take_failure(&mut self, fallback: StatusCode) -> Option<StatusCode> {
        (self.failures > 0).then(|| {
            self.failures -= 1;
            self.status.unwrap_or(fallback)
        })
    }

    /// How long this request must wait, if a delay is owed.
    pub fn take_delay(&mut self) -> Option<Duration> {
        (self.delays > 0).then(|| {
            self.delays -= 1;
            self.delay
        })
    }
}
