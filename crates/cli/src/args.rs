//! Argument types shared by several commands.

use std::time::Duration;
use tcpstate_fsm::Profile;

/// Which network namespaces a command looks at: `--netns NAME`, `--netns-pid PID`,
/// `--all-netns`, or (none given) the caller's own. Shared by ls, doctor, watch, exporter.
#[derive(clap::Args, Debug, Clone, Default)]
pub struct NamespaceArgs {
    /// Network namespace NAME (/run/netns/NAME, as made by `ip netns add`).
    #[arg(long, value_name = "NAME", conflicts_with_all = ["netns_pid", "all_netns"])]
    pub netns: Option<String>,
    /// The network namespace process PID is in.
    #[arg(long, value_name = "PID", conflicts_with = "all_netns")]
    pub netns_pid: Option<u32>,
    /// Every distinct network namespace on the host (needs root); each row or series names
    /// its namespace.
    #[arg(long)]
    pub all_netns: bool,
}

#[cfg(target_os = "linux")]
impl NamespaceArgs {
    /// The host crate's selector for these flags.
    pub fn selector(&self) -> tcpstate_host::netns::NetnsSelector {
        use tcpstate_host::netns::NetnsSelector;
        if self.all_netns {
            NetnsSelector::All
        } else if let Some(n) = &self.netns {
            NetnsSelector::Named(n.clone())
        } else if let Some(p) = self.netns_pid {
            NetnsSelector::Pid(p)
        } else {
            NetnsSelector::Current
        }
    }
}

/// `--profile linux|rfc`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ProfileArg {
    /// The Linux kernel's behaviour.
    Linux,
    /// RFC 9293 as written.
    Rfc,
}

impl ProfileArg {
    /// The machine profile.
    pub fn profile(self) -> Profile {
        match self {
            ProfileArg::Linux => Profile::linux(),
            ProfileArg::Rfc => Profile::rfc9293(),
        }
    }
}

/// `--chart text|msc|mermaid|svg`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ChartArg {
    /// Plain text for a terminal.
    Text,
    /// mscgen input.
    Msc,
    /// Mermaid sequenceDiagram.
    Mermaid,
    /// SVG.
    Svg,
}

impl ChartArg {
    /// The draw crate's format.
    pub fn format(self) -> tcpstate_draw::ChartFormat {
        match self {
            ChartArg::Text => tcpstate_draw::ChartFormat::Text,
            ChartArg::Msc => tcpstate_draw::ChartFormat::Msc,
            ChartArg::Mermaid => tcpstate_draw::ChartFormat::Mermaid,
            ChartArg::Svg => tcpstate_draw::ChartFormat::Svg,
        }
    }
}

/// Parse `120`, `120s`, `2m`, `1h`, `500ms`, `1.5s` into a duration.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let (number, unit) = match s.find(|c: char| c.is_ascii_alphabetic()) {
        Some(i) => s.split_at(i),
        None => (s, "s"),
    };
    let value: f64 = number
        .parse()
        .map_err(|_| format!("invalid duration {s:?}: expected e.g. 120s, 2m, 500ms"))?;
    let seconds = match unit {
        "ms" => value / 1000.0,
        "s" | "sec" => value,
        "m" | "min" => value * 60.0,
        "h" => value * 3600.0,
        _ => {
            return Err(format!(
                "invalid duration unit {unit:?} in {s:?}: use ms, s, m or h"
            ))
        }
    };
    if !seconds.is_finite() || seconds < 0.0 {
        return Err(format!("invalid duration {s:?}"));
    }
    Ok(Duration::from_secs_f64(seconds))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("120"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert!(parse_duration("2 weeks").is_err());
        assert!(parse_duration("-1s").is_err());
    }
}
