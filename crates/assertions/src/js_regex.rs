//! Hand-written: no crate parses JavaScript patterns with V8's errors and Annex B leniencies (fancy-regex runs them).
//! One recursive-descent translator over one grammar, so it stays one file past 600 lines.
//!
//! JavaScript `RegExp` patterns, translated to `fancy_regex` so they mean what they mean in
//! Node: `\d`, `\w` and `\b` are ASCII-only, `\s` is ECMAScript whitespace, `.` stops at all four
//! line terminators, `$` is the end of the input, and the Annex B leniencies of patterns without
//! the `u` flag hold (`a{` and `\a` are literals, `\1` is octal when there is no group 1).
//! Lookaround and backreferences run on fancy-regex's backtracking engine, bounded by a
//! backtracking limit instead of running for ever.
//!
//! Every pattern Node rejects is rejected with Node's message. What Node accepts but this
//! translation cannot express (a lone surrogate, some lookbehinds) is reported as unsupported.

use std::fmt::Write as _;

/// Why a pattern cannot be used.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum RegexError {
    /// Node rejects the pattern too; the message is V8's.
    Invalid(String),
    /// Node accepts the pattern but Promptcards cannot evaluate it.
    Unsupported(String),
}

const WORD: &str = "0-9A-Za-z_";
const WHITESPACE: &str =
    "\\x{9}-\\x{D}\\x{20}\\x{A0}\\x{1680}\\x{2000}-\\x{200A}\\x{2028}\\x{2029}\\x{202F}\\x{205F}\\x{3000}\\x{FEFF}";
const NOT_LINE_TERMINATOR: &str = "[^\\x{A}\\x{D}\\x{2028}\\x{2029}]";
const BACKTRACK_LIMIT: usize = 1_000_000;

/// A compiled JavaScript pattern.
pub(crate) struct JsRegex(fancy_regex::Regex);

impl JsRegex {
    /// `new RegExp(pattern)`, or `new RegExp(pattern, "u")` when `unicode`.
    pub(crate) fn new(pattern: &str, unicode: bool) -> Result<Self, RegexError> {
        let translated = translate(pattern, unicode).map_err(|e| match e {
            RegexError::Invalid(message) => RegexError::Invalid(format!(
                "Invalid regular expression: /{pattern}/{}: {message}",
                if unicode { "u" } else { "" }
            )),
            unsupported => unsupported,
        })?;
        fancy_regex::RegexBuilder::new(&translated)
            .backtrack_limit(BACKTRACK_LIMIT)
            .build()
            .map(JsRegex)
            .map_err(|e| RegexError::Unsupported(format!("the pattern cannot be evaluated here: {e}")))
    }

    /// `RegExp.prototype.test`; errs when the backtracking limit is exceeded.
    pub(crate) fn test(&self, text: &str) -> Result<bool, String> {
        self.0
            .is_match(text)
            .map_err(|e| format!("the pattern could not be evaluated on this output: {e}"))
    }
}

/// What a parsed term is, for deciding whether a quantifier may follow it.
#[derive(PartialEq)]
enum Term {
    Atom,
    /// `^`, `$`, `\b`, `\B` and lookbehinds: a quantifier after them is a syntax error.
    Assertion,
    /// Lookaheads, which Annex B lets be quantified when there is no `u` flag.
    Lookahead,
}

/// One item of a character class.
enum ClassAtom {
    Char(char),
    /// A class escape such as `\d`, already in regex syntax (may be a nested class).
    Set(String),
}

struct Translator {
    chars: Vec<char>,
    pos: usize,
    unicode: bool,
    /// Names of the capture groups, by group number minus one (`None` for unnamed groups).
    groups: Vec<Option<String>>,
    has_named_groups: bool,
    /// Capture groups opened so far, and which of them are closed (by group number).
    opened: usize,
    closed: Vec<usize>,
}

fn translate(pattern: &str, unicode: bool) -> Result<String, RegexError> {
    let chars: Vec<char> = pattern.chars().collect();
    let groups = scan_groups(&chars);
    let mut t = Translator {
        has_named_groups: groups.iter().any(Option::is_some),
        chars,
        pos: 0,
        unicode,
        groups,
        opened: 0,
        closed: Vec::new(),
    };
    let out = t.disjunction()?;
    if t.pos < t.chars.len() {
        // Only an unbalanced `)` stops the top-level disjunction early.
        return Err(invalid("Unmatched ')'"));
    }
    Ok(out)
}

