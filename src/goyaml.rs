//! PURE: the one go-yaml-compatible emitter, for every file talvault writes the way Go's
//! `yaml.Marshal` would (the secrets bundle, talosconfig); it must not do I/O.
//!
//! No Rust crate writes go-yaml's exact bytes (serde's emitters indent by 2 and quote
//! differently; reference/crates.md §7), and talosctl's files are compared byte for byte, so the
//! layout is written here, once: yaml.v3 / go.yaml.in/yaml/v4 with v3 defaults, 4-space
//! indentation, block sequences indented under their key, flow `[]`/`{}` for empty collections,
//! strings quoted as go-yaml's resolver and libyaml's emitter decide ([`scalar`]), map keys in
//! go-yaml's natural order ([`natural_order`]), and any `serde_yaml::Value` written back in that
//! layout ([`Writer::mapping`]). Schemas (which keys, in which order) stay with their modules.

use std::borrow::Cow;

use serde_yaml::{Mapping, Value};
use zeroize::Zeroizing;

use crate::secret::SecretText;

/// A go-yaml-shaped document being written. Every byte goes through [`Writer::put`] into a
/// zeroizing buffer: values can be secrets (keys, tokens, passwords).
pub struct Writer(Zeroizing<String>);

/// The longest key written as an implicit key (`KEY: value`), in bytes: YAML's limit is 1024
/// characters, and a character is at least a byte.
const IMPLICIT_KEY_MAX: usize = 1000;

impl Writer {
    /// An empty document with room for `capacity` bytes.
    pub fn with_capacity(capacity: usize) -> Self {
        Writer(Zeroizing::new(String::with_capacity(capacity)))
    }

    /// The document written so far, as a secret (it may hold keys and tokens).
    pub fn finish(mut self) -> SecretText {
        SecretText::new(std::mem::take(&mut *self.0))
    }

    /// Appends `text` verbatim. Every byte goes through here, so growing the buffer never leaves
    /// a secret behind.
    pub fn put(&mut self, text: &str) {
        crate::secret::push_zeroizing(&mut self.0, text);
    }

    /// `col` spaces.
    pub fn indent(&mut self, col: usize) {
        for _ in 0..col {
            self.put(" ");
        }
    }

    /// A mapping key as rendered, then `:`. YAML limits an implicit key to 1024 characters
    /// (libyaml's simple-key limit); a longer one is written as an explicit key, `? KEY` on its
    /// own line and `:` under it (fuzz finding 13: a key with tabs and astral characters grew
    /// past the limit once escaped, and the file no longer read).
    pub fn put_key(&mut self, col: usize, rendered: &str) {
        if rendered.len() > IMPLICIT_KEY_MAX {
            self.put_explicit_key(col, rendered);
        } else {
            self.put(rendered);
            self.put(":");
        }
    }

    /// `? KEY`, then `:` on the next line at column `col`.
    pub fn put_explicit_key(&mut self, col: usize, rendered: &str) {
        self.put("? ");
        self.put(rendered);
        self.put("\n");
        self.indent(col);
        self.put(":");
    }

    /// `KEY:` alone on its line at column `col` (a mapping or sequence follows).
    pub fn key_line(&mut self, col: usize, key: &str) {
        self.indent(col);
        self.put_key(col, &scalar(key));
        self.put("\n");
    }

    /// `KEY: VALUE` with `value` written as given (`null`, `[]`, `{}`, an already quoted scalar).
    pub fn raw_entry(&mut self, col: usize, key: &str, value: &str) {
        self.indent(col);
        self.put_key(col, &scalar(key));
        self.put(" ");
        self.put(value);
        self.put("\n");
    }

    /// `KEY: VALUE` with `value` a string, quoted as go-yaml quotes it ([`scalar`]).
    pub fn scalar_entry(&mut self, col: usize, key: &str, value: &str) {
        let rendered = Zeroizing::new(scalar(value).into_owned());
        self.raw_entry(col, key, &rendered);
    }

