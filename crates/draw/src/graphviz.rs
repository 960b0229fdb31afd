//! Running Graphviz `dot` when it is installed (the one place this crate starts a process).

use crate::DrawError;
use std::io::Write;
use std::process::{Command, Stdio};

/// The Graphviz program, looked up in `PATH`.
fn dot_program() -> String {
    "dot".to_string()
}

/// Whether Graphviz `dot` can be started.
pub fn graphviz_available() -> bool {
    Command::new(dot_program())
        .arg("-V")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Lay out dot source with Graphviz and return the SVG.
///
/// [`DrawError::GraphvizMissing`] when `dot` cannot be started (the caller may fall back);
/// [`DrawError::Graphviz`] with its stderr when it ran and failed.
pub(crate) fn dot_to_svg(source: &str) -> Result<String, DrawError> {
    let program = dot_program();
    let mut child = match Command::new(&program)
        .arg("-Tsvg")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
    {
        Ok(child) => child,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(DrawError::GraphvizMissing)
        }
        Err(e) => {
            return Err(DrawError::Io {
                what: format!("starting Graphviz `{program}`"),
                source: e,
            })
        }
    };
    // Write stdin from a thread: dot may start writing before it has read everything.
    let mut stdin = child.stdin.take().expect("stdin was piped");
    let input = source.to_string();
    let writer = std::thread::spawn(move || stdin.write_all(input.as_bytes()));
    let output = child.wait_with_output().map_err(|e| DrawError::Io {
        what: format!("waiting for Graphviz `{program}`"),
        source: e,
    })?;
    let written = writer
        .join()
        .unwrap_or_else(|_| Err(std::io::Error::other("writer thread panicked")));
    if !output.status.success() {
        return Err(DrawError::Graphviz {
            status: output.status.to_string(),
            stderr: String::from_utf8_lossy(&output.stderr).trim().to_string(),
        });
    }
    written.map_err(|e| DrawError::Io {
        what: format!("writing the diagram to Graphviz `{program}`"),
        source: e,
    })?;
    String::from_utf8(output.stdout).map_err(|_| DrawError::Graphviz {
        status: output.status.to_string(),
        stderr: "Graphviz wrote SVG that is not UTF-8".to_string(),
    })
}