fn invalid(message: &str) -> RegexError {
    RegexError::Invalid(message.to_owned())
}

/// Capture groups in order of their opening parenthesis, skipping escapes and classes.
fn scan_groups(chars: &[char]) -> Vec<Option<String>> {
    let mut groups = Vec::new();
    let mut i = 0;
    let mut in_class = false;
    while i < chars.len() {
        match chars[i] {
            '\\' => i += 1,
            '[' => in_class = true,
            ']' => in_class = false,
            '(' if !in_class => {
                if chars.get(i + 1) != Some(&'?') {
                    groups.push(None);
                } else if chars.get(i + 2) == Some(&'<') && !matches!(chars.get(i + 3), Some('=' | '!')) {
                    let name: String = chars[i + 3..].iter().take_while(|c| **c != '>').collect();
                    groups.push(Some(name));
                }
            }
            _ => {}
        }
        i += 1;
    }
    groups
}

fn literal(c: char) -> String {
    if c.is_ascii_alphanumeric() {
        c.to_string()
    } else {
        format!("\\x{{{:X}}}", c as u32)
    }
}

fn word_boundary(negated: bool) -> String {
    let w = format!("[{WORD}]");
    if negated {
        format!("(?:(?<={w})(?={w})|(?<!{w})(?!{w}))")
    } else {
        format!("(?:(?<={w})(?!{w})|(?<!{w})(?={w}))")
    }
}

/// The regex text of `\d`, `\w`, `\s` and their negations.
fn class_escape(c: char) -> Option<String> {
    let (body, negated) = match c {
        'd' => ("0-9", false),
        'D' => ("0-9", true),
        'w' => (WORD, false),
        'W' => (WORD, true),
        's' => (WHITESPACE, false),
        'S' => (WHITESPACE, true),
        _ => return None,
    };
    Some(format!("[{}{body}]", if negated { "^" } else { "" }))
}

fn is_syntax_char(c: char) -> bool {
    "^$\\.*+?()[]{}|/".contains(c)
}

impl Translator {
    fn peek(&self) -> Option<char> {
        self.chars.get(self.pos).copied()
    }

    fn peek_at(&self, offset: usize) -> Option<char> {
        self.chars.get(self.pos + offset).copied()
    }

    fn eat(&mut self, c: char) -> bool {
        if self.peek() == Some(c) {
            self.pos += 1;
            true
        } else {
            false
        }
    }

    fn disjunction(&mut self) -> Result<String, RegexError> {
        let mut out = String::new();
        loop {
            while let Some(c) = self.peek() {
                if c == '|' || c == ')' {
                    break;
                }
                out.push_str(&self.term()?);
            }
            if self.eat('|') {
                out.push('|');
            } else {
                return Ok(out);
            }
        }
    }

    fn term(&mut self) -> Result<String, RegexError> {
        let (text, kind) = self.atom()?;
        let Some((quantifier, min)) = self.quantifier()? else {
            return Ok(text);
        };
        if self.quantifier_follows() {
            return Err(invalid("Nothing to repeat"));
        }
        match kind {
            Term::Atom => Ok(format!("(?:{text}){quantifier}")),
            // A zero-width lookahead repeated is itself when it must occur, else nothing.
            Term::Lookahead if !self.unicode => Ok(if min == 0 { String::new() } else { text }),
            Term::Lookahead => Err(invalid("Invalid quantifier")),
            Term::Assertion => Err(invalid("Nothing to repeat")),
        }
    }

