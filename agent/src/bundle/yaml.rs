//! Parsing one manifest file into JSON values within a memory budget: the one place every caller (plain
//! sources, kustomizations, patches) turns YAML or JSON text into values.
//!
//! A parsed value costs far more memory than its text: every node takes a 32-byte `Value` slot, every mapping a
//! 640-byte B-tree leaf from its first key, while `{a: 1}` is three nodes in six bytes of text and an alias
//! (`*a`) copies a whole subtree in two. So the size limit on files alone does not bound memory. Before any value
//! is built, a streaming pass over the parser's events (its memory: one entry per open collection and one per
//! anchor) estimates, from above, what the values will take, aliases expanded, and refuses the file as soon as
//! the estimate passes [`MEMORY_PER_BYTE`] times the file's size plus [`MIN_MEMORY`]. It also refuses nesting
//! deeper than [`MAX_DEPTH`], and more documents holding anything than the objects the bundle may still take
//! (`max_objects`): counted as they are read, not after the file is parsed.
//!
//! Only then is the file deserialized, by serde-saphyr, which streams parser events into the values without an
//! intermediate tree (serde_yaml_ng buffered every event of a document first, ~200 bytes per node on top). What
//! parsing a file can cost is then bounded by its size; README "Memory bound on any input" states the bound, and
//! the `memory` suite measures it on hostile files.

use serde_json::Value;
use serde_saphyr::granit_parser::{ErrorKind, Event, Parser, ScalarStyle};

use super::BuildError;

/// Estimated bytes of values per byte of text a file may cost. Real manifests measure 3-10, compact flow-style
/// test manifests up to 29 (many small mappings are the costly kind); hostile ones are refused at this line,
/// whatever their shape.
pub const MEMORY_PER_BYTE: usize = 32;
/// What every file may cost whatever its size, so that small files never meet the budget.
pub const MIN_MEMORY: usize = 1024 * 1024;
/// Deeper than any Kubernetes object (a CRD's schema nests about 40 levels); serde_yaml_ng's limit was 128.
pub const MAX_DEPTH: usize = 128;
/// A node's estimated cost besides its text: its `Value` slot, room for its container to grow, allocator
/// overhead.
const NODE_COST: usize = 64;
/// A mapping's first B-tree leaf (11 keys and values) as glibc rounds it.
const MAPPING_COST: usize = 640;
/// A sequence's first allocation: a vector grows to room for 4 values at once.
const SEQUENCE_COST: usize = 4 * 32;

/// The estimated heap bytes of a scalar's string: glibc's 16-byte chunks with their header.
fn text_cost(len: usize) -> usize {
    if len == 0 {
        0
    } else {
        (len + 8).div_ceil(16) * 16
    }
}

/// What one file may cost.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Budget {
    pub max_memory: usize,
    pub max_depth: usize,
    pub max_documents: usize,
}

impl Budget {
    /// The budget of a file of `len` bytes in a bundle that may still take `objects_left` objects.
    pub fn for_file(len: usize, objects_left: usize) -> Budget {
        Budget {
            max_memory: len
                .saturating_mul(MEMORY_PER_BYTE)
                .saturating_add(MIN_MEMORY),
            max_depth: MAX_DEPTH,
            max_documents: objects_left,
        }
    }
}

/// What the scan found, aliases expanded.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Cost {
    pub nodes: usize,
    /// Estimated heap bytes of the values, from above.
    pub memory: usize,
    pub depth: usize,
    pub documents: usize,
}

/// What a mapping that names one key twice means.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RepeatedKeys {
    /// The last value wins: how plain manifests have always been read (and how kubectl reads them).
    LastWins,
    /// Refused, naming the line: how kustomize reads the resource files of a build.
    Refuse,
}

/// Parses every document of a file (JSON when it is named `*.json`); empty documents are skipped.
pub fn parse_documents(
    path: &str,
    text: &str,
    objects_left: usize,
) -> Result<Vec<Value>, BuildError> {
    parse_documents_with(path, text, objects_left, RepeatedKeys::LastWins)
}

