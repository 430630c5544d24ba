//! How the commands write to the terminal: stdout writes that end quietly on a closed pipe, and
//! whether colours are wanted (`NO_COLOR`, terminals only); does I/O (stdout, environment).
//!
//! Rust ignores SIGPIPE, so a write to a pipe whose reader has gone (`serin crds | head -1`)
//! fails with `BrokenPipe`, and `print!` turns that into a panic (exit 101). Every command writes
//! its output through [`write_stdout`] instead, and [`finish`] turns a closed pipe into exit 0:
//! the reader took what it wanted, which is a success (as ripgrep and fd do; a `set -o pipefail`
//! script keeps going). Other write errors (a full disk) are reported and exit 1.
use std::ffi::OsStr;
use std::io::{IsTerminal, Write};
use std::process::ExitCode;

/// Writes `text` to stdout and flushes it.
pub fn write_stdout(text: &str) -> std::io::Result<()> {
    let mut out = std::io::stdout().lock();
    out.write_all(text.as_bytes())?;
    out.flush()
}

/// Writes one line to stderr, ignoring write errors: stderr may be a closed pipe too
/// (`serin validate … 2>&1 | head`), and `eprintln!` would panic there.
pub fn stderr_line(line: &str) {
    let _ = writeln!(std::io::stderr().lock(), "{line}");
}

/// Whether an output error means the reader has gone away.
pub fn is_closed_pipe(e: &std::io::Error) -> bool {
    e.kind() == std::io::ErrorKind::BrokenPipe
}

/// The exit code of a command whose output went through [`write_stdout`]: `code` when the
/// output was written, 0 quietly when the reader closed the pipe, and 1 with a message for any
/// other write error.
pub fn finish(command: &str, written: std::io::Result<()>, code: ExitCode) -> ExitCode {
    match written {
        Ok(()) => code,
        Err(e) if is_closed_pipe(&e) => ExitCode::SUCCESS,
        Err(e) => {
            // stderr may be the same closed pipe (`2>&1 | head`): its errors are ignored too.
            let _ = writeln!(std::io::stderr(), "{command}: cannot write the output: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Whether text written to a stream may carry ANSI colours: only on a terminal, and never when
/// `NO_COLOR` is set to a non-empty value (<https://no-color.org>).
pub fn colour_allowed(no_color: Option<&OsStr>, is_terminal: bool) -> bool {
    is_terminal && no_color.is_none_or(OsStr::is_empty)
}

/// Whether stdout may carry ANSI colours.
pub fn stdout_colour() -> bool {
    colour_allowed(
        std::env::var_os("NO_COLOR").as_deref(),
        std::io::stdout().is_terminal(),
    )
}

/// Whether stderr (where the logs go) may carry ANSI colours.
pub fn stderr_colour() -> bool {
    colour_allowed(
        std::env::var_os("NO_COLOR").as_deref(),
        std::io::stderr().is_terminal(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn colours_need_a_terminal_and_no_no_color() {
        let set = Some(OsStr::new("1"));
        let empty = Some(OsStr::new(""));
        assert!(colour_allowed(None, true));
        assert!(colour_allowed(empty, true), "an empty NO_COLOR is unset");
        assert!(!colour_allowed(set, true));
        assert!(!colour_allowed(None, false));
        assert!(!colour_allowed(empty, false));
    }

    #[test]
    fn a_closed_pipe_ends_quietly_and_other_write_errors_fail() {
        let closed = std::io::Error::from(std::io::ErrorKind::BrokenPipe);
        let full = std::io::Error::from(std::io::ErrorKind::StorageFull);
        assert_eq!(
            finish("t", Err(closed), ExitCode::from(3)),
            ExitCode::SUCCESS
        );
        assert_eq!(finish("t", Err(full), ExitCode::SUCCESS), ExitCode::FAILURE);
        assert_eq!(finish("t", Ok(()), ExitCode::from(3)), ExitCode::from(3));
    }
}
