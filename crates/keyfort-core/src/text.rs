//! Text that came from outside, made safe to show: in a log line, an error description, an
//! audit row. A value may hold line breaks (which would forge log lines), terminal escape
//! sequences (which would rewrite a terminal), bidirectional overrides (which would make a
//! line read differently than it is), or simply be megabytes long.

use std::borrow::Cow;
use std::fmt::Write as _;

/// The most characters of an outside value quoted in a message by [`quote`].
pub const QUOTE_MAX_CHARS: usize = 128;

/// Whether `c` must not appear raw where text is shown: control characters (C0, DEL, C1,
/// which includes NEL), the Unicode line and paragraph separators, and the bidirectional
/// marks and overrides.
pub fn needs_escaping(c: char) -> bool {
    c.is_control()
        || matches!(c, '\u{2028}' | '\u{2029}' | '\u{200e}' | '\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
}

/// `text` with every character of [`needs_escaping`] written as an escape: `\n`, `\r`,
/// `\t`, or `\u{XXXX}`. Borrowed when nothing needed escaping (the common case).
pub fn escape_controls(text: &str) -> Cow<'_, str> {
    if !text.chars().any(needs_escaping) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        match c {
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if needs_escaping(c) => {
                let _ = write!(out, "\\u{{{:04x}}}", u32::from(c));
            }
            c => out.push(c),
        }
    }
    Cow::Owned(out)
}

/// At most `max_chars` characters of `text`, saying how many were left out.
pub fn bound(text: &str, max_chars: usize) -> Cow<'_, str> {
    match text.char_indices().nth(max_chars) {
        None => Cow::Borrowed(text),
        Some((cut, _)) => {
            let left_out = text[cut..].chars().count();
            Cow::Owned(format!("{}…({left_out} more characters)", &text[..cut]))
        }
    }
}

/// An outside value for a message: bounded to [`QUOTE_MAX_CHARS`], escaped, in double
/// quotes.
pub fn quote(value: &str) -> String {
    format!("\"{}\"", escape_controls(&bound(value, QUOTE_MAX_CHARS)))
}

/// A whole message that may carry outside values: escaped, and bounded to `max_chars`.
pub fn safe_message(text: &str, max_chars: usize) -> Cow<'_, str> {
    match (bound(text, max_chars), text.chars().any(needs_escaping)) {
        (Cow::Borrowed(b), false) => Cow::Borrowed(b),
        (bounded, _) => Cow::Owned(escape_controls(&bounded).into_owned()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_characters_and_separators_are_escaped() {
        assert_eq!(escape_controls("plain text, é ü"), "plain text, é ü");
        assert!(matches!(escape_controls("plain"), Cow::Borrowed(_)));
        assert_eq!(escape_controls("a\nb\r\tc"), "a\\nb\\r\\tc");
        assert_eq!(escape_controls("\u{1b}[31mred"), "\\u{001b}[31mred");
        assert_eq!(escape_controls("x\u{2028}y\u{85}z\u{7f}"), "x\\u{2028}y\\u{0085}z\\u{007f}");
        assert_eq!(escape_controls("\u{202e}txt.exe"), "\\u{202e}txt.exe");
        for c in ['\n', '\r', '\u{b}', '\u{c}', '\u{1c}', '\u{85}', '\u{2028}', '\u{2029}'] {
            let escaped = escape_controls(&format!("a{c}b")).into_owned();
            assert_eq!(escaped.lines().count(), 1, "{c:?} must not break a line: {escaped}");
        }
    }

    #[test]
    fn long_values_are_bounded() {
        assert_eq!(bound("abc", 3), "abc");
        assert_eq!(bound("abcdef", 3), "abc…(3 more characters)");
        assert_eq!(bound("ééééé", 2), "éé…(3 more characters)");
        let quoted = quote(&format!("{}\n", "k".repeat(500)));
        assert!(quoted.starts_with("\"kkk") && quoted.ends_with("…(373 more characters)\""), "{quoted}");
        assert_eq!(quote("a\nb"), "\"a\\nb\"");
        assert_eq!(safe_message("ok", 10), "ok");
        assert_eq!(safe_message("a\nbcdef", 3), "a\\nb…(4 more characters)");
    }
}
