//! A SOPS document as an ordered tree: the order of keys is part of the MAC, so the values Outpost usually parses
//! into (`serde_json::Value`, whose objects are sorted maps) cannot hold it.
//!
//! Both YAML (serde_yaml_ng) and JSON (serde_json) deserialize into [`Node`] through one visitor, which sees map
//! entries in the order they were written. Scalars keep the types SOPS gives them (int, float, bool, string,
//! null), because the MAC hashes each value's text as Go prints that type.

use std::fmt;

use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::Value;

use super::Problem;

/// One value of a SOPS document.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Node {
    Null,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(String),
    Seq(Vec<Node>),
    /// Entries in file order; keys are strings (SOPS refuses others).
    Map(Vec<(String, Node)>),
}

impl Node {
    /// The bytes SOPS feeds into the MAC for a scalar, as Go formats the type it decoded (`sops.ToBytes`):
    /// ints in decimal, floats in the shortest form that reads back the same and never in exponent notation,
    /// booleans as `True`/`False`. `None` for null, maps and lists, which add nothing themselves.
    pub(crate) fn mac_bytes(&self) -> Option<Vec<u8>> {
        match self {
            Node::Str(s) => Some(s.as_bytes().to_vec()),
            Node::Int(i) => Some(i.to_string().into_bytes()),
            Node::Float(f) => Some(go_float(*f).into_bytes()),
            Node::Bool(true) => Some(b"True".to_vec()),
            Node::Bool(false) => Some(b"False".to_vec()),
            Node::Null | Node::Seq(_) | Node::Map(_) => None,
        }
    }

    /// The plain JSON value, for the build stage; `Err` names what JSON cannot hold.
    pub(crate) fn into_json(self) -> Result<Value, Problem> {
        Ok(match self {
            Node::Null => Value::Null,
            Node::Bool(b) => Value::Bool(b),
            Node::Int(i) => Value::from(i),
            Node::Float(f) => serde_json::Number::from_f64(f)
                .map(Value::Number)
                .ok_or_else(|| Problem(format!("the number {} has no JSON form", go_float(f))))?,
            Node::Str(s) => Value::String(s),
            Node::Seq(items) => Value::Array(
                items
                    .into_iter()
                    .map(Node::into_json)
                    .collect::<Result<_, _>>()?,
            ),
            Node::Map(entries) => {
                let mut map = serde_json::Map::new();
                for (k, v) in entries {
                    map.insert(k, v.into_json()?);
                }
                Value::Object(map)
            }
        })
    }

    /// The value at `key` of a map.
    pub(crate) fn get(&self, key: &str) -> Option<&Node> {
        match self {
            Node::Map(entries) => entries.iter().find(|(k, _)| k == key).map(|(_, v)| v),
            _ => None,
        }
    }
}

/// Go's `strconv.FormatFloat(f, 'f', -1, 64)`. Rust's `Display` for f64 is the same shortest round-trip digits
/// without an exponent; only the non-finite values are spelled differently.
pub(crate) fn go_float(f: f64) -> String {
    if f.is_nan() {
        "NaN".into()
    } else if f == f64::INFINITY {
        "+Inf".into()
    } else if f == f64::NEG_INFINITY {
        "-Inf".into()
    } else {
        f.to_string()
    }
}

impl<'de> Deserialize<'de> for Node {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Node, D::Error> {
        deserializer.deserialize_any(NodeVisitor)
    }
}

struct NodeVisitor;

