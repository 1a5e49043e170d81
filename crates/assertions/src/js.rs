//! Hand-written where no crate is exact: ryu-js prints numbers and strsim measures edit distance; the rest is Node's.
//!
//! The JavaScript semantics promptfoo's assertions inherit from Node: how a value becomes a
//! string, how a string becomes a number, what counts as whitespace, and how strings are measured
//! (in UTF-16 code units). Each function names the ECMAScript operation it reproduces.

use serde_json::Value;

mod json_parse;

pub(crate) use json_parse::json_parse;

/// ECMAScript `WhiteSpace` and `LineTerminator`: what `\s` matches and `trim()` removes.
/// Differs from `char::is_whitespace`, which also has U+0085 and lacks U+FEFF.
pub(crate) fn is_whitespace(c: char) -> bool {
    matches!(
        c,
        '\t' | '\n' | '\u{0B}' | '\u{0C}' | '\r' | ' ' | '\u{A0}' | '\u{1680}' | '\u{2000}'
            ..='\u{200A}' | '\u{2028}' | '\u{2029}' | '\u{202F}' | '\u{205F}' | '\u{3000}' | '\u{FEFF}'
    )
}

/// `String.prototype.trim`.
pub(crate) fn trim(s: &str) -> &str {
    s.trim_matches(is_whitespace)
}

/// `Number::toString(x)` with radix 10: the shortest digits that round-trip, in plain notation
/// for exponents -7 < e < 21 and in `1.5e+21` notation outside; `-0` prints as `0`.
pub(crate) fn number_to_string(x: f64) -> String {
    ryu_js::Buffer::new().format(x).to_owned()
}

/// `Number.prototype.toPrecision(p)`, used by promptfoo's cost reason.
pub(crate) fn to_precision(x: f64, p: usize) -> String {
    if !x.is_finite() {
        return number_to_string(x);
    }
    if x == 0.0 {
        return if p > 1 {
            format!("0.{}", "0".repeat(p - 1))
        } else {
            "0".into()
        };
    }
    if x < 0.0 {
        return format!("-{}", to_precision(-x, p));
    }
    let formatted = format!("{x:.prec$e}", prec = p - 1);
    let (mantissa, exponent) = formatted.split_once('e').expect("`{:e}` has an exponent");
    let digits: String = mantissa.chars().filter(|c| *c != '.').collect();
    let e: i32 = exponent.parse().expect("`{:e}` exponent is an integer");
    let p = p as i32;
    if e < -6 || e >= p {
        let sign = if e < 0 { '-' } else { '+' };
        if p == 1 {
            format!("{digits}e{sign}{}", e.abs())
        } else {
            format!("{}.{}e{sign}{}", &digits[..1], &digits[1..], e.abs())
        }
    } else if e == p - 1 {
        digits
    } else if e >= 0 {
        format!("{}.{}", &digits[..(e + 1) as usize], &digits[(e + 1) as usize..])
    } else {
        format!("0.{}{digits}", "0".repeat((-(e + 1)) as usize))
    }
}

/// A JSON number as JavaScript holds it: every number is an IEEE double.
pub(crate) fn json_number(n: &serde_json::Number) -> f64 {
    n.as_f64().unwrap_or(f64::NAN)
}