    /// A block sequence of strings under `KEY:` (items indented by 4), or `KEY: []` when empty.
    pub fn list_entry(&mut self, col: usize, key: &str, items: &[String]) {
        if items.is_empty() {
            self.raw_entry(col, key, "[]");
            return;
        }
        self.key_line(col, key);
        for item in items {
            self.indent(col + 4);
            self.put("- ");
            self.put(&scalar(item));
            self.put("\n");
        }
    }

    /// Entries of a block mapping at column `col`; with `inline_first` the first entry continues
    /// the current line (after a sequence's `- `).
    pub fn mapping(&mut self, col: usize, map: &Mapping, inline_first: bool) {
        for (i, (key, value)) in map.iter().enumerate() {
            if !(inline_first && i == 0) {
                self.indent(col);
            }
            if is_complex_key(key) {
                // A collection as a key (`? - a`): written as an explicit key in flow form, as
                // `[]` it collided with the next such key (fuzz finding 9).
                let mut flow = Zeroizing::new(String::new());
                flow_node(&mut flow, key);
                self.put_explicit_key(col, &flow);
            } else {
                let rendered = Zeroizing::new(value_scalar(key).into_owned());
                self.put_key(col, &rendered);
            }
            self.entry_value(col, value);
        }
    }

    /// Items of a block sequence whose `- ` sits at column `col`.
    pub fn sequence(&mut self, col: usize, items: &[Value], inline_first: bool) {
        for (i, item) in items.iter().enumerate() {
            if !(inline_first && i == 0) {
                self.indent(col);
            }
            self.put("- ");
            self.item_value(col + 2, item);
        }
    }

    /// The value of a mapping entry at column `col`, after its `key:`.
    pub fn entry_value(&mut self, col: usize, value: &Value) {
        match value {
            Value::Mapping(m) if !m.is_empty() => {
                self.put("\n");
                self.mapping(col + 4, m, false);
            }
            Value::Sequence(s) if !s.is_empty() => {
                self.put("\n");
                self.sequence(col + 4, s, false);
            }
            Value::Tagged(t) => {
                self.put(" ");
                self.put(&tag_text(&t.tag));
                self.entry_value(col, &t.value);
            }
            other => {
                self.put(" ");
                self.put(&value_scalar(other));
                self.put("\n");
            }
        }
    }

    /// The value of a sequence item whose content starts at column `col`.
    pub fn item_value(&mut self, col: usize, value: &Value) {
        match value {
            Value::Mapping(m) if !m.is_empty() => self.mapping(col, m, true),
            Value::Sequence(s) if !s.is_empty() => self.sequence(col, s, true),
            Value::Tagged(t) => {
                self.put(&tag_text(&t.tag));
                match &t.value {
                    Value::Mapping(m) if !m.is_empty() => {
                        self.put("\n");
                        self.mapping(col, m, false);
                    }
                    Value::Sequence(s) if !s.is_empty() => {
                        self.put("\n");
                        self.sequence(col, s, false);
                    }
                    other => {
                        self.put(" ");
                        self.item_value(col, other);
                    }
                }
            }
            other => {
                self.put(&value_scalar(other));
                self.put("\n");
            }
        }
    }
}