/// [`parse_documents`], saying what a repeated mapping key means.
pub fn parse_documents_with(
    path: &str,
    text: &str,
    objects_left: usize,
    repeated: RepeatedKeys,
) -> Result<Vec<Value>, BuildError> {
    let budget = Budget::for_file(text.len(), objects_left);
    if path.to_ascii_lowercase().ends_with(".json") {
        // JSON is YAML too: the same scan bounds it before serde_json builds anything. Malformed JSON is
        // reported as serde_json sees it, which names JSON's own terms.
        let json_error = |e: serde_json::Error| BuildError::Json {
            file: path.to_string(),
            line: e.line(),
            column: e.column(),
            message: e.to_string(),
        };
        match scan(path, &yaml_printable(text), &budget) {
            Err(e @ BuildError::Yaml { .. }) => {
                serde_json::from_str::<serde::de::IgnoredAny>(text).map_err(json_error)?;
                return Err(e);
            }
            Err(e) => return Err(e),
            Ok(_) => {}
        }
        let value: Value = serde_json::from_str(text).map_err(json_error)?;
        return Ok(vec![value]);
    }
    let text = super::octal::rewrite(text);
    scan(path, &text, &budget)?;
    let mut options = options(&budget);
    if repeated == RepeatedKeys::Refuse {
        options.duplicate_keys = serde_saphyr::DuplicateKeyPolicy::Error;
    }
    let docs: Vec<Value> =
        serde_saphyr::from_multiple_with_options(&text, options).map_err(|e| {
            let at = e
                .location()
                .map(|l| format!(", line {}, column {}", l.line(), l.column()))
                .unwrap_or_default();
            BuildError::Yaml {
                file: path.to_string(),
                at,
                message: first_line(&e.to_string()),
            }
        })?;
    Ok(docs.into_iter().filter(|d| !d.is_null()).collect())
}

/// JSON text with the characters JSON strings may hold raw but YAML may not (DEL, the C1 controls other than
/// NEL, U+FFFE and U+FFFF) replaced by printable ones of the same UTF-8 length, for the scan only: JSON allows
/// them only inside strings, so the replacement changes no structure and no cost, and serde_json then reads the
/// original text.
pub fn yaml_printable(text: &str) -> std::borrow::Cow<'_, str> {
    let forbidden = |c: char| matches!(c, '\u{7f}' | '\u{80}'..='\u{84}' | '\u{86}'..='\u{9f}' | '\u{fffe}' | '\u{ffff}');
    if !text.contains(forbidden) {
        return std::borrow::Cow::Borrowed(text);
    }
    text.chars()
        .map(|c| match c {
            c if !forbidden(c) => c,
            '\u{7f}' => '_',
            c if c.len_utf8() == 2 => '\u{e9}',
            _ => '\u{20ac}',
        })
        .collect::<String>()
        .into()
}

/// Read the way serde_yaml_ng (and so earlier Outpost releases) read manifests: YAML 1.2 booleans only,
/// `0755` and `1_000` stay strings (the octal rewrite already turned block-style modes into numbers), a
/// repeated key keeps its last value, `<<` is an ordinary key. The budget here is a second fence behind
/// [`scan`], set no tighter than it.
fn options(budget: &Budget) -> serde_saphyr::Options {
    let mut options = serde_saphyr::Options::default();
    let mut limits = serde_saphyr::Budget::default();
    let nodes = budget.max_memory / NODE_COST;
    limits.max_nodes = nodes;
    limits.max_events = nodes.saturating_mul(2).saturating_add(16);
    limits.max_depth = budget.max_depth;
    limits.max_documents = budget.max_documents.saturating_add(nodes);
    limits.max_total_scalar_bytes = budget.max_memory;
    limits.max_aliases = nodes;
    limits.max_anchors = nodes;
    limits.max_recorded_anchor_events = nodes.saturating_mul(2);
    limits.max_recorded_anchor_bytes = budget.max_memory;
    // The scan counts what every alias expands to; a ratio heuristic would refuse honest files it accepted.
    limits.enforce_alias_anchor_ratio = false;
    options.budget = Some(limits);
    // Replayed events include the ends of collections: up to two per node the scan counted.
    options.alias_limits.max_total_replayed_events = nodes.saturating_mul(2);
    options.duplicate_keys = serde_saphyr::DuplicateKeyPolicy::PassThrough;
    options.merge_keys = serde_saphyr::MergeKeyPolicy::AsOrdinary;
    options.strict_booleans = true;
    options.leading_zero_numbers_as_strings = true;
    options.underscored_numbers_as_strings = true;
    options.with_snippet = false;
    options.emit_comments = false;
    options
}