/// `String(value)` for a JSON value: arrays join their items with commas (null items become
/// empty), objects become `[object Object]`.
pub(crate) fn to_string(value: &Value) -> String {
    match value {
        Value::Null => "null".into(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => number_to_string(json_number(n)),
        Value::String(s) => s.clone(),
        Value::Array(items) => items
            .iter()
            .map(|item| if item.is_null() { String::new() } else { to_string(item) })
            .collect::<Vec<_>>()
            .join(","),
        Value::Object(_) => "[object Object]".into(),
    }
}

/// `Number(string)` (ECMAScript StringToNumber): whitespace-trimmed decimal literals,
/// `Infinity`, and unsigned `0x`/`0o`/`0b` integers; the empty string is 0; anything else NaN.
pub(crate) fn string_to_number(s: &str) -> f64 {
    let s = trim(s);
    if s.is_empty() {
        return 0.0;
    }
    let radix = match s.get(..2) {
        Some("0x" | "0X") => Some(16),
        Some("0o" | "0O") => Some(8),
        Some("0b" | "0B") => Some(2),
        _ => None,
    };
    if let Some(radix) = radix {
        let digits = &s[2..];
        if digits.is_empty() || !digits.chars().all(|c| c.is_digit(radix)) {
            return f64::NAN;
        }
        return digits.chars().fold(0.0, |acc, c| {
            acc * f64::from(radix) + f64::from(c.to_digit(radix).unwrap_or(0))
        });
    }
    let unsigned = s.strip_prefix(['+', '-']).unwrap_or(s);
    if unsigned == "Infinity" {
        return if s.starts_with('-') {
            f64::NEG_INFINITY
        } else {
            f64::INFINITY
        };
    }
    if !is_decimal_literal(unsigned) {
        return f64::NAN;
    }
    s.parse().unwrap_or(f64::NAN)
}

/// StrUnsignedDecimalLiteral without `Infinity`: `1`, `1.`, `.5`, `1.5e-3`.
fn is_decimal_literal(s: &str) -> bool {
    let (significand, exponent) = match s.find(['e', 'E']) {
        Some(at) => (&s[..at], Some(&s[at + 1..])),
        None => (s, None),
    };
    let (int, frac) = significand.split_once('.').unwrap_or((significand, ""));
    let all_digits = |t: &str| t.bytes().all(|b| b.is_ascii_digit());
    let significand_ok = all_digits(int) && all_digits(frac) && !(int.is_empty() && frac.is_empty());
    let exponent_ok = exponent.is_none_or(|e| {
        let e = e.strip_prefix(['+', '-']).unwrap_or(e);
        !e.is_empty() && all_digits(e)
    });
    significand_ok && exponent_ok
}

/// Levenshtein distance over UTF-16 code units, as the `fastest-levenshtein` package counts:
/// an emoji outside the BMP is two units.
pub(crate) fn levenshtein(a: &str, b: &str) -> usize {
    let a: Vec<u16> = a.encode_utf16().collect();
    let b: Vec<u16> = b.encode_utf16().collect();
    strsim::generic_levenshtein(&a, &b)
}

/// Number of words as promptfoo counts them: `text.trim().split(/\s+/)` without empty parts.
pub(crate) fn word_count(text: &str) -> usize {
    text.split(is_whitespace).filter(|w| !w.is_empty()).count()
}

/// Node's `util.isDeepStrictEqual` restricted to JSON values: numbers compare as doubles with
/// `Object.is` (so `0` and `-0` differ), objects ignore key order.
pub(crate) fn deep_strict_equal(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => {
            let (x, y) = (json_number(x), json_number(y));
            x == y && x.is_sign_negative() == y.is_sign_negative()
        }
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(x, y)| deep_strict_equal(x, y))
        }
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len() && x.iter().all(|(k, v)| y.get(k).is_some_and(|w| deep_strict_equal(v, w)))
        }
        _ => a == b,
    }
}

/// `JSON.stringify` for a value parsed from JSON or YAML. Key order is the map's (sorted), not
/// the source's insertion order, which only shows in reasons.
pub(crate) fn json_stringify(value: &Value) -> String {
    match value {
        Value::Number(n) => number_to_string(json_number(n)),
        Value::Array(items) => {
            format!("[{}]", items.iter().map(json_stringify).collect::<Vec<_>>().join(","))
        }
        Value::Object(map) => format!(
            "{{{}}}",
            map.iter()
                .map(|(k, v)| format!("{}:{}", Value::String(k.clone()), json_stringify(v)))
                .collect::<Vec<_>>()
                .join(",")
        ),
        other => other.to_string(),
    }
}

