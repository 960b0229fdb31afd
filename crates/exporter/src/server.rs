//! The HTTP side: hyper's HTTP/1 server on a small tokio runtime, hardened so that one bad
//! client cannot stop it from serving the others.
//!
//! - A connection cap: past it, a new connection gets a fixed `503` written without
//!   reading anything, and is closed.
//! - A header read timeout (hyper's `header_read_timeout`), which also bounds idle
//!   keep-alive connections: a slowloris client that trickles header bytes, or a client
//!   that connects and says nothing, is dropped.
//! - A header size and count limit (`431` past it).
//! - A connection lifetime, after which the connection is shut down gracefully (the
//!   request in flight finishes) and then, if it lingers, dropped: this bounds a client
//!   that reads its response very slowly.
//! - Only `GET` and `HEAD` on `/` and `/metrics`; `405` for other methods there, `404`
//!   elsewhere.
//!
//! Concurrent scrapes share one collection: a scrape that arrives while a collection runs
//! waits for that one instead of starting another, so a burst of scrapes costs one dump.

use crate::collector::TcpCollector;
use crate::format;
use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::header::{HeaderValue, ACCEPT, ALLOW, CONTENT_TYPE};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use prometheus_client::registry::Registry;
use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::{watch, Semaphore};

/// What can go wrong before serving.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// A non-loopback address without the explicit permission.
    #[error("refusing to listen on {0}: it is not a loopback address, and the metrics name processes and peers; ask for it explicitly to expose them beyond this host")]
    NotLoopback(SocketAddr),
    /// bind(2) or listen(2) failed.
    #[error("cannot listen on {addr}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The tokio runtime could not start.
    #[error("cannot start the HTTP server's runtime")]
    Runtime(#[source] std::io::Error),
}

/// Server limits.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// Address to listen on.
    pub listen: SocketAddr,
    /// Allow a non-loopback address.
    pub allow_remote: bool,
    /// Open connections at most.
    pub max_connections: usize,
    /// Time a client has to send a request's headers (and the longest a keep-alive
    /// connection may stay idle).
    pub header_timeout: Duration,
    /// Bytes of request line plus headers at most.
    pub max_header_bytes: usize,
    /// Header fields at most.
    pub max_headers: usize,
    /// After this, a connection is shut down gracefully.
    pub connection_lifetime: Duration,
}

impl ServerConfig {
    /// Defaults for `listen`.
    pub fn new(listen: SocketAddr) -> ServerConfig {
        ServerConfig {
            listen,
            allow_remote: false,
            max_connections: 64,
            header_timeout: Duration::from_secs(10),
            max_header_bytes: 16 * 1024,
            max_headers: 64,
            connection_lifetime: Duration::from_secs(300),
        }
    }
}

/// A bound listener, ready to serve.
pub struct Bound {
    listener: std::net::TcpListener,
    config: ServerConfig,
}

impl Bound {
    /// The address actually bound (port 0 resolved).
    pub fn local_addr(&self) -> SocketAddr {
        self.listener.local_addr().unwrap_or(self.config.listen)
    }
}

/// Binds the listener (refusing a non-loopback address unless allowed).
pub fn bind(config: ServerConfig) -> Result<Bound, ServeError> {
    if !config.listen.ip().is_loopback() && !config.allow_remote {
        return Err(ServeError::NotLoopback(config.listen));
    }
    let bind_err = |source| ServeError::Bind {
        addr: config.listen,
        source,
    };
    let listener = std::net::TcpListener::bind(config.listen).map_err(bind_err)?;
    listener.set_nonblocking(true).map_err(bind_err)?;
    Ok(Bound { listener, config })
}

/// One collection's output.
struct Rendered {
    openmetrics: Result<String, String>,
    prometheus: OnceLock<String>,
}

impl Rendered {
    fn prometheus(&self) -> Result<&str, &str> {
        match &self.openmetrics {
            Ok(om) => Ok(self
                .prometheus
                .get_or_init(|| format::openmetrics_to_prometheus(om))),
            Err(e) => Err(e),
        }
    }
}

type Inflight = watch::Receiver<Option<Arc<Rendered>>>;

/// The registry and the single-flight slot.
struct Scraper {
    registry: Registry,
    collector: Arc<TcpCollector>,
    inflight: Mutex<Option<Inflight>>,
}

