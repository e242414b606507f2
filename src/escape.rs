//! Outside text made safe to write into a log line or show on a page (CONTRACT §11).
//!
//! A webhook's path hint, headers and ids, and a mapping's handler target, are written by
//! whoever can reach the service. Logged raw, a newline forges a log line, an escape
//! sequence repaints the operator's terminal, and a bidi control makes a line read other
//! than it is. [`escaped`] is the one function every such value goes through: control
//! characters (C0, DEL, C1), bidi controls, zero-width and line-separator characters, and
//! the backslash (so an escape cannot be forged either) are written as `\n`, `\t`, `\r`,
//! `\\` or `\u{…}`; all else passes unchanged. The check is one pass over the bytes and the
//! text is written as is when nothing needs escaping, so the usual value costs no copy.
//! [`LogUrl`] also drops a URL's credentials, query and fragment.
//!
//! Uses nothing of ours, so any module may use it.

use std::fmt::{self, Display, Write};

/// `text`, written with its unsafe characters escaped (see the module doc).
pub fn escaped(text: &str) -> Escaped<'_> {
    Escaped(text)
}

/// Displays its text with unsafe characters escaped; made by [`escaped`].
#[derive(Debug, Clone, Copy)]
pub struct Escaped<'a>(&'a str);

impl Display for Escaped<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if !needs_escaping(self.0) {
            return f.write_str(self.0);
        }
        write_escaped(f, self.0)
    }
}

/// Whether any character of `text` would be escaped. ASCII text is judged byte by byte;
/// only text with non-ASCII bytes is decoded.
pub fn needs_escaping(text: &str) -> bool {
    let mut ascii = true;
    for &b in text.as_bytes() {
        if b < 0x20 || b == 0x7f || b == b'\\' {
            return true;
        }
        ascii &= b < 0x80;
    }
    !ascii && text.chars().any(is_unsafe)
}

/// Whether `c` must not reach a log line or a page as itself.
fn is_unsafe(c: char) -> bool {
    c.is_control()
        || matches!(c,
            '\\'
            // Bidi controls: ALM, LRM, RLM, the embeddings and overrides, the isolates.
            | '\u{061c}' | '\u{200e}' | '\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}'
            // Zero-width and invisible characters, and the Unicode line separators.
            | '\u{00ad}' | '\u{200b}'..='\u{200d}' | '\u{2060}'..='\u{2064}' | '\u{feff}'
            | '\u{2028}' | '\u{2029}')
}

fn write_escaped(out: &mut impl Write, text: &str) -> fmt::Result {
    for c in text.chars() {
        match c {
            '\n' => out.write_str("\\n")?,
            '\r' => out.write_str("\\r")?,
            '\t' => out.write_str("\\t")?,
            '\\' => out.write_str("\\\\")?,
            c if is_unsafe(c) => write!(out, "\\u{{{:x}}}", u32::from(c))?,
            c => out.write_char(c)?,
        }
    }
    Ok(())
}

/// A URL for a log line: escaped, without user name, password, query or fragment (a
/// `?token=` or `user:pw@` is a credential more often than not).
#[derive(Debug, Clone, Copy)]
pub struct LogUrl<'a>(pub &'a str);

impl Display for LogUrl<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let url = self.0.trim();
        let (scheme, after_scheme) = match url.find("://") {
            Some(i) => url.split_at(i + 3),
            None => ("", url),
        };
        let end = after_scheme.find(['?', '#']).unwrap_or(after_scheme.len());
        let rest = &after_scheme[..end];
        let authority_end = rest.find('/').unwrap_or(rest.len());
        let (authority, path) = rest.split_at(authority_end);
        let host = match authority.rfind('@') {
            Some(at) if !scheme.is_empty() => &authority[at + 1..],
            _ => authority,
        };
        write!(f, "{}{}{}", escaped(scheme), escaped(host), escaped(path))?;
        if end < after_scheme.len() {
            f.write_str("?[redacted]")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_text_passes_unchanged() {
        for s in ["okprov", "evt_123-abc", "Zürich 東京 مرحبا", ""] {
            assert!(!needs_escaping(s), "{s}");
            assert_eq!(escaped(s).to_string(), s);
        }
    }

    #[test]
    fn controls_bidi_and_zero_width_are_escaped() {
        let forged = "okprov\n2026-12-05T03:59:59Z  INFO switchyard: FORGED\u{1b}[31m";
        let out = escaped(forged).to_string();
        assert_eq!(out, "okprov\\n2026-12-05T03:59:59Z  INFO switchyard: FORGED\\u{1b}[31m");
        assert!(!out.contains('\n') && !out.contains('\u{1b}'));
        assert_eq!(
            escaped("a\u{202e}b\u{200b}c\u{2066}").to_string(),
            "a\\u{202e}b\\u{200b}c\\u{2066}"
        );
        assert_eq!(escaped("\r\t\u{85}\u{7f}").to_string(), "\\r\\t\\u{85}\\u{7f}");
        // A backslash is escaped, so `\n` written by a client cannot pass for an escape.
        assert_eq!(escaped("a\\nb").to_string(), "a\\\\nb");
    }

    #[test]
    fn urls_lose_credentials_query_and_fragment() {
        let shown = |u: &str| LogUrl(u).to_string();
        assert_eq!(
            shown("https://user:pw@hooks.example/in?token=abc#x"),
            "https://hooks.example/in?[redacted]"
        );
        assert_eq!(shown("http://hooks.example:8080/a/b"), "http://hooks.example:8080/a/b");
        assert_eq!(shown("https://hooks.example?k=v"), "https://hooks.example?[redacted]");
        assert_eq!(shown("https://a@b@hooks.example/p@q"), "https://hooks.example/p@q");
        assert_eq!(shown("deploy.sh"), "deploy.sh");
        assert_eq!(shown("http://x/\n\u{1b}"), "http://x/\\n\\u{1b}");
    }
}