impl<'de> Visitor<'de> for NodeVisitor {
    type Value = Node;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a YAML or JSON value")
    }
    fn visit_bool<E>(self, v: bool) -> Result<Node, E> {
        Ok(Node::Bool(v))
    }
    fn visit_i64<E>(self, v: i64) -> Result<Node, E> {
        Ok(Node::Int(v))
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Node, E> {
        // SOPS decodes integers into Go's int (64 bits): a larger one is an error there too.
        i64::try_from(v)
            .map(Node::Int)
            .map_err(|_| E::custom(format!("the integer {v} is larger than SOPS can hold")))
    }
    fn visit_f64<E>(self, v: f64) -> Result<Node, E> {
        Ok(Node::Float(v))
    }
    fn visit_str<E>(self, v: &str) -> Result<Node, E> {
        Ok(Node::Str(v.to_owned()))
    }
    fn visit_string<E>(self, v: String) -> Result<Node, E> {
        Ok(Node::Str(v))
    }
    fn visit_unit<E>(self) -> Result<Node, E> {
        Ok(Node::Null)
    }
    fn visit_none<E>(self) -> Result<Node, E> {
        Ok(Node::Null)
    }
    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Node, D::Error> {
        Node::deserialize(d)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Node, A::Error> {
        let mut items = Vec::new();
        while let Some(item) = seq.next_element()? {
            items.push(item);
        }
        Ok(Node::Seq(items))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Node, A::Error> {
        let mut entries: Vec<(String, Node)> = Vec::new();
        while let Some(key) = map.next_key::<Node>()? {
            let key = match key {
                Node::Str(s) => s,
                other => {
                    return Err(de::Error::custom(format!(
                    "the key {other:?} is not a string; SOPS only supports string keys (quote it)"
                )))
                }
            };
            if entries.iter().any(|(k, _)| *k == key) {
                return Err(de::Error::custom(format!(
                    "the key {key:?} appears twice in one mapping"
                )));
            }
            let value = map.next_value()?;
            entries.push((key, value));
        }
        Ok(Node::Map(entries))
    }
}

/// Parses every YAML document of `text`, in order.
pub(crate) fn parse_yaml(text: &str) -> Result<Vec<Node>, Problem> {
    let mut docs = Vec::new();
    for doc in serde_yaml_ng::Deserializer::from_str(text) {
        let node = Node::deserialize(doc).map_err(|e| e.to_string())?;
        match node {
            // `---` with nothing after it: SOPS skips such documents too.
            Node::Null => {}
            Node::Map(_) => docs.push(node),
            _ => return Err("a YAML document is not a mapping; SOPS files hold mappings".into()),
        }
    }
    Ok(docs)
}

/// Parses a JSON document (a single object).
pub(crate) fn parse_json(text: &str) -> Result<Node, Problem> {
    match serde_json::from_str::<Node>(text).map_err(|e| e.to_string())? {
        node @ Node::Map(_) => Ok(node),
        _ => Err("the JSON document is not an object".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn yaml_keeps_key_order_and_types() {
        let docs = parse_yaml("b: 1\na: 2.50\nc: true\nd: '3'\ne: ~\nf: [x, 0x10]\n").unwrap();
        let Node::Map(entries) = &docs[0] else {
            panic!("not a map")
        };
        let keys: Vec<&str> = entries.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(keys, ["b", "a", "c", "d", "e", "f"]);
        assert_eq!(entries[0].1, Node::Int(1));
        assert_eq!(entries[1].1.mac_bytes().unwrap(), b"2.5");
        assert_eq!(entries[2].1.mac_bytes().unwrap(), b"True");
        assert_eq!(entries[3].1, Node::Str("3".into()));
        assert_eq!(entries[4].1.mac_bytes(), None);
        assert_eq!(
            entries[5].1,
            Node::Seq(vec![Node::Str("x".into()), Node::Int(16)])
        );
    }

    #[test]
    fn json_keeps_key_order() {
        let node = parse_json(r#"{"z": 1, "a": {"y": 1e3, "b": false}}"#).unwrap();
        let json = serde_json::to_string(&node.clone().into_json().unwrap()).unwrap();
        assert_eq!(json, r#"{"a":{"b":false,"y":1000.0},"z":1}"#);
        let Node::Map(entries) = node else {
            panic!("not a map")
        };
        assert_eq!(entries[0].0, "z");
        let Node::Map(inner) = &entries[1].1 else {
            panic!("not a map")
        };
        assert_eq!(inner[0].0, "y");
        assert_eq!(inner[0].1.mac_bytes().unwrap(), b"1000");
    }

    #[test]
    fn go_float_formatting() {
        assert_eq!(go_float(1.0), "1");
        assert_eq!(go_float(0.1), "0.1");
        assert_eq!(go_float(1e21), "1000000000000000000000");
        assert_eq!(go_float(1.5e-7), "0.00000015");
        assert_eq!(go_float(f64::INFINITY), "+Inf");
        assert_eq!(go_float(f64::NEG_INFINITY), "-Inf");
        assert_eq!(go_float(f64::NAN), "NaN");
    }

    #[test]
    fn duplicate_and_non_string_keys_are_refused() {
        let err = parse_yaml("a: 1\na: 2\n").unwrap_err();
        assert!(err.contains("\"a\" appears twice"), "{err}");
        let err = parse_yaml("1: x\n").unwrap_err();
        assert!(err.contains("not a string"), "{err}");
        let err = parse_yaml("- a\n").unwrap_err();
        assert!(err.contains("not a mapping"), "{err}");
    }
}