    fn atom(&mut self) -> Result<(String, Term), RegexError> {
        let c = self.peek().expect("called with input left");
        self.pos += 1;
        Ok(match c {
            '^' => ("^".into(), Term::Assertion),
            '$' => ("$".into(), Term::Assertion),
            '.' => (NOT_LINE_TERMINATOR.into(), Term::Atom),
            '(' => self.group()?,
            '[' => (self.class()?, Term::Atom),
            '\\' => self.atom_escape()?,
            '*' | '+' | '?' => return Err(invalid("Nothing to repeat")),
            '{' => {
                self.pos -= 1;
                if self.braced_quantifier()?.is_some() {
                    return Err(invalid("Nothing to repeat"));
                }
                self.pos += 1;
                if self.unicode {
                    return Err(invalid("Lone quantifier brackets"));
                }
                (literal('{'), Term::Atom)
            }
            '}' | ']' if self.unicode => return Err(invalid("Lone quantifier brackets")),
            other => (literal(other), Term::Atom),
        })
    }

    fn group(&mut self) -> Result<(String, Term), RegexError> {
        let (open, kind) = if self.eat('?') {
            match self.peek() {
                Some(':') => {
                    self.pos += 1;
                    ("(?:", Term::Atom)
                }
                Some('=') => {
                    self.pos += 1;
                    ("(?=", Term::Lookahead)
                }
                Some('!') => {
                    self.pos += 1;
                    ("(?!", Term::Lookahead)
                }
                Some('<') if matches!(self.peek_at(1), Some('=' | '!')) => {
                    let negated = self.peek_at(1) == Some('!');
                    self.pos += 2;
                    (if negated { "(?<!" } else { "(?<=" }, Term::Assertion)
                }
                Some('<') => {
                    self.pos += 1;
                    self.group_name()?;
                    ("(", Term::Atom)
                }
                _ => return Err(invalid("Invalid group")),
            }
        } else {
            ("(", Term::Atom)
        };
        let number = (open == "(").then(|| {
            self.opened += 1;
            self.opened
        });
        let body = self.disjunction()?;
        if !self.eat(')') {
            return Err(invalid("Unterminated group"));
        }
        self.closed.extend(number);
        Ok((format!("{open}{body})"), kind))
    }

    /// Reads `name>` after `(?<` and checks it is a valid, unique group name.
    fn group_name(&mut self) -> Result<String, RegexError> {
        let start = self.pos;
        while let Some(c) = self.peek() {
            if c == '>' {
                break;
            }
            let valid = if self.pos == start {
                c.is_alphabetic() || c == '$' || c == '_'
            } else {
                c.is_alphanumeric() || matches!(c, '$' | '_' | '\u{200C}' | '\u{200D}')
            };
            if !valid {
                return Err(invalid("Invalid capture group name"));
            }
            self.pos += 1;
        }
        let name: String = self.chars[start..self.pos].iter().collect();
        if name.is_empty() || !self.eat('>') {
            return Err(invalid("Invalid capture group name"));
        }
        if self.groups.iter().flatten().filter(|g| **g == name).count() > 1 {
            return Err(invalid("Duplicate capture group name"));
        }
        Ok(name)
    }

    fn quantifier_follows(&mut self) -> bool {
        match self.peek() {
            Some('*' | '+' | '?') => true,
            Some('{') => {
                let save = self.pos;
                let found = matches!(self.braced_quantifier(), Ok(Some(_)) | Err(_));
                self.pos = save;
                found
            }
            _ => false,
        }
    }

    /// `*`, `+`, `?` or a braced count, each optionally lazy, in regex syntax, with the
    /// minimum number of repetitions.
    fn quantifier(&mut self) -> Result<Option<(String, u64)>, RegexError> {
        let (base, min) = match self.peek() {
            Some(c @ ('*' | '+' | '?')) => {
                self.pos += 1;
                (c.to_string(), u64::from(c == '+'))
            }
            Some('{') => match self.braced_quantifier()? {
                Some(q) => {
                    let min = q[1..].split([',', '}']).next().and_then(|n| n.parse().ok());
                    (q, min.unwrap_or(u64::MAX))
                }
                None => return Ok(None),
            },
            _ => return Ok(None),
        };
        let lazy = if self.eat('?') { "?" } else { "" };
        Ok(Some((format!("{base}{lazy}"), min)))
    }

