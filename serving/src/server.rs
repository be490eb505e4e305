//! The accept loop and the per-connection task.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::pin;
use std::sync::Arc;

use axum::Router;
use hyper::server::conn::http1;
use hyper_util::rt::TokioIo;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinSet;
use tokio::time::{sleep, sleep_until, timeout, Duration, Instant};
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};

use crate::conn::{Close, ConnState, Registry, TrackedIo, TrackedService};
use crate::{Limits, Metrics};

/// How long an evicted idle connection may take to flush its last response before the socket
/// is dropped; the newcomer waits at most twice this for the freed slot.
const EVICT_GRACE: Duration = Duration::from_millis(100);

/// Serves `router` on `listener` until `shutdown` completes, within `limits`.
///
/// * A connection must finish its request head within `header_read_timeout` of accept (or
///   of its first byte after an idle spell), and is closed after `idle_timeout` with no
///   request in flight. A request is in flight until its response body is dropped, so an SSE
///   stream is never idle while it streams.
/// * At `max_connections`, a new client takes the slot of the connection idle longest
///   (see [`serve_with_metrics`] for why); if every connection has a request in flight,
///   the new one is closed at once.
/// * On `shutdown` the listener closes (new connects are refused), idle connections close,
///   requests in flight finish, and this returns when the last connection has ended. Streams
///   that never end (SSE) keep it waiting: bound it with a timeout; dropping the future
///   closes every connection still open.
///
/// Errors only when `limits` are invalid; accept failures are logged and survived.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    limits: Limits,
    shutdown: impl Future<Output = ()>,
) -> io::Result<()> {
    serve_with_metrics(listener, router, limits, None, shutdown).await
}

/// [`serve`], counting connections in `metrics` (accepted, refused, closed and why, open).
///
/// Why evict rather than refuse at the limit: the attack this stops is many parked
/// connections, and a parked connection costs the server a descriptor and nothing else, so
/// reclaiming the oldest keeps `/healthz` and every real client answered however many an
/// attacker opens; only connections with a request in flight are safe from eviction. Why
/// close at once rather than stop accepting when nothing can be evicted: a client left in
/// the kernel's backlog waits with no bound, and once the backlog fills, SYNs are dropped and
/// clients back off for seconds; an immediate close is an error a prober sees at once.
pub async fn serve_with_metrics(
    listener: TcpListener,
    router: Router,
    limits: Limits,
    metrics: Option<Metrics>,
    shutdown: impl Future<Output = ()>,
) -> io::Result<()> {
    limits
        .validate()
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
    let permits = Arc::new(Semaphore::new(limits.max_connections));
    let registry = Arc::new(Registry::default());
    let closing = CancellationToken::new();
    // Owned here, so dropping this future aborts every connection task.
    let mut tasks = JoinSet::new();
    let mut shutdown = pin!(shutdown);
    loop {
        let accepted = tokio::select! {
            biased;
            () = &mut shutdown => break,
            Some(ended) = tasks.join_next(), if !tasks.is_empty() => {
                if let Err(e) = ended {
                    warn!(error = %e, "a connection task failed");
                }
                continue;
            }
            accepted = listener.accept() => accepted,
        };
        let (stream, peer) = match accepted {
            Ok(accepted) => accepted,
            // The client gave up before we took it: nothing to do.
            Err(e) if is_connection_error(&e) => continue,
            Err(e) => {
                // EMFILE/ENFILE: something else in the process holds the descriptors.
                // Free one if we can and retry soon; axum's one-second pause here is what
                // let an idle-connection flood stop /healthz.
                let evicted = registry.evict_longest_idle();
                warn!(error = %e, evicted, "cannot accept a connection; is the open-file limit too low for maxConnections?");
                sleep(if evicted {
                    Duration::from_millis(5)
                } else {
                    Duration::from_millis(100)
                })
                .await;
                continue;
            }
        };
        let Some(permit) = slot(&permits, &registry).await else {
            if let Some(m) = &metrics {
                m.refused.inc();
            }
            debug!(%peer, "at maxConnections with every connection busy: closing the new one");
            drop(stream);
            continue;
        };
        // Small responses and SSE events go out now, not after Nagle's delay.
        if let Err(e) = stream.set_nodelay(true) {
            debug!(error = %e, "cannot set TCP_NODELAY");
        }
        if let Some(m) = &metrics {
            m.accepted.inc();
        }
        tasks.spawn(connection(Connection {
            stream,
            peer,
            permit,
            router: router.clone(),
            limits,
            registry: registry.clone(),
            closing: closing.clone(),
            metrics: metrics.clone(),
        }));
    }
    drop(listener);
    closing.cancel();
    while let Some(ended) = tasks.join_next().await {
        if let Err(e) = ended {
            warn!(error = %e, "a connection task failed");
        }
    }
    Ok(())
}