/// A tag as written back: plain (`!name`) when that reads back as the same tag, else in verbatim
/// form, `!<…>` with every character outside the safe URI set percent-escaped, which YAML
/// decodes back to the same tag. Fuzz findings: dropping tags that could not be written plainly
/// (the non-specific `!`, shown by serde_yaml_ng as `!!`; a `!` that came from `%21`; `(`, `'`)
/// made two keys that differed only in their tags collide, and writing them plainly did not
/// parse.
fn tag_text(tag: &serde_yaml::value::Tag) -> String {
    let text = tag.to_string();
    let body = text.trim_start_matches('!');
    let plain = !body.is_empty()
        && text.len() - body.len() <= 2
        && body
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./:".contains(c));
    if plain {
        return text;
    }
    let mut out = String::from("!<");
    for b in text.bytes() {
        // The characters libyaml takes literally in a tag (`yaml_parser_scan_tag_uri`), less
        // `,[]`, which would end a flow collection; everything else as %XX.
        if b.is_ascii_alphanumeric() || b"-_.!~*'();/?:@&=+$".contains(&b) {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out.push('>');
    out
}

/// A mapping key that is a non-empty collection (possibly tagged); it cannot be written as a
/// plain key.
fn is_complex_key(v: &Value) -> bool {
    match v {
        Value::Sequence(s) => !s.is_empty(),
        Value::Mapping(m) => !m.is_empty(),
        Value::Tagged(t) => is_complex_key(&t.value),
        _ => false,
    }
}

/// A value in flow form on one line: strings double-quoted, collections as `[a, b]` and
/// `{? k : v}` (explicit keys, so a collection can be a key inside it too).
fn flow_node(out: &mut Zeroizing<String>, v: &Value) {
    match v {
        Value::String(s) => crate::secret::push_zeroizing(out, &double_quoted(s)),
        Value::Sequence(items) => {
            crate::secret::push_zeroizing(out, "[");
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    crate::secret::push_zeroizing(out, ", ");
                }
                flow_node(out, item);
            }
            crate::secret::push_zeroizing(out, "]");
        }
        Value::Mapping(map) => {
            crate::secret::push_zeroizing(out, "{");
            for (i, (key, value)) in map.iter().enumerate() {
                crate::secret::push_zeroizing(out, if i > 0 { ", ? " } else { "? " });
                flow_node(out, key);
                crate::secret::push_zeroizing(out, " : ");
                flow_node(out, value);
            }
            crate::secret::push_zeroizing(out, "}");
        }
        Value::Tagged(t) => {
            crate::secret::push_zeroizing(out, &tag_text(&t.tag));
            crate::secret::push_zeroizing(out, " ");
            flow_node(out, &t.value);
        }
        other => crate::secret::push_zeroizing(out, &scalar_text(other)),
    }
}

/// Whether `v` is a scalar (null, bool, number or string).
pub fn is_scalar(v: &Value) -> bool {
    matches!(
        v,
        Value::Null | Value::Bool(_) | Value::Number(_) | Value::String(_)
    )
}

/// A value as plain text: scalars as they read, collections as `[]`/`{}`, tagged values as their
/// tag (for names in messages and in [`Writer::mapping`]).
pub fn scalar_text(v: &Value) -> String {
    match v {
        Value::Null => "null".to_owned(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => n.to_string(),
        Value::String(s) => s.clone(),
        Value::Sequence(_) => "[]".to_owned(),
        Value::Mapping(_) => "{}".to_owned(),
        Value::Tagged(t) => t.tag.to_string(),
    }
}

fn value_scalar(v: &Value) -> Cow<'_, str> {
    match v {
        Value::String(s) => scalar(s),
        // A tagged scalar (as a mapping key): the tag, then the value; a non-specific tag only
        // the value (fuzz finding: the key was written as its bare tag, losing the value).
        Value::Tagged(t) => Cow::Owned(format!("{} {}", tag_text(&t.tag), value_scalar(&t.value))),
        Value::Sequence(_) => Cow::Borrowed("[]"),
        Value::Mapping(_) => Cow::Borrowed("{}"),
        other => Cow::Owned(scalar_text(other)),
    }
}

/// A string as go-yaml writes it: plain when it would read back as the same string and the
/// emitter allows it, single-quoted when only the emitter objects, double-quoted when it would
/// resolve to another type (yaml.v3 encode.go `stringv`, emitterc.go `analyze_scalar`).
/// Multi-line strings are written double-quoted (go-yaml uses a literal block; same value).
pub fn scalar(s: &str) -> Cow<'_, str> {
    if s.is_empty() || resolves_to_non_string(s) || s.contains('\n') {
        return Cow::Owned(double_quoted(s));
    }
    match emitter_allows(s) {
        Allowed::Plain => Cow::Borrowed(s),
        Allowed::SingleQuoted => Cow::Owned(format!("'{}'", s.replace('\'', "''"))),
        Allowed::DoubleQuoted => Cow::Owned(double_quoted(s)),
    }
}

enum Allowed {
    Plain,
    SingleQuoted,
    DoubleQuoted,
}