    /// `{n}`, `{n,}` or `{n,m}` at the cursor; `None` (cursor unmoved) when the brace does not
    /// start one, which makes it a literal without the `u` flag.
    fn braced_quantifier(&mut self) -> Result<Option<String>, RegexError> {
        let start = self.pos;
        let digits = |t: &mut Self| {
            let from = t.pos;
            while t.peek().is_some_and(|c| c.is_ascii_digit()) {
                t.pos += 1;
            }
            let text: String = t.chars[from..t.pos].iter().collect();
            (!text.is_empty()).then(|| text.parse::<u64>().unwrap_or(u64::MAX))
        };
        self.pos += 1;
        let Some(min) = digits(self) else {
            self.pos = start;
            return Ok(None);
        };
        let max = if self.eat(',') { Some(digits(self)) } else { None };
        if !self.eat('}') {
            self.pos = start;
            return Ok(None);
        }
        Ok(Some(match max {
            None => format!("{{{min}}}"),
            Some(None) => format!("{{{min},}}"),
            Some(Some(max)) if max < min => {
                return Err(invalid("numbers out of order in {} quantifier"));
            }
            Some(Some(max)) => format!("{{{min},{max}}}"),
        }))
    }

    fn atom_escape(&mut self) -> Result<(String, Term), RegexError> {
        let Some(c) = self.peek() else {
            return Err(invalid("\\ at end of pattern"));
        };
        self.pos += 1;
        if c == 'b' || c == 'B' {
            return Ok((word_boundary(c == 'B'), Term::Assertion));
        }
        if let Some(set) = class_escape(c) {
            return Ok((set, Term::Atom));
        }
        if c.is_ascii_digit() && c != '0' {
            self.pos -= 1;
            let from = self.pos;
            while self.peek().is_some_and(|d| d.is_ascii_digit()) {
                self.pos += 1;
            }
            let text: String = self.chars[from..self.pos].iter().collect();
            let n = text.parse::<usize>().unwrap_or(usize::MAX);
            if n <= self.groups.len() {
                return Ok((self.backreference(n), Term::Atom));
            }
            if self.unicode {
                return Err(invalid("Invalid escape"));
            }
            self.pos = from;
            return Ok((literal(self.legacy_octal_or_digit()), Term::Atom));
        }
        if c == 'k' && (self.unicode || self.has_named_groups) {
            if !self.eat('<') {
                return Err(invalid("Invalid named reference"));
            }
            let from = self.pos;
            while self.peek().is_some_and(|c| c != '>') {
                self.pos += 1;
            }
            let name: String = self.chars[from..self.pos].iter().collect();
            if !self.eat('>') {
                return Err(invalid("Invalid named reference"));
            }
            let Some(index) = self.groups.iter().position(|g| g.as_deref() == Some(name.as_str())) else {
                return Err(invalid("Invalid named capture referenced"));
            };
            return Ok((self.backreference(index + 1), Term::Atom));
        }
        if (c == 'p' || c == 'P') && self.unicode {
            return Ok((self.property(c == 'P')?, Term::Atom));
        }
        self.pos -= 1;
        match self.character_escape(false)? {
            Some(ch) => Ok((literal(ch), Term::Atom)),
            None => Ok((literal('\\'), Term::Atom)),
        }
    }

    /// A backreference as JavaScript resolves it: to a group that has not captured (one that
    /// did not take part in the match, or is not closed yet where the reference stands) it
    /// matches the empty string, where fancy-regex would fail.
    fn backreference(&self, group: usize) -> String {
        if self.closed.contains(&group) {
            format!("(?({group})\\{group}|)")
        } else {
            String::new()
        }
    }

    /// `\p{...}` in `u` mode, passed to the regex engine's Unicode property support.
    fn property(&mut self, negated: bool) -> Result<String, RegexError> {
        if !self.eat('{') {
            return Err(invalid("Invalid property name"));
        }
        let from = self.pos;
        while self.peek().is_some_and(|c| c != '}') {
            self.pos += 1;
        }
        let name: String = self.chars[from..self.pos].iter().collect();
        if !self.eat('}') || name.is_empty() {
            return Err(invalid("Invalid property name"));
        }
        Ok(format!("\\{}{{{name}}}", if negated { 'P' } else { 'p' }))
    }

