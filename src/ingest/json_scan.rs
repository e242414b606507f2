//! One pass over a webhook's JSON body: is it JSON that reads back, and what are the
//! top-level string fields the event id comes from?
//!
//! The body is stored as its own text, so it must be exactly what `serde_json::Value` (the
//! worker's and the API's reader) accepts; otherwise it is stored as `invalid_json` with its
//! bytes in base64. serde_json's own validating skip is more lenient than its reader: it
//! lets through lone UTF-16 surrogates (`"\ud800"`) and numbers beyond `f64` (`1e400`),
//! which then read back as nothing. This scanner rejects the surrogates itself, and sends the
//! rare body with a number that may overflow (an exponent, or 300+ integer digits) to
//! serde_json's reader. It replaces a serde parse into a probe struct at the same cost
//! (measured: 0.49 µs each for the benchmark's 543-byte body), without recursion.

use super::limits::MAX_JSON_DEPTH;

/// The names of the top-level fields the event id may come from (`event_id.rs`).
pub const ID_FIELDS: [&str; 4] = ["id", "clientReferenceId", "meetingId", "eventType"];

/// What a valid JSON text held at its top level.
#[derive(Debug, PartialEq, Eq)]
pub enum Scanned {
    /// An object: the values of [`ID_FIELDS`] that are strings, in that order (the last of
    /// repeated keys wins, as in serde_json).
    Object([Option<String>; 4]),
    /// An array, string, number, `true`, `false` or `null`.
    Other,
}

/// Scans `text` as one JSON value with optional whitespace around it; `None` when it is not
/// JSON that `serde_json::Value` reads, or nests deeper than [`MAX_JSON_DEPTH`].
pub fn scan(text: &str) -> Option<Scanned> {
    let mut s = Scanner {
        text,
        b: text.as_bytes(),
        i: 0,
        unsure_number: false,
    };
    let scanned = s.document()?;
    // A number that may be out of `f64`'s range: only serde_json's reader can tell.
    if s.unsure_number && serde_json::from_str::<serde_json::Value>(text).is_err() {
        return None;
    }
    Some(scanned)
}

struct Scanner<'a> {
    text: &'a str,
    b: &'a [u8],
    i: usize,
    /// A number with an exponent or very many digits was seen.
    unsure_number: bool,
}

impl<'a> Scanner<'a> {
    fn document(&mut self) -> Option<Scanned> {
        self.ws();
        let scanned = if self.peek() == Some(b'{') {
            Scanned::Object(self.top_object()?)
        } else {
            self.value(0)?;
            Scanned::Other
        };
        self.ws();
        (self.i == self.b.len()).then_some(scanned)
    }

    fn peek(&self) -> Option<u8> {
        self.b.get(self.i).copied()
    }

    fn eat(&mut self, c: u8) -> Option<()> {
        (self.peek()? == c).then(|| self.i += 1)
    }

