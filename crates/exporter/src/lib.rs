//! `tcpstate-exporter`: tcpstate for fleets. A Prometheus exporter that reads the host
//! through `tcpstate-host` at every scrape and publishes what `ss` cannot say per process:
//! sockets per state and network namespace, CLOSE_WAIT count and estimated oldest age per
//! process, TIME_WAIT per remote endpoint, ephemeral port usage per local address, dead
//! sockets still held per process, and the kernel's abort and TIME_WAIT overflow counters.
//!
//! Label cardinality is bounded by construction ([`aggregate::Limits`]): at most N label
//! sets per per-process or per-endpoint metric, the rest summed into `"other"` and counted.
//! Metrics go through the official `prometheus-client` crate (a [`Collector`] that reads at
//! scrape time); the HTTP server ([`server`]) is hyper with limits that keep one bad client
//! from stopping the others, and concurrent scrapes share one collection.
//!
//! What it is not: a time-series store or an alerting engine (the alert rules and the
//! Grafana dashboard live in `deploy/`), a socket reader of its own (that is
//! `tcpstate-host`), or a push gateway client. It never prints.
//!
//! [`Collector`]: prometheus_client::collector::Collector
#![deny(missing_docs)]

pub mod aggregate;
pub mod collector;
pub mod dead;
pub mod encode;
pub mod format;
pub mod server;

pub use aggregate::Limits;
pub use collector::{CollectorConfig, DeadOutcome, DeadScan, LastCollection, TcpCollector};
pub use server::{bind, render_once, serve, termination, Bound, ServeError, ServerConfig};