    /// Annex B: `\0`-`\377` octal escapes, and `\8`/`\9` as the digits themselves.
    fn legacy_octal_or_digit(&mut self) -> char {
        let first = self.peek().unwrap_or('0');
        self.pos += 1;
        if first == '8' || first == '9' {
            return first;
        }
        let mut value = first.to_digit(8).unwrap_or(0);
        let max_digits = if first <= '3' { 3 } else { 2 };
        for _ in 1..max_digits {
            match self.peek().and_then(|c| c.to_digit(8)) {
                Some(d) => {
                    value = value * 8 + d;
                    self.pos += 1;
                }
                None => break,
            }
        }
        char::from_u32(value).unwrap_or('\0')
    }

    /// A CharacterEscape or identity escape after a backslash (cursor on the escaped char).
    /// Returns `None` for Annex B's lone `\c`, which stands for a literal backslash (the `c`
    /// is then read as an ordinary character).
    fn character_escape(&mut self, in_class: bool) -> Result<Option<char>, RegexError> {
        let c = self.peek().expect("called with input left");
        self.pos += 1;
        let ch = match c {
            'f' => '\u{C}',
            'n' => '\n',
            'r' => '\r',
            't' => '\t',
            'v' => '\u{B}',
            'c' => {
                let control = self.peek().filter(|n| {
                    n.is_ascii_alphabetic() || (in_class && !self.unicode && (n.is_ascii_digit() || *n == '_'))
                });
                match control {
                    Some(n) => {
                        self.pos += 1;
                        char::from_u32(n as u32 % 32).unwrap_or('\0')
                    }
                    None if self.unicode => return Err(invalid("Invalid unicode escape")),
                    None => {
                        self.pos -= 1;
                        return Ok(None);
                    }
                }
            }
            '0' if !self.peek().is_some_and(|d| d.is_ascii_digit()) => '\0',
            '0'..='9' if self.unicode => {
                return Err(invalid(if in_class {
                    "Invalid class escape"
                } else {
                    "Invalid decimal escape"
                }));
            }
            '0'..='9' => {
                self.pos -= 1;
                self.legacy_octal_or_digit()
            }
            'x' => match self.hex_digits(2) {
                Some(v) => char::from_u32(v).unwrap_or('\0'),
                None if self.unicode => return Err(invalid("Invalid escape")),
                None => 'x',
            },
            'u' => match self.unicode_escape()? {
                Some(ch) => ch,
                None if self.unicode => return Err(invalid("Invalid Unicode escape")),
                None => 'u',
            },
            '-' if in_class => '-',
            other if self.unicode && !is_syntax_char(other) => {
                return Err(invalid("Invalid escape"));
            }
            other => other,
        };
        Ok(Some(ch))
    }

    fn hex_digits(&mut self, n: usize) -> Option<u32> {
        let text: String = self.chars.get(self.pos..self.pos + n)?.iter().collect();
        if text.chars().all(|c| c.is_ascii_hexdigit()) {
            self.pos += n;
            u32::from_str_radix(&text, 16).ok()
        } else {
            None
        }
    }

    /// After `\u`: four hex digits (a surrogate pair written as two escapes is joined), or
    /// `{hex}` in `u` mode. `None` when no escape follows (an identity escape of `u`).
    fn unicode_escape(&mut self) -> Result<Option<char>, RegexError> {
        if self.unicode && self.peek() == Some('{') {
            let from = self.pos;
            self.pos += 1;
            let start = self.pos;
            while self.peek().is_some_and(|c| c.is_ascii_hexdigit()) {
                self.pos += 1;
            }
            let text: String = self.chars[start..self.pos].iter().collect();
            if !text.is_empty() && self.eat('}') {
                if let Some(ch) = u32::from_str_radix(&text, 16).ok().and_then(char::from_u32) {
                    return Ok(Some(ch));
                }
            }
            self.pos = from;
            return Err(invalid("Invalid Unicode escape"));
        }
        let Some(unit) = self.hex_digits(4) else {
            return Ok(None);
        };
        if let Some(ch) = char::from_u32(unit) {
            return Ok(Some(ch));
        }
        if (0xD800..0xDC00).contains(&unit) && self.peek() == Some('\\') && self.peek_at(1) == Some('u') {
            let save = self.pos;
            self.pos += 2;
            if let Some(low @ 0xDC00..=0xDFFF) = self.hex_digits(4) {
                let code = 0x10000 + ((unit - 0xD800) << 10) + (low - 0xDC00);
                return Ok(char::from_u32(code));
            }
            self.pos = save;
        }
        Err(RegexError::Unsupported(format!(
            "the pattern escapes a lone surrogate (\\u{unit:04X}), which cannot occur in valid text here"
        )))
    }

