//! Serves an axum [`Router`](axum::Router) so that hostile local clients cannot take it down.
//!
//! `axum::serve` has no header-read or idle timeout and no connection limit: a client that
//! opens more idle connections than the process has file descriptors makes `accept` fail
//! with `EMFILE`, and axum then sleeps a second per failure, so `/healthz` stops answering.
//! [`serve`] closes half-sent requests after [`Limits::header_read_timeout`], idle keep-alive
//! connections after [`Limits::idle_timeout`], and holds at most [`Limits::max_connections`]
//! sockets, evicting the longest-idle one when a new client arrives at the limit.

mod conn;
mod metrics;
mod server;

use std::time::Duration;

use serde::{Deserialize, Deserializer};

pub use metrics::Metrics;
pub use server::{serve, serve_with_metrics};

/// How long a connection may take to send a request head, stay idle, and how many may be open.
///
/// Embeds in a config file as e.g. `api.limits`; every field is optional and durations are
/// written like `10s` or `1m`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(default, rename_all = "camelCase", deny_unknown_fields)]
pub struct Limits {
    /// From accept (or from the first byte after an idle spell) to the end of the request
    /// head. Not reset by each byte, so a client trickling a header byte at a time
    /// (slowloris) is closed on time.
    #[serde(deserialize_with = "duration")]
    pub header_read_timeout: Duration,
    /// How long a keep-alive connection may sit between requests. A response still
    /// streaming (SSE) is not idle, however long it runs.
    #[serde(deserialize_with = "duration")]
    pub idle_timeout: Duration,
    /// Open connections on this listener; keep it below the soft open-file limit
    /// ([`Limits::clamp_to_nofile`]) so `accept` never meets `EMFILE`.
    pub max_connections: usize,
}

impl Default for Limits {
    /// Generous for real clients (which send a request head at once and reuse a connection
    /// within seconds), short enough that parked sockets are reclaimed within a minute.
    fn default() -> Self {
        Limits {
            header_read_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(60),
            max_connections: 4096,
        }
    }
}

/// Below this a legitimate client on a loaded host can miss the deadline.
const MIN_TIMEOUT: Duration = Duration::from_millis(100);
/// Above this a half-sent request holds a slot long enough to be an attack by itself.
const MAX_HEADER_READ_TIMEOUT: Duration = Duration::from_secs(300);
/// Above this idle sockets are not reclaimed in any useful time.
const MAX_IDLE_TIMEOUT: Duration = Duration::from_secs(3600);
/// Linux's default `fs.nr_open`: no process can hold more descriptors than this.
const MAX_CONNECTIONS: usize = 1 << 20;

impl Limits {
    /// Refuses values that would leave the server open to the attack it exists to stop
    /// (zero or huge timeouts) or that cannot work (no connection at all, more than a
    /// process can open).
    pub fn validate(&self) -> Result<(), Error> {
        check_timeout(
            "headerReadTimeout",
            self.header_read_timeout,
            MAX_HEADER_READ_TIMEOUT,
        )?;
        check_timeout("idleTimeout", self.idle_timeout, MAX_IDLE_TIMEOUT)?;
        if self.max_connections == 0 || self.max_connections > MAX_CONNECTIONS {
            return Err(Error::InvalidLimit {
                field: "maxConnections",
                value: self.max_connections.to_string(),
                expected: format!("between 1 and {MAX_CONNECTIONS}"),
            });
        }
        Ok(())
    }

    /// `max_connections` lowered, if needed, so that `servers` listeners at their limit
    /// still leave descriptors for everything else the process opens.
    ///
    /// The headroom (an eighth of `soft_nofile`, at least 64) is for the journal's database
    /// and WAL files, upstream sockets (cloud APIs, NATS, Postgres, the MCP upstreams), the
    /// listeners themselves, and the log. Without it a full listener makes those opens fail
    /// with `EMFILE` — worse than refusing one more client. `servers` is how many listeners
    /// share the process (the API, the gateway, metrics): each gets an equal share.
    pub fn clamp_to_nofile(mut self, soft_nofile: u64, servers: usize) -> Limits {
        let headroom = (soft_nofile / 8).max(64);
        let budget = soft_nofile.saturating_sub(headroom) / servers.max(1) as u64;
        let budget = usize::try_from(budget).unwrap_or(usize::MAX).max(1);
        self.max_connections = self.max_connections.min(budget);
        self
    }
}

fn check_timeout(field: &'static str, value: Duration, max: Duration) -> Result<(), Error> {
    if value < MIN_TIMEOUT || value > max {
        return Err(Error::InvalidLimit {
            field,
            value: humantime::format_duration(value).to_string(),
            expected: format!(
                "between {} and {}",
                humantime::format_duration(MIN_TIMEOUT),
                humantime::format_duration(max)
            ),
        });
    }
    Ok(())
}

