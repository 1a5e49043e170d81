//! `JSON.parse` as Node runs it; hand-written because serde_json refuses what Node accepts (numbers
//! beyond the double range, lone surrogate escapes).

use serde_json::Value;

/// How deeply `json_parse` nests before giving up. `JSON.parse` has no such limit; a Rust
/// value nested much deeper could overflow the stack when dropped.
const MAX_JSON_DEPTH: usize = 1_000;

/// `JSON.parse`: strict JSON (no trailing commas, comments or single quotes) surrounded by JSON
/// whitespace. Unlike serde_json it accepts what Node accepts: numbers beyond the double range
/// (Infinity, stored as null since JSON has no infinity), lone surrogate escapes (stored as
/// U+FFFD) and repeated keys (the last one wins).
pub(crate) fn json_parse(text: &str) -> Result<Value, String> {
    let mut parser = JsonParser {
        bytes: text.as_bytes(),
        pos: 0,
    };
    parser.skip_whitespace();
    let value = parser.value(0)?;
    parser.skip_whitespace();
    if parser.pos != parser.bytes.len() {
        return Err(format!(
            "Unexpected non-whitespace character after JSON at position {}",
            parser.pos
        ));
    }
    Ok(value)
}

struct JsonParser<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl JsonParser<'_> {
    fn error<T>(&self) -> Result<T, String> {
        Err(match self.bytes.get(self.pos) {
            Some(_) => format!("Unexpected token in JSON at position {}", self.pos),
            None => "Unexpected end of JSON input".into(),
        })
    }

    fn skip_whitespace(&mut self) {
        while matches!(self.bytes.get(self.pos), Some(b' ' | b'\t' | b'\n' | b'\r')) {
            self.pos += 1;
        }
    }

    fn eat(&mut self, byte: u8) -> bool {
        if self.bytes.get(self.pos) == Some(&byte) {
            self.pos += 1;
            true
        } else {
            false
        }
    }

    fn literal(&mut self, word: &str, value: Value) -> Result<Value, String> {
        if self.bytes[self.pos..].starts_with(word.as_bytes()) {
            self.pos += word.len();
            Ok(value)
        } else {
            self.error()
        }
    }

    fn value(&mut self, depth: usize) -> Result<Value, String> {
        if depth > MAX_JSON_DEPTH {
            return Err(format!("JSON nested deeper than {MAX_JSON_DEPTH} levels"));
        }
        match self.bytes.get(self.pos) {
            Some(b'{') => {
                self.pos += 1;
                let mut map = serde_json::Map::new();
                self.skip_whitespace();
                if self.eat(b'}') {
                    return Ok(Value::Object(map));
                }
                loop {
                    self.skip_whitespace();
                    if self.bytes.get(self.pos) != Some(&b'"') {
                        return self.error();
                    }
                    let key = self.string()?;
                    self.skip_whitespace();
                    if !self.eat(b':') {
                        return self.error();
                    }
                    self.skip_whitespace();
                    let value = self.value(depth + 1)?;
                    map.insert(key, value);
                    self.skip_whitespace();
                    if self.eat(b'}') {
                        return Ok(Value::Object(map));
                    }
                    if !self.eat(b',') {
                        return self.error();
                    }
                }
            }
            Some(b'[') => {
                self.pos += 1;
                let mut items = Vec::new();
                self.skip_whitespace();
                if self.eat(b']') {
                    return Ok(Value::Array(items));
                }
                loop {
                    self.skip_whitespace();
                    items.push(self.value(depth + 1)?);
                    self.skip_whitespace();
                    if self.eat(b']') {
                        return Ok(Value::Array(items));
                    }
                    if !self.eat(b',') {
                        return self.error();
                    }
                }
            }
            Some(b'"') => self.string().map(Value::String),
            Some(b't') => self.literal("true", Value::Bool(true)),
            Some(b'f') => self.literal("false", Value::Bool(false)),
            Some(b'n') => self.literal("null", Value::Null),
            Some(b'-' | b'0'..=b'9') => self.number(),
            _ => self.error(),
        }
    }

    fn digits(&mut self) -> usize {
        let start = self.pos;
        while self.bytes.get(self.pos).is_some_and(u8::is_ascii_digit) {
            self.pos += 1;
        }
        self.pos - start
    }

    fn number(&mut self) -> Result<Value, String> {
        let start = self.pos;
        self.eat(b'-');
        match self.bytes.get(self.pos) {
            Some(b'0') => self.pos += 1,
            Some(b'1'..=b'9') => {
                self.digits();
            }
            _ => return self.error(),
        }
        let mut integral = true;
        if self.eat(b'.') {
            integral = false;
            if self.digits() == 0 {
                return self.error();
            }
        }
        if matches!(self.bytes.get(self.pos), Some(b'e' | b'E')) {
            integral = false;
            self.pos += 1;
            if !self.eat(b'+') {
                self.eat(b'-');
            }
            if self.digits() == 0 {
                return self.error();
            }
        }
        let text = std::str::from_utf8(&self.bytes[start..self.pos]).unwrap_or_default();
        let n: f64 = text.parse().unwrap_or(f64::NAN);
        const SAFE: f64 = 9_007_199_254_740_992.0;
        Ok(if integral && n.abs() <= SAFE {
            Value::from(n as i64)
        } else {
            serde_json::Number::from_f64(n).map_or(Value::Null, Value::Number)
        })
    }

    fn hex4(&mut self) -> Result<u32, String> {
        let hex = self
            .bytes
            .get(self.pos..self.pos + 4)
            .and_then(|h| std::str::from_utf8(h).ok());
        match hex.filter(|h| h.bytes().all(|b| b.is_ascii_hexdigit())) {
            Some(h) => {
                self.pos += 4;
                Ok(u32::from_str_radix(h, 16).unwrap_or(0))
            }
            None => Err(format!("Bad Unicode escape in JSON at position {}", self.pos)),
        }
    }

    fn string(&mut self) -> Result<String, String> {
        self.pos += 1;
        let mut out = String::new();
        loop {
            let start = self.pos;
            while self
                .bytes
                .get(self.pos)
                .is_some_and(|b| *b != b'"' && *b != b'\\' && *b >= 0x20)
            {
                self.pos += 1;
            }
            out.push_str(std::str::from_utf8(&self.bytes[start..self.pos]).unwrap_or_default());
            match self.bytes.get(self.pos) {
                Some(b'"') => {
                    self.pos += 1;
                    return Ok(out);
                }
                Some(b'\\') => {
                    self.pos += 1;
                    let escaped = self.bytes.get(self.pos).copied();
                    self.pos += 1;
                    let c = match escaped {
                        Some(b'"') => '"',
                        Some(b'\\') => '\\',
                        Some(b'/') => '/',
                        Some(b'b') => '\u{8}',
                        Some(b'f') => '\u{C}',
                        Some(b'n') => '\n',
                        Some(b'r') => '\r',
                        Some(b't') => '\t',
                        Some(b'u') => {
                            let unit = self.hex4()?;
                            let pair = (0xD800..0xDC00).contains(&unit) && self.bytes[self.pos..].starts_with(b"\\u");
                            let low = if pair {
                                let save = self.pos;
                                self.pos += 2;
                                match self.hex4()? {
                                    low @ 0xDC00..=0xDFFF => Some(low),
                                    _ => {
                                        self.pos = save;
                                        None
                                    }
                                }
                            } else {
                                None
                            };
                            let code = match low {
                                Some(low) => 0x10000 + ((unit - 0xD800) << 10) + (low - 0xDC00),
                                None => unit,
                            };
                            char::from_u32(code).unwrap_or('\u{FFFD}')
                        }
                        _ => {
                            self.pos -= 1;
                            return self.error();
                        }
                    };
                    out.push(c);
                }
                _ => return self.error(),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn json_parse_accepts_what_node_accepts() {
        assert_eq!(
            json_parse(" {\"a\": [1, 2.5, -0, true, null], \"a\": \"x\"} ").unwrap(),
            json!({"a": "x"})
        );
        assert_eq!(json_parse("1e400").unwrap(), Value::Null);
        assert_eq!(json_parse(r#""\ud83d\ude00 \ud800""#).unwrap(), json!("😀 \u{FFFD}"));
        assert_eq!(json_parse("1.0").unwrap(), json!(1.0));
        for bad in [
            "", "{a: 1}", "[1,]", "01", "1.", "'a'", "\"a\tb\"", "nul", "1 2", "\u{A0}1",
        ] {
            assert!(json_parse(bad).is_err(), "{bad:?}");
        }
        let deep = format!("{}{}", "[".repeat(2_000), "]".repeat(2_000));
        assert!(json_parse(&deep).is_err());
    }
}