    fn class(&mut self) -> Result<String, RegexError> {
        let negated = self.eat('^');
        let mut items = String::new();
        let mut empty = true;
        loop {
            match self.peek() {
                None => return Err(invalid("Unterminated character class")),
                Some(']') => {
                    self.pos += 1;
                    break;
                }
                Some(_) => {}
            }
            empty = false;
            let first = self.class_atom()?;
            if self.peek() == Some('-') && !matches!(self.peek_at(1), None | Some(']')) {
                self.pos += 1;
                let second = self.class_atom()?;
                match (first, second) {
                    (ClassAtom::Char(a), ClassAtom::Char(b)) => {
                        if a > b {
                            return Err(invalid("Range out of order in character class"));
                        }
                        let _ = write!(items, "\\x{{{:X}}}-\\x{{{:X}}}", a as u32, b as u32);
                    }
                    _ if self.unicode => return Err(invalid("Invalid character class")),
                    (first, second) => {
                        for atom in [first, ClassAtom::Char('-'), second] {
                            push_class_atom(&mut items, atom);
                        }
                    }
                }
            } else {
                push_class_atom(&mut items, first);
            }
        }
        Ok(match (empty, negated) {
            // `[]` matches nothing and `[^]` any character, newlines included.
            (true, false) => "[^\\x{0}-\\x{10FFFF}]".into(),
            (true, true) => "[\\x{0}-\\x{10FFFF}]".into(),
            (false, negated) => format!("[{}{items}]", if negated { "^" } else { "" }),
        })
    }

    fn class_atom(&mut self) -> Result<ClassAtom, RegexError> {
        let c = self.peek().ok_or_else(|| invalid("Unterminated character class"))?;
        self.pos += 1;
        if c != '\\' {
            return Ok(ClassAtom::Char(c));
        }
        let Some(e) = self.peek() else {
            return Err(invalid("\\ at end of pattern"));
        };
        if e == 'b' {
            self.pos += 1;
            return Ok(ClassAtom::Char('\u{8}'));
        }
        if let Some(set) = class_escape(e) {
            self.pos += 1;
            return Ok(ClassAtom::Set(set));
        }
        if (e == 'p' || e == 'P') && self.unicode {
            self.pos += 1;
            return Ok(ClassAtom::Set(format!("[{}]", self.property(e == 'P')?)));
        }
        if e == 'B' && self.unicode {
            return Err(invalid("Invalid class escape"));
        }
        Ok(ClassAtom::Char(self.character_escape(true)?.unwrap_or('\\')))
    }
}

