//! `tcpstate exporter`: Prometheus metrics for fleets — sockets per state and namespace,
//! CLOSE_WAIT per process, TIME_WAIT per remote, ephemeral port usage, dead sockets held,
//! kernel abort counters. The work is in `tcpstate-exporter`.

use anyhow::Context;
use std::io::Write;
use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;
use tcpstate_exporter::{CollectorConfig, DeadScan, Limits, ServerConfig, TcpCollector};

/// Serve Prometheus metrics (`/metrics`) about this host's TCP sockets.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// Address to listen on. Loopback by default; any other address needs --allow-remote.
    #[arg(long, default_value = "127.0.0.1:9977", value_name = "IP:PORT")]
    pub listen: SocketAddr,
    /// Allow a non-loopback --listen address (the metrics name processes and peers).
    #[arg(long)]
    pub allow_remote: bool,
    #[command(flatten)]
    pub namespace: crate::args::NamespaceArgs,
    /// Read /proc/net/tcp{,6} instead of NETLINK_SOCK_DIAG (no CLOSE_WAIT age then).
    #[arg(long)]
    pub proc: bool,
    /// Label sets kept per metric (CLOSE_WAIT per process, TIME_WAIT per remote, port
    /// usage per local address, dead sockets per process); the rest go into "other".
    #[arg(long, default_value_t = 10, value_name = "N")]
    pub top: usize,
    /// Namespaces kept as their own `netns` label; the rest are summed into "other".
    #[arg(long, default_value_t = 64, value_name = "N")]
    pub max_netns: usize,
    /// Never search for dead sockets still held. Without it, the search (a read of every fd
    /// of the exported namespaces' processes) runs only when the kernel's counts cannot
    /// rule out a dead socket that the last search did not find.
    #[arg(long)]
    pub no_dead_scan: bool,
    /// Open HTTP connections at most; past it new ones get 503.
    #[arg(long, default_value_t = 64, value_name = "N")]
    pub max_connections: usize,
    /// Seconds a client has to send its request headers (also the keep-alive idle limit).
    #[arg(long, default_value_t = 10.0, value_name = "SECS")]
    pub header_timeout: f64,
    /// Print one scrape (Prometheus text format) to stdout and exit, without serving.
    #[arg(long)]
    pub once: bool,
}

impl Args {
    fn collector_config(&self) -> CollectorConfig {
        let netns = self.namespace.selector();
        CollectorConfig {
            netns,
            proc_only: self.proc,
            limits: Limits {
                top: self.top,
                max_netns: self.max_netns.max(1),
            },
            dead_scan: if self.no_dead_scan {
                DeadScan::Never
            } else {
                DeadScan::Auto
            },
        }
    }
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    if !(args.header_timeout.is_finite() && args.header_timeout > 0.0) {
        eprintln!("tcpstate exporter: --header-timeout must be a positive number of seconds");
        return Ok(ExitCode::from(2));
    }
    if args.max_connections == 0 {
        eprintln!("tcpstate exporter: --max-connections must be at least 1");
        return Ok(ExitCode::from(2));
    }
    let collector = Arc::new(TcpCollector::new(args.collector_config()));
    let mut out = std::io::stdout().lock();
    if args.once {
        let text = tcpstate_exporter::render_once(Arc::clone(&collector))
            .context("encoding the metrics")?;
        out.write_all(text.as_bytes())?;
        if let Some(e) = collector.last_error() {
            eprintln!("tcpstate exporter: scrape error: {e}");
            return Ok(ExitCode::from(2));
        }
        return Ok(ExitCode::SUCCESS);
    }
    let mut config = ServerConfig::new(args.listen);
    config.allow_remote = args.allow_remote;
    config.max_connections = args.max_connections;
    config.header_timeout = Duration::from_secs_f64(args.header_timeout);
    let bound = match tcpstate_exporter::bind(config) {
        Ok(b) => b,
        Err(e @ tcpstate_exporter::ServeError::NotLoopback(_)) => {
            eprintln!("tcpstate exporter: {e} (--allow-remote)");
            return Ok(ExitCode::from(2));
        }
        Err(e) => return Err(e).context("starting the exporter"),
    };
    writeln!(
        out,
        "tcpstate exporter: serving http://{}/metrics",
        bound.local_addr()
    )?;
    out.flush()?;
    drop(out);
    tcpstate_exporter::serve(bound, collector, tcpstate_exporter::termination())
        .context("serving metrics")?;
    Ok(ExitCode::SUCCESS)
}