/// libyaml `yaml_emitter_analyze_scalar` for a block-context scalar without line breaks.
fn emitter_allows(s: &str) -> Allowed {
    let chars: Vec<char> = s.chars().collect();
    let mut block_indicators = s.starts_with("---") || s.starts_with("...");
    let mut special = false;
    let blank_or_end = |i: usize| chars.get(i).is_none_or(|c| *c == ' ' || *c == '\t');
    for (i, &c) in chars.iter().enumerate() {
        if i == 0 {
            match c {
                '#' | ',' | '[' | ']' | '{' | '}' | '&' | '*' | '!' | '|' | '>' | '\'' | '"'
                | '%' | '@' | '`' => block_indicators = true,
                '?' | ':' | '-' if blank_or_end(1) => block_indicators = true,
                _ => {}
            }
        } else {
            match c {
                ':' if blank_or_end(i + 1) => block_indicators = true,
                '#' if chars[i - 1] == ' ' || chars[i - 1] == '\t' => block_indicators = true,
                _ => {}
            }
        }
        if !printable(c) || matches!(c, '\u{85}' | '\u{2028}' | '\u{2029}') {
            special = true;
        }
    }
    let leading_or_trailing_space = s.starts_with(' ') || s.ends_with(' ');
    if special {
        Allowed::DoubleQuoted
    } else if block_indicators || leading_or_trailing_space {
        Allowed::SingleQuoted
    } else {
        Allowed::Plain
    }
}

/// libyaml `is_printable` (on the UTF-8 encoding): LF, printable ASCII, and the BMP from U+00A0
/// except surrogates, the BOM and U+FFFE/U+FFFF. Characters beyond the BMP count as special.
fn printable(c: char) -> bool {
    c == '\n'
        || (' '..='~').contains(&c)
        || ('\u{a0}'..='\u{d7ff}').contains(&c)
        || (('\u{e000}'..='\u{fffd}').contains(&c) && c != '\u{feff}')
}

/// libyaml `yaml_emitter_write_double_quoted_scalar` escapes.
fn double_quoted(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\0' => out.push_str("\\0"),
            '\u{7}' => out.push_str("\\a"),
            '\u{8}' => out.push_str("\\b"),
            '\t' => out.push_str("\\t"),
            '\n' => out.push_str("\\n"),
            '\u{b}' => out.push_str("\\v"),
            '\u{c}' => out.push_str("\\f"),
            '\r' => out.push_str("\\r"),
            '\u{1b}' => out.push_str("\\e"),
            '\u{85}' => out.push_str("\\N"),
            '\u{2028}' => out.push_str("\\L"),
            '\u{2029}' => out.push_str("\\P"),
            c if printable(c) => out.push(c),
            c => {
                let v = u32::from(c);
                if v <= 0xff {
                    out.push_str(&format!("\\x{v:02X}"));
                } else if v <= 0xffff {
                    out.push_str(&format!("\\u{v:04X}"));
                } else {
                    out.push_str(&format!("\\U{v:08X}"));
                }
            }
        }
    }
    out.push('"');
    out
}

/// Whether go-yaml's resolver reads `s` unquoted as something other than a string, or quotes it
/// anyway (YAML 1.1 booleans, base-60 floats, the merge key `<<`): yaml.v3 resolve.go
/// `resolve`, go-yaml v4 representer.go `isOldBool`, `isBase60Float`, `looksLikeMerge`.
fn resolves_to_non_string(s: &str) -> bool {
    const SPECIAL: &[&str] = &[
        "~", "null", "Null", "NULL", "true", "True", "TRUE", "false", "False", "FALSE", ".nan",
        ".NaN", ".NAN", ".inf", ".Inf", ".INF", "+.inf", "+.Inf", "+.INF", "-.inf", "-.Inf",
        "-.INF", "y", "Y", "yes", "Yes", "YES", "on", "On", "ON", "n", "N", "no", "No", "NO",
        "off", "Off", "OFF", "<<",
    ];
    if SPECIAL.contains(&s) {
        return true;
    }
    let first = s.as_bytes()[0];
    match first {
        b'.' => is_yaml_float(s) || go_parse_float_dot(s),
        b'0'..=b'9' | b'+' | b'-' => {
            is_timestamp(s) || is_base60_float(s) || {
                let plain: String = s.chars().filter(|&c| c != '_').collect();
                is_go_int(&plain) || is_yaml_float(&plain)
            }
        }
        _ => false,
    }
}

