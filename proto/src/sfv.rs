//! RFC 8941 structured field values: the subset RFC 9421 and RFC 9530 need.
//!
//! `Signature-Input`, `Signature` and `Content-Digest` are all structured-field *dictionaries*: members hold
//! an item or an inner list of items, and every item or list may carry parameters. Bare items are integers,
//! decimals, strings, tokens, byte sequences and booleans (dates and display strings from RFC 9651 are not
//! used by these headers and are rejected).
//!
//! Invariants:
//! - parsing follows RFC 8941 §4.2 step by step, and any deviation is a [`ParseError`] with the byte offset;
//!   no input makes it panic, and nothing it accepts is silently reinterpreted;
//! - serialising follows §4.1, so `parse` then `serialize` gives the canonical form. RFC 9421 relies on this:
//!   the verifier rebuilds the `@signature-params` line from the parsed `Signature-Input` member.

use crate::b64::{self, Engine as _};

/// The largest magnitude an sf-integer may have (15 decimal digits).
const MAX_INTEGER: i64 = 999_999_999_999_999;
/// The largest integer part an sf-decimal may have (12 decimal digits), in thousandths.
const MAX_DECIMAL_THOUSANDTHS: i64 = 999_999_999_999_999;

/// A bare item (RFC 8941 §3.3).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BareItem {
    Integer(i64),
    Decimal(Decimal),
    /// Printable ASCII only; quotes and backslashes are escaped on the wire.
    String(String),
    Token(String),
    ByteSequence(Vec<u8>),
    Boolean(bool),
}

/// An sf-decimal, kept as thousandths so that it serialises back exactly (the format allows at most three
/// fractional digits, so no precision is lost).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decimal {
    pub thousandths: i64,
}

/// Ordered parameters; a key set twice keeps its first position and its last value, as §4.2.3.2 says.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Parameters(Vec<(String, BareItem)>);

impl Parameters {
    /// The value of `key`, if present.
    pub fn get(&self, key: &str) -> Option<&BareItem> {
        self.0.iter().find(|(k, _)| k == key).map(|(_, v)| v)
    }

    /// Sets `key`, replacing the value in place when it is already present.
    pub fn insert(&mut self, key: impl Into<String>, value: BareItem) {
        let key = key.into();
        match self.0.iter_mut().find(|(k, _)| *k == key) {
            Some(slot) => slot.1 = value,
            None => self.0.push((key, value)),
        }
    }

    /// The parameters in wire order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &BareItem)> {
        self.0.iter().map(|(k, v)| (k.as_str(), v))
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// An item with its parameters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Item {
    pub value: BareItem,
    pub params: Parameters,
}

impl Item {
    pub fn new(value: BareItem) -> Self {
        Item {
            value,
            params: Parameters::default(),
        }
    }
}

/// A parenthesised list of items, with parameters of its own.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct InnerList {
    pub items: Vec<Item>,
    pub params: Parameters,
}

impl InnerList {
    /// The canonical serialisation (§4.1.1.1), e.g. `("@method" "@path");created=1`.
    pub fn serialize(&self) -> Result<String, SerializeError> {
        let mut out = String::new();
        write_inner_list(&mut out, self)?;
        Ok(out)
    }
}

/// A dictionary member's value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Member {
    Item(Item),
    InnerList(InnerList),
}

/// An ordered dictionary (§3.2). Keys are unique; see [`Parameters`] for how duplicates resolve.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Dictionary(Vec<(String, Member)>);

impl Dictionary {
    /// Parses a whole field value. Several field lines of the same name must be joined with `", "` first.
    pub fn parse(input: &str) -> Result<Self, ParseError> {
        let mut parser = Parser {
            input: input.as_bytes(),
            pos: 0,
        };
        if let Some(offset) = input.bytes().position(|b| !b.is_ascii()) {
            return Err(ParseError {
                offset,
                problem: "non-ASCII character",
            });
        }
        parser.skip_sp();
        let dictionary = parser.dictionary()?;
        parser.skip_sp();
        if parser.pos != parser.input.len() {
            return Err(parser.error("unexpected character after the last member"));
        }
        Ok(dictionary)
    }

    pub fn get(&self, key: &str) -> Option<&Member> {
        self.0.iter().find(|(k, _)| k == key).map(|(_, v)| v)
    }

    /// Sets `key`, replacing the member in place when it is already present.
    pub fn insert(&mut self, key: impl Into<String>, member: Member) {
        let key = key.into();
        match self.0.iter_mut().find(|(k, _)| *k == key) {
            Some(slot) => slot.1 = member,
            None => self.0.push((key, member)),
        }
    }

