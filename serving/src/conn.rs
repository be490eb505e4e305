//! What one connection is doing, seen from the socket and from the router.
//!
//! hyper cannot tell us whether a connection is idle, half-way through a request head, or
//! streaming a response, so we watch both ends: the socket's reads (a byte after an idle
//! spell starts a head) and the router's requests (a request counts as in flight until its
//! response body is dropped, which for SSE is when the stream ends).

use std::collections::HashMap;
use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll};

use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::Router;
use hyper::body::{Frame, Incoming, SizeHint};
use hyper::{Request, Response};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::sync::{Notify, OwnedSemaphorePermit};
use tokio::time::Instant;

use crate::Limits;

/// Where a connection stands, and since when.
#[derive(Debug, Clone, Copy)]
enum Phase {
    /// Waiting for (the rest of) a request head: since accept, or since the first byte
    /// after an idle spell.
    Head { since: Instant },
    /// Requests whose responses are not yet fully handed to hyper. No timeout applies.
    Busy { requests: usize },
    /// Every response done, nothing read since.
    Idle { since: Instant },
}

/// Why the server closed a connection (a metrics label).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Close {
    HeaderTimeout,
    Idle,
    Evicted,
}

impl Close {
    pub(crate) fn label(self) -> &'static str {
        match self {
            Close::HeaderTimeout => "header_timeout",
            Close::Idle => "idle",
            Close::Evicted => "evicted",
        }
    }
}

pub(crate) struct ConnState {
    phase: Mutex<Phase>,
    /// Set by the accept loop to reclaim this connection's slot.
    evict: AtomicBool,
    /// Wakes the connection's task when its deadline may have moved earlier.
    pub(crate) changed: Notify,
}

impl ConnState {
    pub(crate) fn new() -> Arc<ConnState> {
        Arc::new(ConnState {
            phase: Mutex::new(Phase::Head {
                since: Instant::now(),
            }),
            evict: AtomicBool::new(false),
            changed: Notify::new(),
        })
    }

    fn phase(&self) -> MutexGuard<'_, Phase> {
        // A panic while holding this lock leaves a valid Phase: take it.
        self.phase.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// When the server should close this connection, and why; `None` while busy.
    pub(crate) fn deadline(&self, limits: &Limits) -> Option<(Instant, Close)> {
        match *self.phase() {
            Phase::Head { since } => {
                Some((since + limits.header_read_timeout, Close::HeaderTimeout))
            }
            Phase::Idle { since } => Some((since + limits.idle_timeout, Close::Idle)),
            Phase::Busy { .. } => None,
        }
    }

    /// Set once and never cleared, so a closing connection is not picked twice.
    pub(crate) fn is_evicted(&self) -> bool {
        self.evict.load(Ordering::Acquire)
    }

    /// A request slipped in between the pick and the close: keep it, and let a later
    /// eviction pick this connection again once it is idle.
    pub(crate) fn spare(&self) {
        self.evict.store(false, Ordering::Release);
    }

    pub(crate) fn is_busy(&self) -> bool {
        matches!(*self.phase(), Phase::Busy { .. })
    }

    /// Part-way through a request head, or never sent one: nothing of ours left to flush.
    pub(crate) fn is_reading_head(&self) -> bool {
        matches!(*self.phase(), Phase::Head { .. })
    }

    /// Since when this connection has held no request, if it holds none.
    fn evictable_since(&self) -> Option<Instant> {
        match *self.phase() {
            Phase::Head { since } | Phase::Idle { since } => Some(since),
            Phase::Busy { .. } => None,
        }
    }

    fn on_read(&self) {
        let mut phase = self.phase();
        if let Phase::Idle { .. } = *phase {
            *phase = Phase::Head {
                since: Instant::now(),
            };
            drop(phase);
            self.changed.notify_one();
        }
    }

    fn begin_request(self: &Arc<Self>) -> InFlight {
        let mut phase = self.phase();
        *phase = match *phase {
            Phase::Busy { requests } => Phase::Busy {
                requests: requests + 1,
            },
            Phase::Head { .. } | Phase::Idle { .. } => Phase::Busy { requests: 1 },
        };
        InFlight(self.clone())
    }
}

/// A request in flight; dropped with its response body (or its unfinished future).
struct InFlight(Arc<ConnState>);