/// A free slot, or the longest-idle connection's once it has closed; `None` when every
/// connection has a request in flight.
async fn slot(permits: &Arc<Semaphore>, registry: &Registry) -> Option<OwnedSemaphorePermit> {
    if let Ok(permit) = permits.clone().try_acquire_owned() {
        return Some(permit);
    }
    if !registry.evict_longest_idle() {
        return None;
    }
    timeout(2 * EVICT_GRACE, permits.clone().acquire_owned())
        .await
        .ok()?
        .ok()
}

fn is_connection_error(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::ConnectionRefused
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
    )
}

struct Connection {
    stream: TcpStream,
    peer: SocketAddr,
    permit: OwnedSemaphorePermit,
    router: Router,
    limits: Limits,
    registry: Arc<Registry>,
    closing: CancellationToken,
    metrics: Option<Metrics>,
}

async fn connection(c: Connection) {
    let state = ConnState::new();
    let _registered = c.registry.insert(state.clone());
    let _open = c.metrics.as_ref().map(|m| OpenGauge::new(m.open.clone()));
    let io = TokioIo::new(TrackedIo::new(c.stream, state.clone(), c.permit));
    let service = TrackedService::new(c.router, state.clone(), c.peer);
    let mut builder = http1::Builder::new();
    // hyper's own header timer starts whenever it waits for a head, idle keep-alive
    // included, so it would cap idle_timeout at header_read_timeout; the deadlines below
    // tell the two apart instead.
    builder.header_read_timeout(None);
    let mut conn = pin!(builder.serve_connection(io, service).with_upgrades());
    let closed = |why: Close| {
        if let Some(m) = &c.metrics {
            m.closed(why);
        }
    };
    // Once hyper has been asked to close: shutdown lets requests finish however long they
    // take; an evicted idle connection gets EVICT_GRACE to flush, then is dropped.
    let mut draining = false;
    let mut drop_at: Option<Instant> = None;
    loop {
        // Header and idle deadlines hold while draining too: hyper does not close a first
        // request's half-sent head on graceful shutdown, and that must not stall the stop.
        let deadline = match drop_at {
            Some(at) => Some(at),
            None => state.deadline(&c.limits).map(|(at, _)| at),
        };
        tokio::select! {
            served = conn.as_mut() => {
                if let Err(e) = served {
                    debug!(peer = %c.peer, error = %e, "connection ended with an error");
                }
                break;
            }
            () = c.closing.cancelled(), if !draining => {
                draining = true;
                conn.as_mut().graceful_shutdown();
            }
            () = state.changed.notified() => {
                if state.is_evicted() && drop_at.is_none() && state.is_busy() {
                    state.spare();
                } else if state.is_evicted() && drop_at.is_none() {
                    closed(Close::Evicted);
                    if state.is_reading_head() {
                        break;
                    }
                    draining = true;
                    conn.as_mut().graceful_shutdown();
                    drop_at = Some(Instant::now() + EVICT_GRACE);
                }
            }
            () = until(deadline) => {
                if drop_at.is_some() {
                    // A request that slipped in after eviction is never cut: hyper closes
                    // after its response, keep-alive being off.
                    if state.is_busy() {
                        drop_at = None;
                        continue;
                    }
                    break;
                }
                // The phase may have moved since the deadline was read.
                if let Some((at, why)) = state.deadline(&c.limits) {
                    if at <= Instant::now() {
                        // No request in flight and nothing sent for a whole timeout: there
                        // is nothing to finish, so the socket is simply dropped.
                        debug!(peer = %c.peer, reason = why.label(), "closing connection");
                        closed(why);
                        break;
                    }
                }
            }
        }
    }
}

async fn until(deadline: Option<Instant>) {
    match deadline {
        Some(at) => sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// Counts a connection open for as long as its task runs.
struct OpenGauge(prometheus::IntGauge);

impl OpenGauge {
    fn new(gauge: prometheus::IntGauge) -> OpenGauge {
        gauge.inc();
        OpenGauge(gauge)
    }
}

impl Drop for OpenGauge {
    fn drop(&mut self) {
        self.0.dec();
    }
}