    /// The member keys in wire order.
    pub fn keys(&self) -> impl Iterator<Item = &str> {
        self.0.iter().map(|(k, _)| k.as_str())
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The canonical serialisation (§4.1.2).
    pub fn serialize(&self) -> Result<String, SerializeError> {
        let mut out = String::new();
        for (index, (key, member)) in self.0.iter().enumerate() {
            if index > 0 {
                out.push_str(", ");
            }
            write_key(&mut out, key)?;
            match member {
                Member::Item(Item {
                    value: BareItem::Boolean(true),
                    params,
                }) => write_params(&mut out, params)?,
                Member::Item(item) => {
                    out.push('=');
                    write_item(&mut out, item)?;
                }
                Member::InnerList(list) => {
                    out.push('=');
                    write_inner_list(&mut out, list)?;
                }
            }
        }
        Ok(out)
    }
}

/// Where and why a field value is not a valid structured field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("malformed structured field at byte {offset}: {problem}")]
pub struct ParseError {
    pub offset: usize,
    pub problem: &'static str,
}

/// A value that has no structured-field serialisation.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SerializeError {
    #[error("{0:?} is not a structured-field key: use lowercase letters, digits, '_', '-', '.', '*', starting with a letter or '*'")]
    Key(String),
    #[error("{0:?} cannot be an sf-string: only printable ASCII (0x20-0x7E) is allowed")]
    String(String),
    #[error("{0:?} is not an sf-token")]
    Token(String),
    #[error("{0} is outside the sf-integer range of ±999,999,999,999,999")]
    Integer(i64),
    #[error("decimal {0} thousandths is outside the sf-decimal range (12 integer digits)")]
    Decimal(i64),
}

struct Parser<'a> {
    input: &'a [u8],
    pos: usize,
}

