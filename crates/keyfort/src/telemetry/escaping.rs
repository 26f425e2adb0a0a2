//! Log lines that outside values cannot forge. A value logged from a request (a `kid` of a
//! TPP's JWKS, a URL, an error chain quoting either) may hold a line break, a terminal
//! escape sequence or a bidirectional override; written raw, it would start a line of its
//! own that reads like Keyfort's. Every field value is escaped here, in both formats, so no
//! call site has to remember to.
//!
//! - Text: [`EscapedFields`] formats the fields of events and spans (the message included)
//!   with every character of [`keyfort_core::text::needs_escaping`] escaped.
//! - JSON: serde already escapes the control characters below U+0020 inside strings;
//!   [`EscapedJson`] escapes the rest (DEL, C1 controls such as NEL, U+2028 and U+2029, the
//!   bidirectional marks), which line-splitting tools and terminals also treat specially.

use std::fmt::{self, Write as _};
use std::io;

use keyfort_core::text::{escape_controls, needs_escaping};
use tracing::field::{Field, Visit};
use tracing_subscriber::field::RecordFields;
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FormatFields, MakeWriter};

/// Formats event and span fields as `message key=value ...`, like tracing-subscriber's
/// default, with every value escaped.
#[derive(Debug, Default, Clone, Copy)]
pub struct EscapedFields;

impl<'writer> FormatFields<'writer> for EscapedFields {
    fn format_fields<R: RecordFields>(&self, writer: Writer<'writer>, fields: R) -> fmt::Result {
        let mut visitor = EscapingVisitor { writer, empty: true, result: Ok(()) };
        fields.record(&mut visitor);
        visitor.result
    }
}

struct EscapingVisitor<'writer> {
    writer: Writer<'writer>,
    empty: bool,
    result: fmt::Result,
}

impl EscapingVisitor<'_> {
    fn write(&mut self, field: &Field, value: &str) {
        let name = field.name();
        // `log.*` fields are the `log` crate's metadata, shown elsewhere by the formatter.
        if self.result.is_err() || name.starts_with("log.") {
            return;
        }
        let separator = if self.empty { "" } else { " " };
        self.empty = false;
        let value = escape_controls(value);
        self.result = if name == "message" {
            write!(self.writer, "{separator}{value}")
        } else {
            write!(self.writer, "{separator}{}={value}", name.strip_prefix("r#").unwrap_or(name))
        };
    }
}

impl Visit for EscapingVisitor<'_> {
    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            self.write(field, value);
        } else {
            // Quoted as the default formatter does (`key="value"`), so that a value with
            // spaces reads as one.
            self.write(field, &format!("{value:?}"));
        }
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        let mut text = String::new();
        let _ = write!(text, "{value:?}");
        self.write(field, &text);
    }
}

/// A writer for JSON log lines: escapes what serde leaves raw inside JSON strings (see the
/// module). A raw line feed in the output is always the end of a line (serde escapes the
/// ones inside strings), so it is kept.
#[derive(Debug, Clone)]
pub struct EscapedJson<M>(pub M);

impl<'a, M: MakeWriter<'a>> MakeWriter<'a> for EscapedJson<M> {
    type Writer = JsonLineWriter<M::Writer>;

    fn make_writer(&'a self) -> Self::Writer {
        JsonLineWriter(self.0.make_writer())
    }

    fn make_writer_for(&'a self, meta: &tracing::Metadata<'_>) -> Self::Writer {
        JsonLineWriter(self.0.make_writer_for(meta))
    }
}

pub struct JsonLineWriter<W>(W);

/// Escapes, as JSON `\uXXXX`, the characters of [`needs_escaping`] at or above U+0020.
fn escape_json_line(text: &str) -> Option<String> {
    let special = |c: char| c >= ' ' && needs_escaping(c);
    if !text.chars().any(special) {
        return None;
    }
    let mut out = String::with_capacity(text.len() + 12);
    for c in text.chars() {
        if special(c) {
            // Every such character is in the Basic Multilingual Plane: one \u escape.
            let _ = write!(out, "\\u{:04x}", u32::from(c));
        } else {
            out.push(c);
        }
    }
    Some(out)
}