fn duration<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    let text = String::deserialize(d)?;
    humantime::parse_duration(&text).map_err(|e| {
        serde::de::Error::custom(format!(
            "{text:?} is not a duration like 10s, 1m or 500ms: {e}"
        ))
    })
}

/// What went wrong, and what to do about it.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{field} = {value} is out of range: set it {expected}")]
    InvalidLimit {
        field: &'static str,
        value: String,
        expected: String,
    },
    #[error("cannot read the open-file limit (RLIMIT_NOFILE): {0}")]
    ReadNofile(#[source] std::io::Error),
    #[error(
        "cannot raise the soft open-file limit from {soft} to the hard limit {hard}: {source}; \
         raise it before start (`ulimit -n {hard}`, or LimitNOFILE= in the systemd unit)"
    )]
    RaiseNofile {
        soft: u64,
        hard: u64,
        #[source]
        source: std::io::Error,
    },
}

/// Raises the soft `RLIMIT_NOFILE` to the hard limit and returns `(soft, hard)` as they now
/// are.
///
/// Many systems start services with a soft limit of 1,024 and a much higher hard limit; an
/// unprivileged process may raise its own soft limit up to the hard one, and every open
/// connection costs a descriptor. Call once at start, then [`Limits::clamp_to_nofile`] with
/// the returned soft limit.
pub fn raise_nofile_limit() -> Result<(u64, u64), Error> {
    let (soft, hard) = rlimit::getrlimit(rlimit::Resource::NOFILE).map_err(Error::ReadNofile)?;
    if soft < hard {
        // An unlimited hard limit cannot be the soft one: the kernel caps descriptors at
        // fs.nr_open.
        let target = if hard == rlimit::INFINITY {
            nr_open()
        } else {
            hard
        };
        rlimit::increase_nofile_limit(target).map_err(|source| Error::RaiseNofile {
            soft,
            hard,
            source,
        })?;
    }
    rlimit::getrlimit(rlimit::Resource::NOFILE).map_err(Error::ReadNofile)
}

fn nr_open() -> u64 {
    std::fs::read_to_string("/proc/sys/fs/nr_open")
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(MAX_CONNECTIONS as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid() {
        Limits::default().validate().unwrap();
    }

    #[test]
    fn zero_and_absurd_values_are_refused_with_the_field_named() {
        let zero = Limits {
            header_read_timeout: Duration::ZERO,
            ..Limits::default()
        };
        let e = zero.validate().unwrap_err().to_string();
        assert_eq!(
            e,
            "headerReadTimeout = 0s is out of range: set it between 100ms and 5m"
        );
        let huge = Limits {
            idle_timeout: Duration::from_secs(86400),
            ..Limits::default()
        };
        assert!(huge
            .validate()
            .unwrap_err()
            .to_string()
            .contains("idleTimeout = 1day"));
        let none = Limits {
            max_connections: 0,
            ..Limits::default()
        };
        assert!(none
            .validate()
            .unwrap_err()
            .to_string()
            .contains("maxConnections = 0"));
    }

    #[test]
    fn parses_camel_case_with_defaults_and_refuses_unknown_fields() {
        let l: Limits =
            serde_json::from_str(r#"{"idleTimeout": "5s", "maxConnections": 10}"#).unwrap();
        assert_eq!(l.idle_timeout, Duration::from_secs(5));
        assert_eq!(l.max_connections, 10);
        assert_eq!(l.header_read_timeout, Limits::default().header_read_timeout);
        let e = serde_json::from_str::<Limits>(r#"{"idle": "5s"}"#)
            .unwrap_err()
            .to_string();
        assert!(e.contains("unknown field `idle`"), "{e}");
        let e = serde_json::from_str::<Limits>(r#"{"idleTimeout": "soon"}"#)
            .unwrap_err()
            .to_string();
        assert!(e.contains("not a duration"), "{e}");
    }

    #[test]
    fn clamp_leaves_headroom_below_the_soft_limit() {
        let l = Limits::default().clamp_to_nofile(1024, 1);
        assert_eq!(l.max_connections, 1024 - 128);
        let l = Limits::default().clamp_to_nofile(1024, 2);
        assert_eq!(l.max_connections, (1024 - 128) / 2);
        let l = Limits::default().clamp_to_nofile(1 << 20, 2);
        assert_eq!(l.max_connections, 4096);
        let l = Limits::default().clamp_to_nofile(10, 1);
        assert_eq!(l.max_connections, 1);
    }

    #[test]
    fn raising_nofile_reaches_the_hard_limit() {
        let (soft, hard) = raise_nofile_limit().unwrap();
        assert!(soft <= hard);
        if hard != rlimit::INFINITY {
            assert_eq!(soft, hard);
        }
    }
}
