//! `configMapGenerator` and `secretGenerator`: ConfigMaps and Secrets made from literals, env files and files.
//!
//! Generated objects are marked for a content hash suffix, added at the end of the whole build (so an overlay's
//! patch changes the hash, as in kustomize). `behavior: merge | replace` acts on a generated object of the same
//! name from a base.

use std::collections::BTreeMap;

use base64::Engine;
use serde_json::{json, Map, Value};

use super::files::{self, RepoFiles};
use super::load::{Generator, GeneratorOptions, Kustomization};
use super::{KustomizeError, Res, Result};

pub fn run(files: &RepoFiles, k: &Kustomization, acc: &mut Vec<Res>) -> Result<()> {
    for (index, g) in k.spec.config_map_generator.iter().enumerate() {
        let field = format!("configMapGenerator[{index}]");
        let by = json!({"apiVersion": "builtin", "kind": "ConfigMapGenerator"});
        generate(files, k, g, &field, false, (&k.file, &by), acc)?;
    }
    for (index, g) in k.spec.secret_generator.iter().enumerate() {
        let field = format!("secretGenerator[{index}]");
        let by = json!({"apiVersion": "builtin", "kind": "SecretGenerator"});
        generate(files, k, g, &field, true, (&k.file, &by), acc)?;
    }
    Ok(())
}

/// One ConfigMap or Secret; `origin` is the file that configured the generator and the generator as
/// buildMetadata's origin annotation names them.
pub fn generate(
    files: &RepoFiles,
    k: &Kustomization,
    g: &Generator,
    field: &str,
    secret: bool,
    origin: (&str, &Value),
    acc: &mut Vec<Res>,
) -> Result<()> {
    let (configured_in, by) = origin;
    let bad = |message: String| k.invalid(format!("{field} ({}): {message}", g.name));
    if g.name.is_empty() {
        return Err(k.invalid(format!("{field} has no name; every generator needs one")));
    }
    let pairs = entries(files, k, g, &bad)?;
    let options = merged_options(k.spec.generator_options.as_ref(), g.options.as_ref());
    let kind = if secret { "Secret" } else { "ConfigMap" };
    let behavior = g.behavior.as_deref().unwrap_or("create");
    if behavior != "create" {
        if behavior != "merge" && behavior != "replace" {
            return Err(bad(format!(
                "behavior {behavior:?} is not one of create, merge, replace"
            )));
        }
        let namespace = g.namespace.as_deref();
        let existing = acc
            .iter_mut()
            .find(|r| {
                r.kind() == kind
                    && r.answers_to(&g.name)
                    && namespace.is_none_or(|ns| r.namespace() == ns)
            })
            .ok_or_else(|| {
                bad(format!(
                    "behavior {behavior} needs a {kind} named {:?} from a base, and there is none",
                    g.name
                ))
            })?;
        let data = existing.obj.as_object_mut().expect("objects are mappings");
        if behavior == "replace" {
            data.remove("data");
            data.remove("binaryData");
        }
        put_data(data, pairs, secret);
        let meta = super::metadata(&mut existing.obj).expect("objects are mappings");
        add_map(meta, "labels", &options.labels);
        add_map(meta, "annotations", &options.annotations);
        if let Some(disable) = options.disable_name_suffix_hash {
            existing.hash = !disable;
        }
        // A merge keeps the origin of the object it merges into (as kustomize does); a replacement is new.
        if behavior == "replace" || existing.from.is_none() {
            existing.from = Some(super::Origin::Generator {
                file: configured_in.to_string(),
                by: by.clone(),
            });
        }
        return Ok(());
    }
    let mut meta = Map::new();
    meta.insert("name".into(), Value::String(g.name.clone()));
    if let Some(ns) = &g.namespace {
        meta.insert("namespace".into(), Value::String(ns.clone()));
    }
    add_map(&mut meta, "labels", &options.labels);
    add_map(&mut meta, "annotations", &options.annotations);
    let mut obj = Map::new();
    obj.insert("apiVersion".into(), json!("v1"));
    obj.insert("kind".into(), json!(kind));
    obj.insert("metadata".into(), Value::Object(meta));
    if secret {
        obj.insert(
            "type".into(),
            json!(g.kind.clone().unwrap_or_else(|| "Opaque".into())),
        );
    }
    if secret {
        // kustomize writes `data: {}` for a Secret with no entries (and nothing for such a ConfigMap).
        obj.insert("data".into(), Value::Object(Map::new()));
    }
    put_data(&mut obj, pairs, secret);
    if options.immutable == Some(true) {
        obj.insert("immutable".into(), Value::Bool(true));
    }
    let mut r = Res::new(Value::Object(obj), format!("{}, {field}", k.file));
    r.hash = options.disable_name_suffix_hash != Some(true);
    r.from = Some(super::Origin::Generator {
        file: configured_in.to_string(),
        by: by.clone(),
    });
    let id = crate::bundle::identity(&r.obj).unwrap_or_default();
    // No namespace means `default`: a second generator for the same name there collides too.
    let ns = |r: &Res| match r.namespace() {
        "" => "default".to_string(),
        n => n.to_string(),
    };
    if acc
        .iter()
        .any(|o| o.kind() == r.kind() && o.name() == r.name() && ns(o) == ns(&r))
    {
        return Err(bad(format!(
            "{id} already exists; use behavior: merge or replace to change a generated object from a base"
        )));
    }
    acc.push(r);
    Ok(())
}