impl Parser<'_> {
    fn error(&self, problem: &'static str) -> ParseError {
        ParseError {
            offset: self.pos,
            problem,
        }
    }

    fn peek(&self) -> Option<u8> {
        self.input.get(self.pos).copied()
    }

    fn next(&mut self) -> Option<u8> {
        let byte = self.peek()?;
        self.pos += 1;
        Some(byte)
    }

    fn skip_sp(&mut self) {
        while self.peek() == Some(b' ') {
            self.pos += 1;
        }
    }

    fn skip_ows(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t')) {
            self.pos += 1;
        }
    }

    /// §4.2.2
    fn dictionary(&mut self) -> Result<Dictionary, ParseError> {
        let mut dictionary = Dictionary::default();
        while self.pos < self.input.len() {
            let key = self.key()?;
            let member = if self.peek() == Some(b'=') {
                self.pos += 1;
                self.item_or_inner_list()?
            } else {
                Member::Item(Item {
                    value: BareItem::Boolean(true),
                    params: self.parameters()?,
                })
            };
            dictionary.insert(key, member);
            self.skip_ows();
            if self.pos == self.input.len() {
                break;
            }
            if self.next() != Some(b',') {
                self.pos -= 1;
                return Err(self.error("expected ',' between dictionary members"));
            }
            self.skip_ows();
            if self.pos == self.input.len() {
                return Err(self.error("trailing ',' after the last dictionary member"));
            }
        }
        Ok(dictionary)
    }

    fn item_or_inner_list(&mut self) -> Result<Member, ParseError> {
        if self.peek() == Some(b'(') {
            Ok(Member::InnerList(self.inner_list()?))
        } else {
            Ok(Member::Item(self.item()?))
        }
    }

    /// §4.2.1.2
    fn inner_list(&mut self) -> Result<InnerList, ParseError> {
        self.pos += 1; // the '(' the caller saw
        let mut items = Vec::new();
        loop {
            self.skip_sp();
            match self.peek() {
                None => return Err(self.error("inner list is missing its closing ')'")),
                Some(b')') => {
                    self.pos += 1;
                    let params = self.parameters()?;
                    return Ok(InnerList { items, params });
                }
                Some(_) => {
                    items.push(self.item()?);
                    if !matches!(self.peek(), Some(b' ' | b')')) {
                        return Err(self.error("expected ' ' or ')' after an inner-list item"));
                    }
                }
            }
        }
    }

    fn item(&mut self) -> Result<Item, ParseError> {
        let value = self.bare_item()?;
        let params = self.parameters()?;
        Ok(Item { value, params })
    }

    /// §4.2.3.2
    fn parameters(&mut self) -> Result<Parameters, ParseError> {
        let mut params = Parameters::default();
        while self.peek() == Some(b';') {
            self.pos += 1;
            self.skip_sp();
            let key = self.key()?;
            let value = if self.peek() == Some(b'=') {
                self.pos += 1;
                self.bare_item()?
            } else {
                BareItem::Boolean(true)
            };
            params.insert(key, value);
        }
        Ok(params)
    }

    /// §4.2.3.3
    fn key(&mut self) -> Result<String, ParseError> {
        let start = self.pos;
        match self.peek() {
            Some(b'a'..=b'z' | b'*') => self.pos += 1,
            _ => return Err(self.error("expected a key (starting with a lowercase letter or '*')")),
        }
        while matches!(
            self.peek(),
            Some(b'a'..=b'z' | b'0'..=b'9' | b'_' | b'-' | b'.' | b'*')
        ) {
            self.pos += 1;
        }
        Ok(self.text_since(start))
    }

    /// The ASCII text from `start` to the cursor; the input was checked to be ASCII up front.
    fn text_since(&self, start: usize) -> String {
        self.input
            .get(start..self.pos)
            .map(|bytes| String::from_utf8_lossy(bytes).into_owned())
            .unwrap_or_default()
    }

    /// §4.2.3.1
    fn bare_item(&mut self) -> Result<BareItem, ParseError> {
        match self.peek() {
            Some(b'-' | b'0'..=b'9') => self.number(),
            Some(b'"') => self.string(),
            Some(b':') => self.byte_sequence(),
            Some(b'?') => self.boolean(),
            Some(b'*' | b'A'..=b'Z' | b'a'..=b'z') => Ok(self.token()),
            None => Err(self.error("expected a value, found the end of the field")),
            Some(_) => {
                Err(self.error("expected a value (number, \"string\", token, :bytes: or ?boolean)"))
            }
        }
    }

    /// §4.2.4
    fn number(&mut self) -> Result<BareItem, ParseError> {
        let negative = self.peek() == Some(b'-');
        if negative {
            self.pos += 1;
        }
        if !matches!(self.peek(), Some(b'0'..=b'9')) {
            return Err(self.error("expected a digit"));
        }
        let start = self.pos;
        let mut dot: Option<usize> = None;
        while let Some(byte) = self.peek() {
            let length = self.pos - start;
            match byte {
                b'0'..=b'9' => {}
                b'.' if dot.is_none() => {
                    if length > 12 {
                        return Err(self.error("decimal has more than 12 integer digits"));
                    }
                    dot = Some(self.pos);
                }
                _ => break,
            }
            if dot.is_none() && length >= 15 {
                return Err(self.error("integer has more than 15 digits"));
            }
            if dot.is_some() && length >= 16 {
                return Err(self.error("decimal is longer than 16 characters"));
            }
            self.pos += 1;
        }
        let digits = self.input.get(start..self.pos).unwrap_or_default();
        let sign = if negative { -1 } else { 1 };
        match dot {
            None => Ok(BareItem::Integer(sign * ascii_digits_value(digits))),
            Some(dot) => {
                let fraction_len = self.pos - dot - 1;
                if fraction_len == 0 {
                    return Err(self.error("decimal ends with '.'"));
                }
                if fraction_len > 3 {
                    return Err(self.error("decimal has more than 3 fractional digits"));
                }
                let (whole, fraction) = digits.split_at(dot - start);
                let fraction = fraction.get(1..).unwrap_or_default();
                let scale = [1000, 100, 10, 1].get(fraction_len).copied().unwrap_or(1);
                let thousandths =
                    ascii_digits_value(whole) * 1000 + ascii_digits_value(fraction) * scale;
                Ok(BareItem::Decimal(Decimal {
                    thousandths: sign * thousandths,
                }))
            }
        }
    }

    /// §4.2.5
    fn string(&mut self) -> Result<BareItem, ParseError> {
        self.pos += 1; // the opening quote
        let mut out = String::new();
        loop {
            match self.next() {
                None => return Err(self.error("string is missing its closing '\"'")),
                Some(b'\\') => {
                    let Some(escaped @ (b'"' | b'\\')) = self.peek() else {
                        return Err(self.error("only '\\\"' and '\\\\' may be escaped in a string"));
                    };
                    self.pos += 1;
                    out.push(char::from(escaped));
                }
                Some(b'"') => return Ok(BareItem::String(out)),
                Some(byte @ 0x20..=0x7e) => out.push(char::from(byte)),
                Some(_) => {
                    self.pos -= 1;
                    return Err(self.error("control character in a string"));
                }
            }
        }
    }

    /// §4.2.6; the caller checked the first character.
    fn token(&mut self) -> BareItem {
        let start = self.pos;
        self.pos += 1;
        while self
            .peek()
            .is_some_and(|b| is_tchar(b) || b == b':' || b == b'/')
        {
            self.pos += 1;
        }
        BareItem::Token(self.text_since(start))
    }

    /// §4.2.7
    fn byte_sequence(&mut self) -> Result<BareItem, ParseError> {
        self.pos += 1; // the opening ':'
        let start = self.pos;
        while let Some(byte) = self.peek() {
            match byte {
                b':' => break,
                b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'+' | b'/' | b'=' => self.pos += 1,
                _ => return Err(self.error("invalid character in a byte sequence")),
            }
        }
        if self.peek() != Some(b':') {
            return Err(self.error("byte sequence is missing its closing ':'"));
        }
        let body = self.input.get(start..self.pos).unwrap_or_default();
        let decoded = b64::LENIENT.decode(body).map_err(|_| ParseError {
            offset: start,
            problem: "byte sequence is not valid base64",
        })?;
        self.pos += 1;
        Ok(BareItem::ByteSequence(decoded))
    }

    /// §4.2.8
    fn boolean(&mut self) -> Result<BareItem, ParseError> {
        self.pos += 1; // the '?'
        match self.next() {
            Some(b'1') => Ok(BareItem::Boolean(true)),
            Some(b'0') => Ok(BareItem::Boolean(false)),
            _ => {
                self.pos -= 1;
                Err(self.error("a boolean is ?0 or ?1"))
            }
        }
    }
}