impl Drop for InFlight {
    fn drop(&mut self) {
        let mut phase = self.0.phase();
        if let Phase::Busy { requests } = *phase {
            *phase = if requests > 1 {
                Phase::Busy {
                    requests: requests - 1,
                }
            } else {
                Phase::Idle {
                    since: Instant::now(),
                }
            };
        }
        drop(phase);
        self.0.changed.notify_one();
    }
}

/// The open connections of one listener, so a slot can be reclaimed from the longest idle.
#[derive(Default)]
pub(crate) struct Registry {
    conns: Mutex<HashMap<u64, Arc<ConnState>>>,
    next: AtomicU64,
}

impl Registry {
    fn conns(&self) -> MutexGuard<'_, HashMap<u64, Arc<ConnState>>> {
        self.conns.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub(crate) fn insert(self: &Arc<Self>, state: Arc<ConnState>) -> Registered {
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        self.conns().insert(id, state);
        Registered {
            registry: self.clone(),
            id,
        }
    }

    /// Asks the connection that has held no request for longest to close. False when every
    /// connection has a request in flight (or is already closing).
    pub(crate) fn evict_longest_idle(&self) -> bool {
        let conns = self.conns();
        let victim = conns
            .values()
            .filter(|c| !c.evict.load(Ordering::Acquire))
            .filter_map(|c| c.evictable_since().map(|since| (since, c)))
            .min_by_key(|(since, _)| *since);
        match victim {
            Some((_, c)) => {
                c.evict.store(true, Ordering::Release);
                c.changed.notify_one();
                true
            }
            None => false,
        }
    }
}

/// Removes the connection from the registry when its task ends.
pub(crate) struct Registered {
    registry: Arc<Registry>,
    id: u64,
}

impl Drop for Registered {
    fn drop(&mut self) {
        self.registry.conns().remove(&self.id);
    }
}

/// The socket, noting reads and holding the connection's slot: the permit goes with the
/// descriptor, so a socket handed to an upgrade (WebSocket) still counts until it closes.
pub(crate) struct TrackedIo {
    stream: TcpStream,
    state: Arc<ConnState>,
    _permit: OwnedSemaphorePermit,
}

impl TrackedIo {
    pub(crate) fn new(
        stream: TcpStream,
        state: Arc<ConnState>,
        permit: OwnedSemaphorePermit,
    ) -> TrackedIo {
        TrackedIo {
            stream,
            state,
            _permit: permit,
        }
    }
}

impl AsyncRead for TrackedIo {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let polled = Pin::new(&mut this.stream).poll_read(cx, buf);
        if matches!(polled, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            this.state.on_read();
        }
        polled
    }
}

impl AsyncWrite for TrackedIo {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().stream).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_shutdown(cx)
    }
}

/// The router as a hyper service that marks each request in flight until its body is gone.
#[derive(Clone)]
pub(crate) struct TrackedService {
    router: Router,
    state: Arc<ConnState>,
    peer: SocketAddr,
}

impl TrackedService {
    pub(crate) fn new(router: Router, state: Arc<ConnState>, peer: SocketAddr) -> Self {
        TrackedService {
            router,
            state,
            peer,
        }
    }
}

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

impl hyper::service::Service<Request<Incoming>> for TrackedService {
    type Response = Response<TrackedBody>;
    type Error = Infallible;
    type Future = BoxFuture<Result<Self::Response, Infallible>>;

    fn call(&self, mut req: Request<Incoming>) -> Self::Future {
        let in_flight = self.state.begin_request();
        // What `into_make_service_with_connect_info` would give handlers.
        req.extensions_mut().insert(ConnectInfo(self.peer));
        let mut router = self.router.clone();
        Box::pin(async move {
            let response = tower::Service::call(&mut router, req.map(Body::new)).await?;
            Ok(response.map(|body| TrackedBody {
                body,
                _in_flight: in_flight,
            }))
        })
    }
}

/// A response body that keeps its request in flight until hyper drops it.
pub(crate) struct TrackedBody {
    body: Body,
    _in_flight: InFlight,
}

impl http_body::Body for TrackedBody {
    type Data = <Body as http_body::Body>::Data;
    type Error = <Body as http_body::Body>::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        Pin::new(&mut self.get_mut().body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    // Forwarded so hyper still writes Content-Length rather than chunked encoding.
    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}
