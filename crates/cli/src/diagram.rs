//! `tcpstate diagram`: the TCP state diagram, drawn from the machine's transition table.

use crate::args::ProfileArg;
use anyhow::Context;
use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use tcpstate_draw::{diagram, graphviz_available, DiagramFormat, DiagramProfile};

/// `tcpstate diagram` arguments.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// Output format: Graphviz dot source, SVG, or Mermaid stateDiagram-v2.
    #[arg(long, value_enum, default_value_t = FormatArg::Dot)]
    format: FormatArg,
    /// Whose transitions: the Linux kernel's (Linux-only edges dashed) or RFC 9293's.
    #[arg(long, value_enum, default_value_t = ProfileArg::Linux)]
    profile: ProfileArg,
    /// SVG layout: Graphviz when installed (auto), Graphviz or nothing, or the built-in one.
    #[arg(long, value_enum, default_value_t = LayoutArg::Auto)]
    layout: LayoutArg,
    /// Write to FILE instead of standard output.
    #[arg(short = 'o', long = "output", value_name = "FILE")]
    output: Option<PathBuf>,
}

/// `--format`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum FormatArg {
    /// Graphviz dot source (`dot -Tpng` renders it).
    Dot,
    /// SVG.
    Svg,
    /// Mermaid stateDiagram-v2.
    Mermaid,
}

/// `--layout` (SVG only).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum LayoutArg {
    /// Graphviz when `dot` is installed, else the built-in layout.
    Auto,
    /// Graphviz; an error when it is not installed.
    Graphviz,
    /// The built-in layout.
    Builtin,
}

/// Run `tcpstate diagram`.
pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let profile = match args.profile {
        ProfileArg::Linux => DiagramProfile::Linux,
        ProfileArg::Rfc => DiagramProfile::Rfc,
    };
    let format = match (args.format, args.layout) {
        (FormatArg::Dot, _) => DiagramFormat::Dot,
        (FormatArg::Mermaid, _) => DiagramFormat::Mermaid,
        (FormatArg::Svg, LayoutArg::Graphviz) => DiagramFormat::SvgGraphviz,
        (FormatArg::Svg, LayoutArg::Builtin) => DiagramFormat::SvgBuiltin,
        (FormatArg::Svg, LayoutArg::Auto) => {
            if graphviz_available() {
                DiagramFormat::SvgGraphviz
            } else {
                // Say so: the figure differs from the Graphviz one.
                eprintln!(
                    "tcpstate: Graphviz `dot` not found; using the built-in layout \
                     (install graphviz for the Graphviz layout)"
                );
                DiagramFormat::SvgBuiltin
            }
        }
    };
    let text = diagram(profile, format).context("drawing the state diagram")?;
    match &args.output {
        Some(path) => std::fs::write(path, &text)
            .with_context(|| format!("writing the diagram to {}", path.display()))?,
        None => {
            let mut out = std::io::stdout().lock();
            out.write_all(text.as_bytes())?;
            out.flush()?;
        }
    }
    Ok(ExitCode::SUCCESS)
}