/// Walks the parser's events once, without building anything, and refuses the file as soon as it exceeds
/// `budget`. Memory: one entry per open collection and one per anchor.
pub fn scan(path: &str, text: &str, budget: &Budget) -> Result<Cost, BuildError> {
    let over = |message: String| BuildError::Budget {
        file: path.to_string(),
        message,
    };
    let mut cost = Cost::default();
    // Per open collection: its anchor id (0: none) and the nodes and memory counted when it opened.
    let mut open: Vec<(usize, usize, usize)> = Vec::new();
    // Per anchor id: the nodes and memory one alias of it expands to.
    let mut anchors: std::collections::HashMap<usize, (usize, usize)> = Default::default();
    let mut document_counted = false;
    // The scanner keeps its own nesting limits and meets them before the events reach the check below.
    let mut parser_options = serde_saphyr::granit_parser::Options::default();
    parser_options.flow_nesting_limit = budget.max_depth;
    parser_options.block_nesting_limit = budget.max_depth;
    for item in Parser::new_from_str_with_options(text, parser_options) {
        let (event, span) = item.map_err(|e| {
            if matches!(e.kind(), ErrorKind::RecursionLimitExceeded) {
                return too_deep(path, budget.max_depth, e.marker().line());
            }
            BuildError::Yaml {
                file: path.to_string(),
                at: format!(
                    ", line {}, column {}",
                    e.marker().line(),
                    e.marker().col() + 1
                ),
                message: e.to_string(),
            }
        })?;
        // A document counts once it holds a collection or a value; an empty one parses as a null scalar.
        let holds_something = match &event {
            Event::Scalar(value, style, _, tag) => {
                tag.is_some()
                    || *style != ScalarStyle::Plain
                    || !matches!(value.as_ref(), "" | "~" | "null" | "Null" | "NULL")
            }
            Event::SequenceStart(..) | Event::MappingStart(..) | Event::Alias(_) => true,
            _ => false,
        };
        if holds_something && !document_counted {
            document_counted = true;
            cost.documents += 1;
            if cost.documents > budget.max_documents {
                return Err(BuildError::TooManyObjects {
                    limit: budget.max_documents,
                });
            }
        }
        let (nodes, memory) = match &event {
            Event::Scalar(value, _, anchor, _) => {
                let memory = NODE_COST + text_cost(value.len());
                if *anchor != 0 {
                    anchors.insert(*anchor, (1, memory));
                }
                (1, memory)
            }
            Event::SequenceStart(_, anchor, _) | Event::MappingStart(_, anchor, _) => {
                open.push((*anchor, cost.nodes, cost.memory));
                if open.len() > budget.max_depth {
                    return Err(too_deep(path, budget.max_depth, span.start.line()));
                }
                cost.depth = cost.depth.max(open.len());
                match event {
                    Event::MappingStart(..) => (1, NODE_COST + MAPPING_COST),
                    _ => (1, NODE_COST + SEQUENCE_COST),
                }
            }
            Event::SequenceEnd | Event::MappingEnd => {
                if let Some((anchor, nodes, memory)) = open.pop() {
                    if anchor != 0 {
                        anchors.insert(anchor, (cost.nodes - nodes, cost.memory - memory));
                    }
                }
                (0, 0)
            }
            Event::Alias(anchor) => anchors.get(anchor).copied().unwrap_or((1, NODE_COST)),
            Event::DocumentStart(..) => {
                document_counted = false;
                (0, 0)
            }
            _ => (0, 0),
        };
        cost.nodes = cost.nodes.saturating_add(nodes);
        cost.memory = cost.memory.saturating_add(memory);
        if cost.memory > budget.max_memory {
            return Err(over(format!(
                "by line {} its values would take more than {} MiB of memory (aliases expanded) for {} bytes of text; a file may take {MEMORY_PER_BYTE} times its size plus {} MiB, which bounds what parsing it costs: split the file, or avoid aliases that repeat large parts",
                span.start.line(),
                budget.max_memory >> 20,
                text.len(),
                MIN_MEMORY >> 20
            )));
        }
    }
    Ok(cost)
}