    fn ws(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t' | b'\n' | b'\r')) {
            self.i += 1;
        }
    }

    /// The top-level object, noting the id fields' string values.
    fn top_object(&mut self) -> Option<[Option<String>; 4]> {
        let mut ids: [Option<String>; 4] = Default::default();
        self.eat(b'{')?;
        self.ws();
        if self.eat(b'}').is_some() {
            return Some(ids);
        }
        loop {
            let key = self.string()?;
            self.ws();
            self.eat(b':')?;
            self.ws();
            let slot = id_slot(key);
            if self.peek() == Some(b'"') {
                let value = self.string()?;
                if let Some(slot) = slot {
                    ids[slot] = decoded(value);
                }
            } else {
                // Inside the top-level object: one level down already.
                self.value(1)?;
                if let Some(slot) = slot {
                    ids[slot] = None;
                }
            }
            self.ws();
            match self.peek()? {
                b',' => {
                    self.i += 1;
                    self.ws();
                }
                b'}' => {
                    self.i += 1;
                    return Some(ids);
                }
                _ => return None,
            }
        }
    }

    /// Any value, nested arrays and objects included, `depth` levels down, without
    /// recursion: `open` holds the brackets still open, innermost last.
    fn value(&mut self, depth: usize) -> Option<()> {
        let mut open: Vec<u8> = Vec::new();
        loop {
            // A value (or, right after an opening bracket, the closing one).
            match self.peek()? {
                b'{' | b'[' => {
                    let bracket = self.b[self.i];
                    open.push(bracket);
                    if depth + open.len() > MAX_JSON_DEPTH {
                        return None;
                    }
                    self.i += 1;
                    self.ws();
                    let close = if bracket == b'{' { b'}' } else { b']' };
                    if self.eat(close).is_none() {
                        if bracket == b'{' {
                            self.member_key()?;
                        }
                        continue;
                    }
                    open.pop();
                }
                b'"' => {
                    self.string()?;
                }
                b't' => self.literal(b"true")?,
                b'f' => self.literal(b"false")?,
                b'n' => self.literal(b"null")?,
                _ => self.number()?,
            }
            // After a value: a comma and the next member, or closing brackets.
            loop {
                let Some(&bracket) = open.last() else {
                    return Some(());
                };
                self.ws();
                match (self.peek()?, bracket) {
                    (b',', _) => {
                        self.i += 1;
                        self.ws();
                        if bracket == b'{' {
                            self.member_key()?;
                        }
                        break;
                    }
                    (b'}', b'{') | (b']', b'[') => {
                        self.i += 1;
                        open.pop();
                    }
                    _ => return None,
                }
            }
        }
    }

    /// `"key"` and the colon, with the whitespace after it.
    fn member_key(&mut self) -> Option<()> {
        self.string()?;
        self.ws();
        self.eat(b':')?;
        self.ws();
        Some(())
    }

    fn literal(&mut self, word: &[u8]) -> Option<()> {
        let end = self.i + word.len();
        (self.b.get(self.i..end)? == word).then(|| self.i = end)
    }

    /// A string; returns its text between the quotes, escapes undecoded.
    fn string(&mut self) -> Option<&'a str> {
        self.eat(b'"')?;
        let start = self.i;
        loop {
            // Plain bytes: anything but a quote, a backslash or a control character. The
            // input is a `&str`, so multi-byte characters are already valid UTF-8.
            let rest = &self.b[self.i..];
            let plain = rest
                .iter()
                .position(|&c| c == b'"' || c == b'\\' || c < 0x20)
                .unwrap_or(rest.len());
            self.i += plain;
            match self.peek()? {
                b'"' => {
                    // Both ends are at ASCII quotes, so on character boundaries.
                    let text = self.text.get(start..self.i)?;
                    self.i += 1;
                    return Some(text);
                }
                b'\\' => self.escape()?,
                _ => return None,
            }
        }
    }

    /// One escape after its backslash; a UTF-16 high surrogate must be followed by a low one.
    fn escape(&mut self) -> Option<()> {
        self.i += 1;
        match self.peek()? {
            b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't' => {
                self.i += 1;
                Some(())
            }
            b'u' => {
                self.i += 1;
                let unit = self.hex4()?;
                match unit {
                    0xD800..=0xDBFF => {
                        self.literal(b"\\u")?;
                        (0xDC00..=0xDFFF).contains(&self.hex4()?).then_some(())
                    }
                    0xDC00..=0xDFFF => None,
                    _ => Some(()),
                }
            }
            _ => None,
        }
    }

    fn hex4(&mut self) -> Option<u16> {
        let digits = std::str::from_utf8(self.b.get(self.i..self.i + 4)?).ok()?;
        if !digits.bytes().all(|c| c.is_ascii_hexdigit()) {
            return None;
        }
        self.i += 4;
        u16::from_str_radix(digits, 16).ok()
    }

    /// `-?(0|[1-9][0-9]*)(.[0-9]+)?([eE][+-]?[0-9]+)?`
    fn number(&mut self) -> Option<()> {
        let _ = self.eat(b'-');
        let int_digits = match self.peek()? {
            b'0' => {
                self.i += 1;
                1
            }
            b'1'..=b'9' => self.digits(),
            _ => return None,
        };
        if self.eat(b'.').is_some() && self.digits() == 0 {
            return None;
        }
        if matches!(self.peek(), Some(b'e' | b'E')) {
            self.i += 1;
            if matches!(self.peek(), Some(b'+' | b'-')) {
                self.i += 1;
            }
            if self.digits() == 0 {
                return None;
            }
            self.unsure_number = true;
        }
        // f64 ends near 1.8e308: a longer integer may be out of range.
        if int_digits >= 300 {
            self.unsure_number = true;
        }
        Some(())
    }

    fn digits(&mut self) -> usize {
        let n = self.b[self.i..].iter().take_while(|c| c.is_ascii_digit()).count();
        self.i += n;
        n
    }
}

/// Which of [`ID_FIELDS`] a top-level key names, if any.
fn id_slot(raw: &str) -> Option<usize> {
    if raw.contains('\\') {
        let key = decoded(raw)?;
        ID_FIELDS.iter().position(|f| *f == key)
    } else {
        ID_FIELDS.iter().position(|f| *f == raw)
    }
}