/// The value of at most 15 ASCII digits (the parser bounds the length, so this cannot overflow an i64).
fn ascii_digits_value(digits: &[u8]) -> i64 {
    digits
        .iter()
        .fold(0_i64, |acc, d| acc * 10 + i64::from(d - b'0'))
}

fn is_tchar(byte: u8) -> bool {
    byte.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&byte)
}

fn write_key(out: &mut String, key: &str) -> Result<(), SerializeError> {
    let mut bytes = key.bytes();
    let first_ok = matches!(bytes.next(), Some(b'a'..=b'z' | b'*'));
    if !first_ok
        || !bytes.all(|b| matches!(b, b'a'..=b'z' | b'0'..=b'9' | b'_' | b'-' | b'.' | b'*'))
    {
        return Err(SerializeError::Key(key.to_owned()));
    }
    out.push_str(key);
    Ok(())
}

fn write_params(out: &mut String, params: &Parameters) -> Result<(), SerializeError> {
    for (key, value) in params.iter() {
        out.push(';');
        write_key(out, key)?;
        if *value != BareItem::Boolean(true) {
            out.push('=');
            write_bare_item(out, value)?;
        }
    }
    Ok(())
}

fn write_item(out: &mut String, item: &Item) -> Result<(), SerializeError> {
    write_bare_item(out, &item.value)?;
    write_params(out, &item.params)
}

fn write_inner_list(out: &mut String, list: &InnerList) -> Result<(), SerializeError> {
    out.push('(');
    for (index, item) in list.items.iter().enumerate() {
        if index > 0 {
            out.push(' ');
        }
        write_item(out, item)?;
    }
    out.push(')');
    write_params(out, &list.params)
}

/// Serialises one bare item (§4.1.3); public because RFC 9421 names components by their sf-string form.
pub fn serialize_bare_item(value: &BareItem) -> Result<String, SerializeError> {
    let mut out = String::new();
    write_bare_item(&mut out, value)?;
    Ok(out)
}

fn write_bare_item(out: &mut String, value: &BareItem) -> Result<(), SerializeError> {
    match value {
        BareItem::Integer(n) => {
            if !(-MAX_INTEGER..=MAX_INTEGER).contains(n) {
                return Err(SerializeError::Integer(*n));
            }
            out.push_str(&n.to_string());
        }
        BareItem::Decimal(Decimal { thousandths }) => {
            if !(-MAX_DECIMAL_THOUSANDTHS..=MAX_DECIMAL_THOUSANDTHS).contains(thousandths) {
                return Err(SerializeError::Decimal(*thousandths));
            }
            if *thousandths < 0 {
                out.push('-');
            }
            let magnitude = thousandths.unsigned_abs();
            let fraction = format!("{:03}", magnitude % 1000);
            let fraction = fraction.trim_end_matches('0');
            let fraction = if fraction.is_empty() { "0" } else { fraction };
            out.push_str(&(magnitude / 1000).to_string());
            out.push('.');
            out.push_str(fraction);
        }
        BareItem::String(text) => {
            if !text.bytes().all(|b| (0x20..=0x7e).contains(&b)) {
                return Err(SerializeError::String(text.clone()));
            }
            out.push('"');
            for ch in text.chars() {
                if ch == '"' || ch == '\\' {
                    out.push('\\');
                }
                out.push(ch);
            }
            out.push('"');
        }
        BareItem::Token(token) => {
            let mut bytes = token.bytes();
            let first_ok = bytes
                .next()
                .is_some_and(|b| b.is_ascii_alphabetic() || b == b'*');
            if !first_ok || !bytes.all(|b| is_tchar(b) || b == b':' || b == b'/') {
                return Err(SerializeError::Token(token.clone()));
            }
            out.push_str(token);
        }
        BareItem::ByteSequence(bytes) => {
            out.push(':');
            out.push_str(&b64::STANDARD.encode(bytes));
            out.push(':');
        }
        BareItem::Boolean(flag) => out.push_str(if *flag { "?1" } else { "?0" }),
    }
    Ok(())
}