fn push_class_atom(items: &mut String, atom: ClassAtom) {
    match atom {
        ClassAtom::Char(c) => {
            let _ = write!(items, "\\x{{{:X}}}", c as u32);
        }
        ClassAtom::Set(set) => items.push_str(&set),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn test(pattern: &str, text: &str) -> bool {
        JsRegex::new(pattern, false)
            .unwrap_or_else(|e| panic!("{pattern}: {e:?}"))
            .test(text)
            .unwrap()
    }

    fn error(pattern: &str) -> RegexError {
        match JsRegex::new(pattern, false) {
            Ok(_) => panic!("{pattern} compiled"),
            Err(e) => e,
        }
    }

    #[test]
    fn shorthand_classes_are_ascii_as_in_javascript() {
        assert!(test(r"^\d+$", "123"));
        assert!(!test(r"^\d$", "٣"), "Arabic-Indic digit is not \\d in JS");
        assert!(!test(r"^\w$", "é"));
        assert!(test(r"\bcat\b", "a cat!"));
        assert!(test(r"\bcat\b", "écatè"), "é is not a word character in JS");
        assert!(!test(r"\bcat\b", "xcatx"));
        assert!(!test(r"é\b", "é "));
    }

    #[test]
    fn whitespace_and_dot_follow_ecmascript() {
        assert!(test(r"^\s$", "\u{FEFF}"));
        assert!(!test(r"^\s$", "\u{85}"));
        assert!(!test(r"^.$", "\u{2028}"));
        assert!(!test(r"^a.b$", "a\nb"));
        assert!(test(r"^a[^]b$", "a\nb"));
        assert!(!test(r"a[]b", "ab"));
    }

    #[test]
    fn dollar_is_the_end_of_input_only() {
        assert!(!test("a$", "a\n"));
        assert!(test("^a", "a\nb"));
        assert!(!test("^b", "a\nb"));
    }

    #[test]
    fn annex_b_leniencies_hold() {
        assert!(test("a{", "a{"));
        assert!(test("a{1,x}", "a{1,x}"));
        assert!(test("x}", "x}"));
        assert!(test(r"\a\z", "az"));
        assert!(test(r"\8", "8"));
        assert!(test(r"\101", "A"), "octal escape");
        assert!(test(r"(a)\1", "aa"), "backreference");
        assert!(!test(r"^(a)\1$", "a"));
        assert!(
            test(r"^(?:(a)|b)\1$", "b"),
            "a group that did not take part matches empty"
        );
        assert!(test(r"^\1(a)$", "a"), "a forward reference matches empty");
        assert!(test(r"^(a\1)$", "a"), "so does a reference inside its own group");
        assert!(test(r"\c", "\\c"));
        assert!(test(r"\k", "k"));
        assert!(test(r"\p{L}", "p{L}"));
        assert!(test(r"[\w-z]", "-"));
        assert!(test(r"\u{3}", "uuu"));
    }

    #[test]
    fn lookaround_and_named_groups_work() {
        assert!(test(r"^(?!.*sorry).*$", "all good"));
        assert!(!test(r"^(?!.*sorry).*$", "so sorry"));
        assert!(test(r"(?<=\$)\d+", "cost $42"));
        assert!(test(r"(?<year>\d{4})-\k<year>", "2024-2024"));
        assert!(test(r"(?=a)*b", "b"));
        assert!(!test(r"(?=a)+b", "b"));
    }

    #[test]
    fn escapes_and_unicode_work() {
        assert!(test(r"\u00e9", "é"));
        assert!(test(r"\x41", "A"));
        assert!(test(r"\ud83d\ude00", "😀"));
        assert!(test("😀+", "😀"));
        assert!(test(r"[a-c]", "b"));
        assert!(test(r"[\u0041-\u0043]+$", "ABC"));
        assert!(
            test(r"a.c", "a😀c"),
            "one code point (JS without u would need two dots)"
        );
    }

    #[test]
    fn node_syntax_errors_are_reported_with_node_messages() {
        for (pattern, message) in [
            ("(", "Unterminated group"),
            (")", "Unmatched ')'"),
            ("[a", "Unterminated character class"),
            ("*a", "Nothing to repeat"),
            ("a**", "Nothing to repeat"),
            ("^*", "Nothing to repeat"),
            ("{1}", "Nothing to repeat"),
            ("a{2,1}", "numbers out of order in {} quantifier"),
            ("[z-a]", "Range out of order in character class"),
            ("(?i)a", "Invalid group"),
            ("\\", "\\ at end of pattern"),
            ("(?<a>x)(?<a>y)", "Duplicate capture group name"),
            ("(?<a>x)\\k<b>", "Invalid named capture referenced"),
        ] {
            assert_eq!(
                error(pattern),
                RegexError::Invalid(format!("Invalid regular expression: /{pattern}/: {message}")),
                "{pattern}"
            );
        }
    }

    #[test]
    fn unicode_mode_is_strict() {
        assert!(JsRegex::new(r"\a", true).is_err());
        assert!(JsRegex::new("a{", true).is_err());
        let re = JsRegex::new(r"^\p{Lu}\u{1F600}$", true).unwrap();
        assert!(re.test("É😀").unwrap());
    }

    #[test]
    fn catastrophic_backtracking_is_bounded() {
        let re = JsRegex::new(r"^(a+)+\1$", false).unwrap();
        assert!(re.test(&format!("{}b", "a".repeat(40))).is_err());
    }
}