/// A scanned string's value: its text, or decoded when it holds escapes.
fn decoded(raw: &str) -> Option<String> {
    if raw.contains('\\') {
        serde_json::from_str::<String>(&format!("\"{raw}\"")).ok()
    } else {
        Some(raw.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::Value;

    /// What serde_json's reader says of `text`, in the scanner's terms.
    fn reference(text: &str) -> Option<Scanned> {
        let v: Value = serde_json::from_str(text).ok()?;
        let Value::Object(map) = v else {
            return Some(Scanned::Other);
        };
        Some(Scanned::Object(
            ID_FIELDS.map(|f| map.get(f).and_then(Value::as_str).map(str::to_string)),
        ))
    }

    #[test]
    fn agrees_with_serde_json_on_edge_cases() {
        let deep_ok = format!("{}1{}", "[".repeat(60), "]".repeat(60));
        let cases = [
            r#"{"id":"evt_1","n":[1,2.5,-0,1e5,{"a":null}],"t":true,"f":false}"#,
            " \t\r\n{} \n",
            "[]",
            "\"s\"",
            "-0.0e-0",
            "1e400",
            "-1e400",
            "1.7976931348623157e308",
            "1e-400",
            "01",
            "1.",
            ".5",
            "+1",
            "-",
            "[1,]",
            "{\"a\":1,}",
            "{,}",
            "[1 2]",
            "{\"a\" 1}",
            "{\"a\":1}}",
            "{\"a\":1} x",
            "tru",
            "nul",
            "\"\\ud800\"",
            "\"\\udc00\"",
            "\"\\ud800\\u0041\"",
            "\"\\ud83d\\ude00\"",
            "\"\\u00e9\\/\\b\\f\\n\\r\\t\\\\\\\"\"",
            "\"\\x\"",
            "\"\\u12\"",
            "\"a\u{1}\"",
            "\"é漢\"",
            r#"{"id":"first-id-1","id":"second-id-2"}"#,
            r#"{"id":"abcdefgh1","id":5}"#,
            r#"{"\u0069d":"escaped-key-1","meetingId":"m","eventType":"e\"q"}"#,
            r#"{"clientReferenceId":null,"meetingId":["x"]}"#,
            "",
            " ",
            "{",
            "[[[]]]",
            &deep_ok,
        ];
        for text in cases {
            assert_eq!(scan(text), reference(text), "{text:?}");
        }
        let big = format!("[1{}]", "0".repeat(400));
        assert_eq!(scan(&big), None);
        let long_fraction = format!("[0.{}1]", "0".repeat(400));
        assert_eq!(scan(&long_fraction), Some(Scanned::Other));
    }

    #[test]
    fn refuses_nesting_past_the_limit() {
        let at = format!("{}{}", "[".repeat(MAX_JSON_DEPTH), "]".repeat(MAX_JSON_DEPTH));
        let past = format!("{}{}", "[".repeat(MAX_JSON_DEPTH + 1), "]".repeat(MAX_JSON_DEPTH + 1));
        assert_eq!(scan(&at), Some(Scanned::Other));
        assert_eq!(scan(&past), None);
        // The top-level object counts as a level, as serde_json counts it.
        let in_object = format!("{{\"a\":{}{}}}", "[".repeat(MAX_JSON_DEPTH), "]".repeat(MAX_JSON_DEPTH));
        assert_eq!(scan(&in_object), None);
    }

    /// JSON-like text: valid documents, and valid ones with a byte changed or cut.
    fn jsonish() -> impl Strategy<Value = String> {
        let leaf = prop_oneof![
            Just("null".to_string()),
            Just("true".to_string()),
            "-?(0|[1-9][0-9]{0,3})(\\.[0-9]{1,3})?([eE][+-]?[0-9]{1,3})?",
            "\"([a-z é]|\\\\[nt\"\\\\/]|\\\\u[dD][89aAbBcCdDeEfF][0-9a-f]{2}|\\\\u00[0-9a-f]{2}){0,6}\"",
        ];
        let doc = leaf.prop_recursive(4, 32, 4, |inner| {
            prop_oneof![
                proptest::collection::vec(inner.clone(), 0..4).prop_map(|v| format!("[{}]", v.join(","))),
                proptest::collection::vec(
                    (
                        prop_oneof![Just("id".to_string()), Just("meetingId".to_string()), "[a-z]{1,3}"],
                        inner
                    ),
                    0..4
                )
                .prop_map(|m| format!(
                    "{{{}}}",
                    m.iter()
                        .map(|(k, v)| format!("\"{k}\" : {v}"))
                        .collect::<Vec<_>>()
                        .join(",")
                )),
            ]
        });
        (doc, any::<u8>(), any::<usize>(), 0..4u8).prop_map(|(text, byte, at, how)| {
            let mut bytes = text.into_bytes();
            let at = if bytes.is_empty() { 0 } else { at % bytes.len() };
            match how {
                0 if !bytes.is_empty() => bytes[at] = byte % 0x80,
                1 => bytes.truncate(at),
                2 => bytes.insert(at, b" ,:[]{}\"\\e0"[usize::from(byte) % 11]),
                _ => {}
            }
            String::from_utf8_lossy(&bytes).into_owned()
        })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]

        #[test]
        fn agrees_with_serde_json(text in jsonish()) {
            prop_assert_eq!(scan(&text), reference(&text), "{:?}", text);
        }
    }
}