/// `^[-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)?$` (yaml.v3 `yamlStyleFloat`).
fn is_yaml_float(s: &str) -> bool {
    let b = s.as_bytes();
    let mut i = usize::from(matches!(b.first(), Some(b'+' | b'-')));
    let digits = |i: &mut usize| {
        let start = *i;
        while b.get(*i).is_some_and(u8::is_ascii_digit) {
            *i += 1;
        }
        *i - start
    };
    if b.get(i) == Some(&b'.') {
        i += 1;
        if digits(&mut i) == 0 {
            return false;
        }
    } else {
        if digits(&mut i) == 0 {
            return false;
        }
        if b.get(i) == Some(&b'.') {
            i += 1;
            digits(&mut i);
        }
    }
    if matches!(b.get(i), Some(b'e' | b'E')) {
        i += 1;
        if matches!(b.get(i), Some(b'+' | b'-')) {
            i += 1;
        }
        if digits(&mut i) == 0 {
            return false;
        }
    }
    i == b.len()
}

/// Go's `strconv.ParseFloat` on a string starting with '.': decimal digits and an exponent.
fn go_parse_float_dot(s: &str) -> bool {
    is_yaml_float(s)
}

/// `strconv.ParseInt(s, 0, 64)` or `ParseUint(s, 0, 64)` succeeding, or the `0b`/`0o` forms
/// yaml.v3 adds. Decimal overflow still resolves (to a float), so only prefixed forms check range.
fn is_go_int(s: &str) -> bool {
    let (negative, signed, body) = match s.as_bytes().first() {
        Some(b'-') => (true, true, &s[1..]),
        Some(b'+') => (false, true, &s[1..]),
        _ => (false, false, s),
    };
    let (radix, digits) = match body.get(..2) {
        Some("0x" | "0X") => (16, &body[2..]),
        Some("0o" | "0O") => (8, &body[2..]),
        Some("0b" | "0B") => (2, &body[2..]),
        _ => (10, body),
    };
    if digits.is_empty() || !digits.chars().all(|c| c.is_digit(radix)) {
        return false;
    }
    if radix == 10 {
        // Any decimal digits resolve: ParseInt, or else the float pattern.
        return true;
    }
    let Ok(magnitude) = u128::from_str_radix(digits, radix) else {
        return false;
    };
    if negative {
        magnitude <= 1u128 << 63
    } else if signed {
        magnitude <= i64::MAX as u128
    } else {
        magnitude <= u64::MAX as u128
    }
}

/// `^[-+]?[0-9][0-9_]*(?::[0-5]?[0-9])+(?:\.[0-9_]*)?$` (yaml.v3 encode.go `base60float`).
fn is_base60_float(s: &str) -> bool {
    let b = s.as_bytes();
    let mut i = usize::from(matches!(b.first(), Some(b'+' | b'-')));
    if !b.get(i).is_some_and(u8::is_ascii_digit) {
        return false;
    }
    while b.get(i).is_some_and(|c| c.is_ascii_digit() || *c == b'_') {
        i += 1;
    }
    let mut groups = 0;
    while b.get(i) == Some(&b':') {
        i += 1;
        let start = i;
        while b.get(i).is_some_and(u8::is_ascii_digit) && i - start < 2 {
            i += 1;
        }
        match &b[start..i] {
            [d] if d.is_ascii_digit() => {}
            [d1, _] if (b'0'..=b'5').contains(d1) => {}
            _ => return false,
        }
        groups += 1;
    }
    if groups == 0 {
        return false;
    }
    if b.get(i) == Some(&b'.') {
        i += 1;
        while b.get(i).is_some_and(|c| c.is_ascii_digit() || *c == b'_') {
            i += 1;
        }
    }
    i == b.len()
}