/// promptfoo's `parseCommaSeparatedValues` for `contains-any`-style string values: fields are
/// separated by commas and trimmed; a field may be double-quoted (to hold commas) with `\"`,
/// `\\` or `""` escapes; repeated commas give no empty fields.
pub(crate) fn split_comma_separated(value: &str) -> Result<Vec<String>, String> {
    let chars: Vec<char> = value.chars().collect();
    let skip_whitespace = |mut i: usize| {
        while i < chars.len() && is_whitespace(chars[i]) {
            i += 1;
        }
        i
    };
    let mut fields = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        loop {
            i = skip_whitespace(i);
            if i < chars.len() && chars[i] == ',' {
                i += 1;
            } else {
                break;
            }
        }
        if i >= chars.len() {
            break;
        }
        if chars[i] == '"' {
            let mut field = String::new();
            let mut terminated = false;
            i += 1;
            while i < chars.len() {
                let next = chars.get(i + 1).copied();
                if chars[i] == '\\' && matches!(next, Some('"' | '\\')) {
                    field.push(next.unwrap_or_default());
                    i += 2;
                } else if chars[i] == '"' && next == Some('"') {
                    field.push('"');
                    i += 2;
                } else if chars[i] == '"' {
                    i += 1;
                    terminated = true;
                    break;
                } else {
                    field.push(chars[i]);
                    i += 1;
                }
            }
            if !terminated {
                return Err("Invariant failed: Unterminated quoted field in contains assertion value".into());
            }
            fields.push(field);
            i = skip_whitespace(i);
            if i < chars.len() && chars[i] != ',' {
                return Err("Invariant failed: Expected comma after quoted field in contains assertion value".into());
            }
        } else {
            let start = i;
            while i < chars.len() && chars[i] != ',' {
                i += 1;
            }
            fields.push(trim(&chars[start..i].iter().collect::<String>()).to_owned());
        }
    }
    Ok(fields)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn numbers_print_as_javascript_prints_them() {
        for (x, s) in [
            (1.0, "1"),
            (-0.0, "0"),
            (0.5, "0.5"),
            (123.456, "123.456"),
            (1e21, "1e+21"),
            (1.5e21, "1.5e+21"),
            (1e20, "100000000000000000000"),
            (1e-6, "0.000001"),
            (1e-7, "1e-7"),
            (1.25e-7, "1.25e-7"),
            (0.1 + 0.2, "0.30000000000000004"),
            // The double is ...194.25: of the two shortest candidates ECMAScript takes the even one.
            (934_356_417_220_194.2, "934356417220194.2"),
            (f64::INFINITY, "Infinity"),
        ] {
            assert_eq!(number_to_string(x), s, "{x}");
        }
    }

    #[test]
    fn to_precision_matches_javascript() {
        for (x, s) in [
            (0.0, "0.0"),
            (0.0023, "0.0023"),
            (0.002345, "0.0023"),
            (1.0, "1.0"),
            (12.0, "12"),
            (123.0, "1.2e+2"),
            (0.000_000_5, "5.0e-7"),
        ] {
            assert_eq!(to_precision(x, 2), s, "{x}");
        }
    }

    #[test]
    fn strings_become_numbers_as_javascript_converts_them() {
        for (s, n) in [
            ("", 0.0),
            ("  42 ", 42.0),
            ("1e1", 10.0),
            ("0x10", 16.0),
            (".5", 0.5),
            ("5.", 5.0),
            ("-Infinity", f64::NEG_INFINITY),
        ] {
            assert_eq!(string_to_number(s), n, "{s:?}");
        }
        for s in ["abc", "1_000", "inf", "NaN", "1e", "-0x10", "."] {
            assert!(string_to_number(s).is_nan(), "{s:?}");
        }
    }

    #[test]
    fn values_stringify_as_string_does() {
        assert_eq!(to_string(&json!([1, null, "a", [2, 3]])), "1,,a,2,3");
        assert_eq!(to_string(&json!({"a": 1})), "[object Object]");
        assert_eq!(to_string(&json!(2.0)), "2");
    }

    #[test]
    fn levenshtein_counts_utf16_units() {
        assert_eq!(levenshtein("kitten", "sitting"), 3);
        assert_eq!(levenshtein("", "abc"), 3);
        assert_eq!(levenshtein("😀", ""), 2);
        assert_eq!(levenshtein("é", "e"), 1);
    }

    #[test]
    fn words_split_on_javascript_whitespace() {
        assert_eq!(word_count(""), 0);
        assert_eq!(word_count("  one\ttwo\n\nthree  "), 3);
        assert_eq!(word_count("a\u{FEFF}b"), 2);
        assert_eq!(word_count("a\u{85}b"), 1);
    }

    #[test]
    fn comma_separated_values_follow_promptfoo() {
        assert_eq!(split_comma_separated(" a , b,,c ,").unwrap(), ["a", "b", "c"]);
        assert_eq!(
            split_comma_separated(r#""a, b", "say ""hi""", "x\"y""#).unwrap(),
            ["a, b", "say \"hi\"", "x\"y"]
        );
        assert!(split_comma_separated(r#""open"#).is_err());
        assert!(split_comma_separated(r#""a"b"#).is_err());
    }

    #[test]
    fn deep_equality_ignores_key_order_but_not_types() {
        assert!(deep_strict_equal(
            &json!({"a": 1, "b": [1.0]}),
            &json!({"b": [1], "a": 1})
        ));
        assert!(!deep_strict_equal(&json!({"a": "1"}), &json!({"a": 1})));
        assert!(!deep_strict_equal(&json!(0.0), &json!(-0.0)));
    }
}
