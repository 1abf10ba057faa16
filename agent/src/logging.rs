//! Log output: readable lines by default, JSON lines with `--log-format json`, always on stderr so that
//! `render` and `status --json` keep stdout clean for pipes.
//!
//! One event is one line: in the text format every field value, the message included, goes through
//! [`printable`], so a file name holding a newline or CR cannot forge a log line and one holding escape
//! sequences cannot drive the terminal of whoever tails the log. The JSON encoder escapes them already.

use std::fmt;

use tracing_subscriber::field::MakeExt;
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::EnvFilter;

use outpost_proto::text::printable;

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

/// `level` is a tracing filter (`info`, `debug`, `outpost_agent=debug,warn`); `OUTPOST_LOG` overrides it.
pub fn init(format: LogFormat, level: &str) {
    let filter = std::env::var("OUTPOST_LOG")
        .ok()
        .and_then(|f| EnvFilter::try_new(f).ok())
        .or_else(|| EnvFilter::try_new(level).ok())
        .unwrap_or_else(|| EnvFilter::new("info"));
    // Colour only on a terminal: journald and log files must get plain text.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr())
        && std::env::var_os("NO_COLOR").is_none();
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(ansi);
    let _ = match format {
        LogFormat::Text => builder
            .with_target(false)
            .fmt_fields(tracing_subscriber::fmt::format::debug_fn(escaped_field).delimited(" "))
            .try_init(),
        LogFormat::Json => builder.json().with_current_span(false).try_init(),
    };
}

/// Writes one field of a text log line, `name=value` (the message bare), with its value made printable.
fn escaped_field(
    writer: &mut Writer<'_>,
    field: &tracing::field::Field,
    value: &dyn fmt::Debug,
) -> fmt::Result {
    let text = format!("{value:?}");
    match field.name() {
        "message" => write!(writer, "{}", printable(&text)),
        name => write!(writer, "{name}={}", printable(&text)),
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use super::*;

    #[derive(Clone, Default)]
    struct Captured(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Captured {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn a_text_log_event_stays_one_line_without_control_bytes() {
        let captured = Captured::default();
        let sink = captured.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_writer(move || sink.clone())
            .with_ansi(false)
            .with_target(false)
            .fmt_fields(tracing_subscriber::fmt::format::debug_fn(escaped_field).delimited(" "))
            .finish();
        let name = "evil\r\n2026-01-01T00:00:00Z  INFO forged line\u{1b}]0;title\u{7}.yaml";
        tracing::subscriber::with_default(subscriber, || {
            tracing::warn!(file = %name, "cannot read {name}");
        });
        let text = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
        assert_eq!(text.lines().count(), 1, "{text}");
        assert!(!text.trim_end().chars().any(|c| c.is_control()), "{text:?}");
        assert!(text.contains("cannot read evil\\r\\n2026"), "{text}");
        assert!(text.contains("file=evil\\r\\n"), "{text}");
    }
}