/// Key -> content, in the order kustomize reads them: env files, literals, files.
fn entries(
    files: &RepoFiles,
    k: &Kustomization,
    g: &Generator,
    bad: &dyn Fn(String) -> KustomizeError,
) -> Result<Vec<(String, Vec<u8>)>> {
    let mut out = Vec::new();
    for env in g.env.iter().chain(&g.envs) {
        let bytes = k.read(files, env)?;
        let text =
            String::from_utf8(bytes).map_err(|_| bad(format!("env file {env:?} is not UTF-8")))?;
        for line in text.lines() {
            let line = line.trim_start_matches('\u{feff}').trim_start();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            // A line without `=` is a key with an empty value (kubectl does not read its environment).
            let (key, value) = line.split_once('=').unwrap_or((line, ""));
            out.push((key.trim().to_string(), value.as_bytes().to_vec()));
        }
    }
    for literal in &g.literals {
        let (key, value) = literal
            .split_once('=')
            .ok_or_else(|| bad(format!("literal {literal:?} is not KEY=VALUE")))?;
        out.push((key.to_string(), unquote(value).as_bytes().to_vec()));
    }
    for file in &g.files {
        let (key, path) = match file.split_once('=') {
            Some((key, path)) => (key.to_string(), path),
            None => (files::base_name(file).to_string(), file.as_str()),
        };
        out.push((key, k.read(files, path)?));
    }
    let mut keys = std::collections::HashSet::new();
    for (key, _) in &out {
        if key.is_empty()
            || !key
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
        {
            return Err(bad(format!(
                "key {key:?} is not a valid ConfigMap key (letters, digits, '-', '_', '.')"
            )));
        }
        if !keys.insert(key.clone()) {
            return Err(bad(format!("key {key:?} is given twice")));
        }
    }
    Ok(out)
}

fn unquote(v: &str) -> &str {
    for q in ['"', '\''] {
        if v.len() >= 2 && v.starts_with(q) && v.ends_with(q) {
            return &v[1..v.len() - 1];
        }
    }
    v
}

/// Writes entries into `data` (text) or `binaryData` (anything else); a Secret keeps everything in `data`,
/// base64-encoded.
fn put_data(obj: &mut Map<String, Value>, pairs: Vec<(String, Vec<u8>)>, secret: bool) {
    for (key, bytes) in pairs {
        let (field, value) = if secret {
            ("data", wrapped_base64(&bytes))
        } else {
            match String::from_utf8(bytes) {
                Ok(text) => ("data", text),
                Err(e) => ("binaryData", wrapped_base64(e.as_bytes())),
            }
        };
        let map = obj
            .entry(field)
            .or_insert_with(|| Value::Object(Map::new()));
        if !map.is_object() {
            *map = Value::Object(Map::new());
        }
        map.as_object_mut()
            .expect("just made a map")
            .insert(key, Value::String(value));
    }
}

/// Base64 as kustomize writes it: one line when short, else lines of 70 characters, each ending in a newline.
fn wrapped_base64(bytes: &[u8]) -> String {
    const LINE: usize = 70;
    let text = base64::engine::general_purpose::STANDARD.encode(bytes);
    if text.len() < LINE {
        return text;
    }
    let mut out = String::with_capacity(text.len() + text.len() / LINE + 1);
    for chunk in text.as_bytes().chunks(LINE) {
        out.push_str(std::str::from_utf8(chunk).unwrap_or_default());
        out.push('\n');
    }
    out
}

fn add_map(meta: &mut Map<String, Value>, field: &str, values: &BTreeMap<String, String>) {
    if values.is_empty() {
        return;
    }
    let map = meta
        .entry(field)
        .or_insert_with(|| Value::Object(Map::new()));
    if let Some(map) = map.as_object_mut() {
        for (k, v) in values {
            map.insert(k.clone(), Value::String(v.clone()));
        }
    }
}

fn merged_options(
    global: Option<&GeneratorOptions>,
    own: Option<&GeneratorOptions>,
) -> GeneratorOptions {
    let mut out = global.cloned().unwrap_or_default();
    if let Some(own) = own {
        out.labels.extend(own.labels.clone());
        out.annotations.extend(own.annotations.clone());
        if own.disable_name_suffix_hash.is_some() {
            out.disable_name_suffix_hash = own.disable_name_suffix_hash;
        }
        if own.immutable.is_some() {
            out.immutable = own.immutable;
        }
    }
    out
}