fn too_deep(path: &str, max_depth: usize, line: usize) -> BuildError {
    BuildError::Budget {
        file: path.to_string(),
        message: format!(
            "nested more than {max_depth} levels deep (line {line}); no Kubernetes object needs that many"
        ),
    }
}

fn first_line(message: &str) -> String {
    message.lines().next().unwrap_or_default().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cost(text: &str) -> Result<Cost, BuildError> {
        scan("f.yaml", text, &Budget::for_file(text.len(), 100))
    }

    #[test]
    fn aliases_count_as_what_they_expand_to() {
        let c = cost("a: &a [1, 2, 3]\nb: [*a, *a]\n").unwrap();
        // mapping, a, seq + 3, b, seq, 2 x 4
        assert_eq!(c.nodes, 1 + 1 + 4 + 1 + 1 + 8);
        assert_eq!(c.depth, 2);
        let seq = 4 * NODE_COST + SEQUENCE_COST + 3 * text_cost(1);
        assert_eq!(
            c.memory,
            NODE_COST
                + MAPPING_COST
                + 2 * (NODE_COST + text_cost(1))
                + NODE_COST
                + SEQUENCE_COST
                + 3 * seq
        );
    }

    #[test]
    fn billion_laughs_is_refused_by_arithmetic_not_by_expanding() {
        let mut text = String::from("a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n");
        for i in 1..10 {
            let prev = format!("*a{}", i - 1);
            text.push_str(&format!("a{i}: &a{i} [{}]\n", vec![prev; 10].join(", ")));
        }
        let err = cost(&text).unwrap_err();
        assert!(
            matches!(&err, BuildError::Budget { message, .. } if message.contains("aliases expanded")),
            "{err}"
        );
    }

    #[test]
    fn dense_small_mappings_are_refused_in_proportion_to_the_file() {
        let small = format!("a: [{}]\n", vec!["{a: 1}"; 1000].join(","));
        assert!(cost(&small).is_ok(), "small files always pass");
        let big = format!("a: [{}]\n", vec!["{a: 1}"; 200_000].join(","));
        let err = cost(&big).unwrap_err();
        assert!(matches!(err, BuildError::Budget { .. }), "{err}");
    }

    #[test]
    fn depth_is_refused_at_the_limit_before_the_rest_is_read() {
        let text = "[".repeat(2_000_000);
        let err = cost(&text).unwrap_err();
        assert!(
            err.to_string().contains("nested more than 128 levels"),
            "{err}"
        );
    }

    #[test]
    fn documents_are_counted_as_they_are_read() {
        let doc = "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: x}\n---\n";
        let text = doc.repeat(101);
        assert_eq!(
            cost(&text).unwrap_err(),
            BuildError::TooManyObjects { limit: 100 }
        );
        // Empty documents hold no object.
        assert_eq!(
            cost("---\n---\n# only a comment\n---\n").unwrap().documents,
            0
        );
    }

    #[test]
    fn many_aliases_of_one_anchor_within_the_budget_are_read() {
        let text = format!("a: &a x\nb: [{}]\n", vec!["*a"; 500].join(", "));
        let docs = parse_documents("f.yaml", &text, 10).unwrap();
        assert_eq!(docs[0]["b"].as_array().map(Vec::len), Some(500));
    }

    #[test]
    fn json_may_hold_what_yaml_may_not_inside_its_strings() {
        // Raw DEL, C1 controls and U+FFFF are valid in a JSON string (kubectl reads them) but not in YAML.
        let text =
            "{\"kind\": \"ConfigMap\", \"data\": {\"k\": \"a\u{7f}b\u{85}c\u{9f}d\u{ffff}\"}}";
        let docs = parse_documents("cm.json", text, 10).unwrap();
        assert_eq!(docs[0]["data"]["k"], "a\u{7f}b\u{85}c\u{9f}d\u{ffff}");
        assert_eq!(
            yaml_printable(text).len(),
            text.len(),
            "same length, same cost"
        );
        // Outside strings it is still malformed, and said so in JSON's terms.
        let err = parse_documents("bad.json", "{\"a\": 1\u{7f}}", 10).unwrap_err();
        assert!(err.to_string().contains("bad.json"), "{err}");
    }

    #[test]
    fn values_read_as_before() {
        let docs = parse_documents(
            "f.yaml",
            "a: yes\ny: yes\nb: [0755]\nc: 1_000\nd: 0x1F\ne: ~\nf: 1.5\ng: true\nh: '<<'\n<<: {x: 1}\na: last\nmode: 0644\n",
            10,
        )
        .unwrap();
        assert_eq!(
            docs[0],
            serde_json::json!({"a": "last", "y": "yes", "b": ["0755"], "c": "1_000", "d": 31, "e": null, "f": 1.5,
                "g": true, "h": "<<", "<<": {"x": 1}, "mode": 420})
        );
    }

    /// The project's real manifests (examples, packaging, kustomize fixtures) read exactly as serde_yaml_ng,
    /// the parser before the budget, read them.
    #[test]
    fn real_manifests_read_as_serde_yaml_ng_read_them() {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        let mut checked = 0;
        let mut densest = 0f64;
        let mut stack = vec![
            root.join("examples"),
            root.join("packaging"),
            root.join("tests/fixtures"),
        ];
        while let Some(dir) = stack.pop() {
            for entry in std::fs::read_dir(&dir).unwrap().flatten() {
                let path = entry.path();
                if path.is_dir() {
                    stack.push(path);
                    continue;
                }
                let name = path.display().to_string();
                if !(name.ends_with(".yaml") || name.ends_with(".yml")) {
                    continue;
                }
                let Ok(text) = std::fs::read_to_string(&path) else {
                    continue;
                };
                let rewritten = super::super::octal::rewrite(&text);
                let before: Result<Vec<Value>, _> =
                    serde_yaml_ng::Deserializer::from_str(&rewritten)
                        .map(<Value as serde::Deserialize>::deserialize)
                        .collect();
                let Ok(before) = before else { continue };
                let before: Vec<Value> = before.into_iter().filter(|v| !v.is_null()).collect();
                let now = parse_documents(&name, &text, usize::MAX)
                    .unwrap_or_else(|e| panic!("{name}: {e}"));
                assert_eq!(now, before, "{name}");
                checked += 1;
                let cost =
                    scan(&name, &rewritten, &Budget::for_file(text.len(), usize::MAX)).unwrap();
                if text.len() >= 1024 {
                    let ratio = cost.memory as f64 / text.len() as f64;
                    densest = densest.max(ratio);
                }
            }
        }
        assert!(checked > 20, "only {checked} files found");
        // Real manifests must stay inside the budget, or honest commits would be refused.
        assert!(
            densest * 1.1 <= MEMORY_PER_BYTE as f64,
            "a real manifest is estimated at {densest:.1} bytes of values per byte of text"
        );
    }
}
