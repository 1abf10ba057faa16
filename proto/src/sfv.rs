//! RFC 8941 structured field values, as RFC 9421 and RFC 9530 use them, through the `sfv` crate.
//!
//! `Signature-Input`, `Signature` and `Content-Digest` are all structured-field *dictionaries*. The crate does
//! all parsing and serialising; this module only pins it to RFC 8941 and gives its errors the shape the
//! callers' error enums need. Its types are re-exported so the hub needs no direct dependency on it.
//!
//! Invariants:
//! - every field is parsed as RFC 8941, never RFC 9651: dates (`@1700000000`) and display strings (`%"…"`)
//!   are errors, as RFC 9421 and RFC 9530 define their fields over RFC 8941;
//! - serialising gives the canonical form, so `parse` then `serialize` is stable. RFC 9421 relies on this: the
//!   verifier rebuilds the `@signature-params` line from the parsed `Signature-Input` member;
//! - byte sequences are read without `=` padding and with non-zero pad bits, as §4.2.7 asks of parsers, and
//!   always written canonically;
//! - values are checked when they are built ([`string`], [`integer`], [`key`]), so a
//!   parsed or built dictionary always serialises.

pub use ::sfv::{
    BareItem, Dictionary, InnerList, Integer, Item, Key, ListEntry, Parameters, String, Token,
};
use ::sfv::{FieldType as _, ListSerializer, Parser, Version};

/// Parses a whole field value. Several field lines of the same name must be joined with `", "` first.
pub fn parse_dictionary(input: &str) -> Result<Dictionary, ParseError> {
    Parser::new(input)
        .with_version(Version::Rfc8941)
        .parse::<Dictionary>()
        .map_err(|error| ParseError {
            offset: error.index().unwrap_or(input.len()),
            // The alternate form leaves out the crate's own " at index N", which `offset` carries.
            problem: format!("{error:#}"),
        })
}

/// The canonical serialisation (RFC 8941 §4.1.2); an empty dictionary is the empty string, as a field value
/// with no members.
pub fn serialize_dictionary(dictionary: &Dictionary) -> std::string::String {
    dictionary.serialize().unwrap_or_default()
}

/// The canonical serialisation of one inner list with its parameters (§4.1.1.1), e.g.
/// `("@method" "@path");created=1`: the value of RFC 9421's `@signature-params` line.
pub fn serialize_inner_list(list: &InnerList) -> std::string::String {
    let mut out = ListSerializer::new();
    let mut inner = out.inner_list();
    inner.items(&list.items);
    // The parameter serializer writes into `out` as it goes; what it returns is only for chaining.
    let _ = inner.finish().parameters(&list.params);
    out.finish().unwrap_or_default()
}

/// Where and why a field value is not a valid RFC 8941 structured field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("malformed structured field at byte {offset}: {problem}")]
pub struct ParseError {
    pub offset: usize,
    pub problem: std::string::String,
}

/// A value Outpost was asked to sign that has no structured-field form.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{value:?} cannot be an sf-{kind}: {problem}")]
pub struct SerializeError {
    pub kind: &'static str,
    pub value: std::string::String,
    pub problem: std::string::String,
}

/// An sf-string, e.g. a signature's `keyid`: printable ASCII only.
pub fn string(value: &str) -> Result<String, SerializeError> {
    String::from_string(value.to_owned()).map_err(|(error, value)| SerializeError {
        kind: "string (printable ASCII, 0x20-0x7E)",
        value,
        problem: format!("{error:#}"),
    })
}

/// A dictionary or parameter key: lowercase letters, digits, `_`, `-`, `.`, `*`, starting with a letter or `*`.
pub fn key(value: &str) -> Result<Key, SerializeError> {
    Key::from_string(value.to_owned()).map_err(|(error, value)| SerializeError {
        kind: "key (lowercase letters, digits, '_', '-', '.', '*', starting with a letter or '*')",
        value,
        problem: format!("{error:#}"),
    })
}

/// An sf-integer: at most 15 decimal digits.
pub fn integer(value: i64) -> Result<Integer, SerializeError> {
    Integer::try_from(value).map_err(|error| SerializeError {
        kind: "integer (at most 15 digits)",
        value: value.to_string(),
        problem: format!("{error:#}"),
    })
}

/// One bare item's serialisation (§4.1.3): RFC 9421 names each base line by its component's sf-string form.
pub fn serialize_bare_item(value: &BareItem) -> std::string::String {
    ::sfv::ItemSerializer::new().bare_item(value).finish()
}