/// yaml.v3 `parseTimestamp`: `YYYY-M-D`, optionally followed by `[Tt ]h:m:s[.frac]` and, for the
/// `T`/`t` forms, `Z` or `±hh:mm`.
fn is_timestamp(s: &str) -> bool {
    let b = s.as_bytes();
    if b.len() < 8 || !b[..4].iter().all(u8::is_ascii_digit) || b[4] != b'-' {
        return false;
    }
    let mut i = 5;
    let number = |i: &mut usize, max_len: usize| -> Option<u32> {
        let start = *i;
        while b.get(*i).is_some_and(u8::is_ascii_digit) && *i - start < max_len {
            *i += 1;
        }
        if *i == start {
            return None;
        }
        std::str::from_utf8(&b[start..*i]).ok()?.parse().ok()
    };
    let Some(month) = number(&mut i, 2) else {
        return false;
    };
    if b.get(i) != Some(&b'-') {
        return false;
    }
    i += 1;
    let Some(day) = number(&mut i, 2) else {
        return false;
    };
    if !(1..=12).contains(&month) || !(1..=31).contains(&day) {
        return false;
    }
    if i == b.len() {
        return true;
    }
    let separator = b[i];
    if !matches!(separator, b'T' | b't' | b' ') {
        return false;
    }
    i += 1;
    for (n, max) in [(0, 23), (1, 59), (2, 59)] {
        if n > 0 {
            if b.get(i) != Some(&b':') {
                return false;
            }
            i += 1;
        }
        match number(&mut i, 2) {
            Some(v) if v <= max => {}
            _ => return false,
        }
    }
    if b.get(i) == Some(&b'.') {
        i += 1;
        while b.get(i).is_some_and(u8::is_ascii_digit) {
            i += 1;
        }
    }
    if separator == b' ' {
        return i == b.len();
    }
    match b.get(i) {
        Some(b'Z') => i + 1 == b.len(),
        Some(b'+' | b'-') => {
            let zone = &b[i + 1..];
            zone.len() == 5
                && zone[0].is_ascii_digit()
                && zone[1].is_ascii_digit()
                && zone[2] == b':'
                && zone[3].is_ascii_digit()
                && zone[4].is_ascii_digit()
        }
        _ => false,
    }
}

/// go-yaml's map-key order (yaml.v3 sorter.go `keyList.Less`): rune by rune; letters before
/// non-letters; digit runs compared as numbers, so `a-2 < a-10`.
pub fn natural_order(a: &str, b: &str) -> std::cmp::Ordering {
    use std::cmp::Ordering;
    if a == b {
        return Ordering::Equal;
    }
    if natural_less(a, b) {
        Ordering::Less
    } else {
        Ordering::Greater
    }
}

fn natural_less(a: &str, b: &str) -> bool {
    let ar: Vec<char> = a.chars().collect();
    let br: Vec<char> = b.chars().collect();
    let is_digit = |c: char| c.is_numeric();
    let value = |c: char| i64::from(u32::from(c)) - i64::from(u32::from('0'));
    let mut digits = false;
    let n = ar.len().min(br.len());
    for i in 0..n {
        if ar[i] == br[i] {
            digits = is_digit(ar[i]);
            continue;
        }
        let al = ar[i].is_alphabetic();
        let bl = br[i].is_alphabetic();
        if al && bl {
            return ar[i] < br[i];
        }
        if al || bl {
            return if digits { al } else { bl };
        }
        let (mut an, mut bn): (i64, i64) = (0, 0);
        if ar[i] == '0' || br[i] == '0' {
            let mut j = i;
            while j > 0 && is_digit(ar[j - 1]) {
                j -= 1;
                if ar[j] != '0' {
                    an = 1;
                    bn = 1;
                    break;
                }
            }
        }
        let mut ai = i;
        while ai < ar.len() && is_digit(ar[ai]) {
            an = an.wrapping_mul(10).wrapping_add(value(ar[ai]));
            ai += 1;
        }
        let mut bi = i;
        while bi < br.len() && is_digit(br[bi]) {
            bn = bn.wrapping_mul(10).wrapping_add(value(br[bi]));
            bi += 1;
        }
        if an != bn {
            return an < bn;
        }
        if ai != bi {
            return ai < bi;
        }
        return ar[i] < br[i];
    }
    ar.len() < br.len()
}
