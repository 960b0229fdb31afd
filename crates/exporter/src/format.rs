//! The two exposition formats and the choice between them.
//!
//! prometheus-client writes OpenMetrics text (counter families named without `_total`,
//! samples with it, `# EOF` at the end). Prometheus asks for it in its `Accept` header and
//! gets it as written. Everything else (curl, promtool, older scrapers) gets the classic
//! Prometheus text format 0.0.4, which differs only where OpenMetrics does: a counter's
//! `# HELP`/`# TYPE` lines carry the `_total` name, there are no `# UNIT` lines and no
//! `# EOF`. The conversion is line-based and only touches comment lines, so samples pass
//! through byte for byte.

/// `Content-Type` of OpenMetrics text.
pub const OPENMETRICS_CONTENT_TYPE: &str =
    "application/openmetrics-text; version=1.0.0; charset=utf-8";
/// `Content-Type` of the classic Prometheus text format.
pub const PROMETHEUS_CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Whether an `Accept` header asks for OpenMetrics text (and does not refuse it with q=0).
pub fn wants_openmetrics(accept: Option<&str>) -> bool {
    let Some(accept) = accept else { return false };
    accept.split(',').any(|part| {
        let mut params = part.split(';').map(str::trim);
        let media = params.next().unwrap_or("");
        media.eq_ignore_ascii_case("application/openmetrics-text")
            && !params.any(|p| {
                p.strip_prefix("q=")
                    .and_then(|q| q.parse::<f64>().ok())
                    .is_some_and(|q| q <= 0.0)
            })
    })
}

/// Converts OpenMetrics text as prometheus-client writes it into the classic format.
pub fn openmetrics_to_prometheus(om: &str) -> String {
    // Counter family names, from their TYPE lines (HELP comes before TYPE, so look ahead).
    let counters: std::collections::HashSet<&str> = om
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE ")?.strip_suffix(" counter"))
        .collect();
    let mut out = String::with_capacity(om.len() + 64 * counters.len());
    for line in om.lines() {
        if line == "# EOF" || line.starts_with("# UNIT ") {
            continue;
        }
        let rewritten = ["# HELP ", "# TYPE "].iter().find_map(|prefix| {
            let rest = line.strip_prefix(prefix)?;
            let (name, tail) = rest.split_once(' ').unwrap_or((rest, ""));
            counters
                .contains(name)
                .then(|| format!("{prefix}{name}_total {tail}"))
        });
        match rewritten {
            Some(l) => out.push_str(l.trim_end()),
            None => out.push_str(line),
        }
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn negotiates() {
        assert!(!wants_openmetrics(None));
        assert!(!wants_openmetrics(Some("*/*")));
        assert!(!wants_openmetrics(Some("text/plain;version=0.0.4")));
        // What Prometheus 2.x sends.
        assert!(wants_openmetrics(Some(
            "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1"
        )));
        assert!(!wants_openmetrics(Some(
            "application/openmetrics-text;q=0, text/plain"
        )));
    }

    #[test]
    fn converts_counters_and_drops_eof() {
        let om = "# HELP a_seconds A.\n# TYPE a_seconds gauge\na_seconds 1.5\n# HELP b B.\n# TYPE b counter\nb_total{x=\"y\"} 3\n# EOF\n";
        let p = openmetrics_to_prometheus(om);
        assert_eq!(
            p,
            "# HELP a_seconds A.\n# TYPE a_seconds gauge\na_seconds 1.5\n# HELP b_total B.\n# TYPE b_total counter\nb_total{x=\"y\"} 3\n"
        );
    }
}