impl Scraper {
    /// Joins the collection in flight, or starts one.
    async fn collect(self: &Arc<Self>) -> Arc<Rendered> {
        let mut rx = {
            let mut slot = self.inflight.lock().unwrap_or_else(|e| e.into_inner());
            match &*slot {
                Some(rx) => rx.clone(),
                None => {
                    let (tx, rx) = watch::channel(None);
                    *slot = Some(rx.clone());
                    let me = Arc::clone(self);
                    tokio::task::spawn_blocking(move || {
                        let run = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                            let mut s = String::new();
                            prometheus_client::encoding::text::encode(&mut s, &me.registry)
                                .map(|()| s)
                                .map_err(|_| "encoding the metrics failed".to_string())
                        }));
                        let openmetrics =
                            run.unwrap_or_else(|_| Err("the collection panicked".into()));
                        let out = Arc::new(Rendered {
                            openmetrics,
                            prometheus: OnceLock::new(),
                        });
                        // Free the slot before publishing, so a scrape arriving after
                        // this point starts a fresh collection.
                        *me.inflight.lock().unwrap_or_else(|e| e.into_inner()) = None;
                        let _ = tx.send(Some(out));
                    });
                    rx
                }
            }
        };
        let done = rx.wait_for(Option::is_some).await.map(|v| v.clone());
        match done {
            Ok(Some(r)) => r,
            _ => unreachable_rendered(),
        }
    }
}

fn unreachable_rendered() -> Arc<Rendered> {
    Arc::new(Rendered {
        openmetrics: Err("the collection ended without a result".into()),
        prometheus: OnceLock::new(),
    })
}

fn text(status: StatusCode, body: &'static str) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from_static(body.as_bytes())));
    *r.status_mut() = status;
    r.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    r
}

fn html_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

fn index(collector: &TcpCollector) -> Response<Full<Bytes>> {
    let cfg = collector.config();
    let last = match collector.last_error() {
        Some(e) => format!("<p>Last scrape error: {}</p>", html_escape(&e)),
        None => String::new(),
    };
    let body = format!(
        "<!DOCTYPE html>\n<html><head><title>tcpstate exporter</title></head><body>\n<h1>tcpstate exporter</h1>\n<p><a href=\"/metrics\">Metrics</a></p>\n<p>Namespaces: {}; top {} per metric; at most {} namespaces; scrapes so far: {}.</p>\n{last}</body></html>\n",
        html_escape(&format!("{:?}", cfg.netns)),
        cfg.limits.top,
        cfg.limits.max_netns,
        collector.scrapes(),
    );
    let mut r = Response::new(Full::new(Bytes::from(body)));
    r.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    r
}

async fn handle(scraper: Arc<Scraper>, req: Request<Incoming>) -> Response<Full<Bytes>> {
    let path = req.uri().path();
    let known = path == "/" || path == "/metrics";
    if !known {
        return text(StatusCode::NOT_FOUND, "not found: try /metrics\n");
    }
    if req.method() != Method::GET && req.method() != Method::HEAD {
        let mut r = text(
            StatusCode::METHOD_NOT_ALLOWED,
            "method not allowed: use GET\n",
        );
        r.headers_mut()
            .insert(ALLOW, HeaderValue::from_static("GET, HEAD"));
        return r;
    }
    if path == "/" {
        return index(&scraper.collector);
    }
    let openmetrics =
        format::wants_openmetrics(req.headers().get(ACCEPT).and_then(|v| v.to_str().ok()));
    let content_type = if openmetrics {
        format::OPENMETRICS_CONTENT_TYPE
    } else {
        format::PROMETHEUS_CONTENT_TYPE
    };
    if req.method() == Method::HEAD {
        let mut r = Response::new(Full::new(Bytes::new()));
        r.headers_mut()
            .insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
        return r;
    }
    let rendered = scraper.collect().await;
    let body = if openmetrics {
        rendered.openmetrics.as_deref().map_err(String::as_str)
    } else {
        rendered.prometheus()
    };
    match body {
        Ok(b) => {
            let mut r = Response::new(Full::new(Bytes::copy_from_slice(b.as_bytes())));
            r.headers_mut()
                .insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
            r
        }
        Err(_) => text(
            StatusCode::INTERNAL_SERVER_ERROR,
            "collection failed; see tcpstate_scrape_errors_total and the index page\n",
        ),
    }
}

/// How many over-cap connections get their 503 delivered at once, and for how long each.
const BUSY_RESPONDERS: usize = 32;
const BUSY_LINGER: Duration = Duration::from_millis(500);

const BUSY: &[u8] = b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: text/plain\r\nContent-Length: 25\r\nConnection: close\r\n\r\ntoo many open connections";