impl<W: io::Write> io::Write for JsonLineWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        // tracing-subscriber formats a whole event into one buffer and writes it at once.
        match std::str::from_utf8(buf).ok().and_then(escape_json_line) {
            Some(escaped) => self.0.write_all(escaped.as_bytes())?,
            None => self.0.write_all(buf)?,
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.0.flush()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use super::*;

    #[derive(Clone, Default)]
    struct Captured(Arc<Mutex<Vec<u8>>>);

    impl io::Write for Captured {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    impl<'a> MakeWriter<'a> for Captured {
        type Writer = Captured;
        fn make_writer(&'a self) -> Self::Writer {
            self.clone()
        }
    }

    const FORGED: &str =
        "ok\n2026-01-01T00:00:00.000000Z  INFO administrator signed in\u{2028}x\u{1b}[2J\u{85}\u{202e}";

    fn log_everything() {
        let span = tracing::info_span!("request", id = %FORGED, path = FORGED);
        let _entered = span.enter();
        tracing::warn!(kid = %FORGED, other = FORGED, debug = ?FORGED, "fetching {FORGED} failed");
        let error: Box<dyn std::error::Error> = FORGED.into();
        tracing::error!(error = &*error as &dyn std::error::Error, "an error");
    }

    fn lines(captured: &Captured) -> Vec<String> {
        String::from_utf8(captured.0.lock().unwrap().clone()).unwrap().split('\n').map(str::to_owned).collect()
    }

    fn is_line_breaking(c: char) -> bool {
        matches!(c, '\u{b}' | '\u{c}' | '\r' | '\u{1c}'..='\u{1e}' | '\u{85}' | '\u{2028}' | '\u{2029}')
    }

    /// Hardening issue, finding 5: an outside value with a line break (or another line or
    /// terminal control) cannot start a log line of its own, in either format.
    #[test]
    fn outside_values_cannot_forge_text_log_lines() {
        let captured = Captured::default();
        let subscriber =
            tracing_subscriber::fmt().with_writer(captured.clone()).with_ansi(false).fmt_fields(EscapedFields).finish();
        tracing::subscriber::with_default(subscriber, log_everything);
        let lines = lines(&captured);
        assert_eq!(lines.len(), 3, "two events, one line each: {lines:#?}");
        for line in &lines[..2] {
            assert!(!line.chars().any(|c| c.is_control() || is_line_breaking(c) || c == '\u{202e}'), "{line:?}");
            assert!(line.contains("ok\\n2026-01-01T00:00:00.000000Z  INFO administrator signed in"), "{line}");
        }
        assert!(lines[0].contains("kid=ok\\n") && lines[0].contains("fetching ok\\n"), "{}", lines[0]);
        assert!(lines[0].contains("id=ok\\n"), "span fields are escaped too: {}", lines[0]);
    }

    #[test]
    fn outside_values_cannot_forge_json_log_lines() {
        let captured = Captured::default();
        let subscriber = tracing_subscriber::fmt().with_writer(EscapedJson(captured.clone())).json().finish();
        tracing::subscriber::with_default(subscriber, log_everything);
        let lines = lines(&captured);
        assert_eq!(lines.len(), 3, "{lines:#?}");
        for line in &lines[..2] {
            assert!(!line.chars().any(|c| c.is_control() || is_line_breaking(c) || c == '\u{202e}'), "{line:?}");
            let parsed: serde_json::Value = serde_json::from_str(line).unwrap();
            let text = parsed.to_string();
            assert!(text.contains("administrator signed in"), "{text}");
        }
        let parsed: serde_json::Value = serde_json::from_str(&lines[0]).unwrap();
        assert_eq!(parsed["fields"]["kid"], FORGED, "the value itself survives, escaped only on the wire");
    }
}
