//! Text from the other side, made safe for a terminal.
//!
//! A seeker is anonymous, and anything they (or a colleague, or the
//! directory's labels and partner names) write reaches the counselor's
//! terminal. Control characters there are commands, not text: ESC starts
//! escape sequences (retitle the window, move the cursor, rewrite what is
//! already on screen, on some terminals even answer back), BEL rings, NUL
//! and the C1 controls do whatever the terminal makes of them, and the
//! Unicode bidirectional overrides reorder what is shown so that a line
//! reads differently from what it holds. Every text line the command line
//! prints goes through [`safe`] ([`crate::Out::print`] and the error
//! printer), which shows each such character escaped instead (`\x1b`,
//! `\u{202e}`). `--json` output is for programs and keeps the exact text
//! (JSON escapes the C0 controls itself).

use std::borrow::Cow;

/// Whether `c` must not reach a terminal as it is. Newline and tab are
/// layout, kept by [`safe`]; [`one_line`] also escapes the newline.
fn dangerous(c: char) -> bool {
    matches!(c,
        '\u{0}'..='\u{8}' | '\u{b}'..='\u{1f}' | '\u{7f}'..='\u{9f}'
        // Bidirectional embeddings, overrides and isolates, and the marks.
        | '\u{200e}' | '\u{200f}' | '\u{061c}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}'
        // Line and paragraph separators: a line break the reader cannot see coming.
        | '\u{2028}' | '\u{2029}')
}

fn escape(c: char, out: &mut String) {
    use std::fmt::Write;
    if (c as u32) < 0x80 {
        let _ = write!(out, "\\x{:02x}", c as u32);
    } else {
        let _ = write!(out, "\\u{{{:x}}}", c as u32);
    }
}

/// `s` with every control character but newline and tab shown escaped.
pub fn safe(s: &str) -> Cow<'_, str> {
    if !s.chars().any(dangerous) {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        if dangerous(c) {
            escape(c, &mut out);
        } else {
            out.push(c);
        }
    }
    Cow::Owned(out)
}

/// Text from the other side shown within one line of output (a list row,
/// an event, a label): as [`safe`], and a line break shown as `\n`, so that
/// a message cannot forge the next row.
pub fn one_line(s: &str) -> String {
    safe(s).replace('\n', "\\n")
}

/// A message shown as a block under an `author:` line: as [`safe`], each
/// further line indented by `indent`, so that a message cannot forge a line
/// that looks like another author's.
pub fn block(s: &str, indent: &str) -> String {
    let s = safe(s);
    let mut out = String::with_capacity(s.len());
    for (i, line) in s.split('\n').enumerate() {
        if i > 0 {
            out.push('\n');
            out.push_str(indent);
        }
        out.push_str(line);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn controls_are_escaped_and_text_is_kept() {
        assert_eq!(safe("hola, ¿qué tal? — ñ 中文"), "hola, ¿qué tal? — ñ 中文");
        assert!(matches!(safe("plain"), Cow::Borrowed(_)));
        assert_eq!(safe("a\u{1b}]0;pwned\u{7}b"), "a\\x1b]0;pwned\\x07b");
        assert_eq!(safe("\u{0}\u{1b}[2J\u{9b}31m"), "\\x00\\x1b[2J\\u{9b}31m");
        assert_eq!(safe("\u{7f}"), "\\x7f");
        assert_eq!(safe("abc\u{202e}fed"), "abc\\u{202e}fed");
        assert_eq!(safe("\u{2066}x\u{2069}"), "\\u{2066}x\\u{2069}");
        assert_eq!(safe("line 1\nline\t2"), "line 1\nline\t2");
        assert_eq!(safe("a\rb"), "a\\x0db");
    }

    #[test]
    fn one_line_and_block_cannot_forge_a_line() {
        assert_eq!(one_line("hi\n  ana: fake"), "hi\\n  ana: fake");
        assert_eq!(one_line("a\r\nb"), "a\\x0d\\nb");
        assert_eq!(
            block("hi\nana: fake\r\n", "    "),
            "hi\n    ana: fake\\x0d\n    "
        );
        assert_eq!(block("\u{1b}[1A", "  "), "\\x1b[1A");
    }
}