/// Serves until `shutdown` completes. Blocks the calling thread (it runs its own runtime).
pub fn serve(
    bound: Bound,
    collector: Arc<TcpCollector>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ServeError> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .max_blocking_threads(4)
        .thread_name("tcpstate-exporter")
        .enable_all()
        .build()
        .map_err(ServeError::Runtime)?;
    let Bound { listener, config } = bound;
    let mut registry = Registry::default();
    registry.register_collector(Box::new(Arc::clone(&collector)));
    let scraper = Arc::new(Scraper {
        registry,
        collector,
        inflight: Mutex::new(None),
    });
    rt.block_on(async move {
        let listener =
            tokio::net::TcpListener::from_std(listener).map_err(|source| ServeError::Bind {
                addr: config.listen,
                source,
            })?;
        let slots = Arc::new(Semaphore::new(config.max_connections));
        let busy_slots = Arc::new(Semaphore::new(BUSY_RESPONDERS));
        tokio::pin!(shutdown);
        loop {
            let accepted = tokio::select! {
                r = listener.accept() => r,
                () = &mut shutdown => return Ok(()),
            };
            let stream = match accepted {
                Ok((s, _)) => s,
                Err(_) => {
                    // EMFILE and friends: back off instead of spinning; the listener stays.
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            };
            let Ok(permit) = Arc::clone(&slots).try_acquire_owned() else {
                // Over the cap: answer 503, but not with write-then-close. A close() with the
                // client's request still unread sends RST instead of FIN (__tcp_close, RFC
                // 2525 §2.17: `tcpstate simulate unread-data-close`), and the RST makes the
                // client discard the 503. So: write, half-close, drain briefly. These
                // responders have a small pool of their own; past it the connection is
                // dropped outright.
                if let Ok(busy) = Arc::clone(&busy_slots).try_acquire_owned() {
                    tokio::spawn(async move {
                        let mut stream = stream;
                        let _ = tokio::time::timeout(BUSY_LINGER, async {
                            let _ = stream.write_all(BUSY).await;
                            let _ = stream.shutdown().await;
                            let mut sink = [0u8; 1024];
                            while let Ok(n) = stream.read(&mut sink).await {
                                if n == 0 {
                                    break;
                                }
                            }
                        })
                        .await;
                        drop(busy);
                    });
                }
                continue;
            };
            let _ = stream.set_nodelay(true);
            let scraper = Arc::clone(&scraper);
            let config = config.clone();
            tokio::spawn(async move {
                let service = hyper::service::service_fn(move |req| {
                    let scraper = Arc::clone(&scraper);
                    async move { Ok::<_, Infallible>(handle(scraper, req).await) }
                });
                let mut builder = hyper::server::conn::http1::Builder::new();
                builder
                    .timer(TokioTimer::new())
                    .header_read_timeout(config.header_timeout)
                    .max_buf_size(config.max_header_bytes.max(8192) * 2)
                    .max_header_size(config.max_header_bytes)
                    .max_headers(config.max_headers);
                let conn = builder.serve_connection(TokioIo::new(stream), service);
                tokio::pin!(conn);
                tokio::select! {
                    _ = conn.as_mut() => {}
                    () = tokio::time::sleep(config.connection_lifetime) => {
                        conn.as_mut().graceful_shutdown();
                        let _ = tokio::time::timeout(config.header_timeout, conn).await;
                    }
                }
                drop(permit);
            });
        }
    })
}

/// Completes on SIGINT or SIGTERM (for [`serve`]'s `shutdown`); never completes if the
/// handlers cannot be installed, leaving the default action (termination) in place.
pub async fn termination() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match (
            signal(SignalKind::interrupt()),
            signal(SignalKind::terminate()),
        ) {
            (Ok(mut int), Ok(mut term)) => {
                tokio::select! {
                    _ = int.recv() => {}
                    _ = term.recv() => {}
                }
            }
            _ => std::future::pending().await,
        }
    }
    #[cfg(not(unix))]
    std::future::pending::<()>().await
}

/// One collection in the classic text format, without a server (`tcpstate exporter --once`).
pub fn render_once(collector: Arc<TcpCollector>) -> Result<String, std::fmt::Error> {
    let mut registry = Registry::default();
    registry.register_collector(Box::new(collector));
    let mut s = String::new();
    prometheus_client::encoding::text::encode(&mut s, &registry)?;
    Ok(format::openmetrics_to_prometheus(&s))
}
