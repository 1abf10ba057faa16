//! The resource verbs: get, list, create (POST), replace (PUT), patch (merge, strategic,
//! server-side apply) and delete, each a function of the locked `State`.
//!
//! They share one write path (`commit`) so that every write gets the same treatment:
//! defaulting, validation, immutable-field checks, generation bumps, managedFields,
//! no-op detection, dry-run and controller reactions.

use std::collections::HashMap;

use serde_json::{json, Value};

use super::apply::{self, Apply};
use super::discovery::ResourceType;
use super::errors::{self, new_uid, now_rfc3339, Cause, Failure, Res};
use super::fields;
use super::objects::{self, Key, Selector, State};
use super::status;
use super::validate;

/// What a verb asks for, parsed from the URL and headers.
pub(crate) struct Target<'a> {
    pub ty: &'a ResourceType,
    pub namespace: Option<&'a str>,
    pub name: Option<&'a str>,
    pub subresource: Option<&'a str>,
    pub query: &'a HashMap<String, String>,
    pub accept: &'a str,
    pub user_agent: &'a str,
}

impl Target<'_> {
    fn ns(&self) -> &str {
        self.namespace.unwrap_or("")
    }
    fn name(&self) -> &str {
        self.name.unwrap_or("")
    }
    fn key(&self, name: &str) -> Key {
        Key::new(self.ty, self.ns(), name)
    }
    fn dry_run(&self) -> bool {
        self.query.get("dryRun").is_some_and(|v| v == "All")
    }
    /// `fieldManager`, else the user agent's product name as the real server derives it.
    fn manager(&self) -> String {
        if let Some(m) = self.query.get("fieldManager").filter(|m| !m.is_empty()) {
            return m.clone();
        }
        let product = self.user_agent.split('/').next().unwrap_or("").trim();
        if product.is_empty() {
            "unknown".into()
        } else {
            product.to_string()
        }
    }
    fn not_found(&self, name: &str) -> Failure {
        errors::not_found(&self.ty.plural, &self.ty.group, name)
    }
}

fn wants_metadata_only(accept: &str) -> bool {
    accept.contains("as=PartialObjectMetadata")
}

pub(crate) fn get(state: &State, t: &Target) -> Res<Value> {
    let obj = state
        .objects
        .get(&t.key(t.name()))
        .ok_or_else(|| t.not_found(t.name()))?;
    Ok(if wants_metadata_only(t.accept) {
        objects::partial(obj)
    } else {
        obj.clone()
    })
}

pub(crate) fn list(state: &State, t: &Target) -> Res<Value> {
    let selector = Selector::parse(t.query.get("labelSelector").map_or("", String::as_str))
        .map_err(|e| errors::bad_request(&format!("unable to parse requirement: {e}")))?;
    let all = state.matching(t.ty, t.namespace, &selector);
    let limit = t.query.get("limit").and_then(|l| l.parse().ok());
    let page = objects::paginate(
        all,
        limit,
        t.query.get("continue").map(String::as_str),
        state.rv,
    )?;
    let mut meta = json!({"resourceVersion": state.rv.to_string()});
    if let Some(c) = &page.continue_token {
        meta["continue"] = json!(c);
        if !t.query.contains_key("labelSelector") {
            meta["remainingItemCount"] = json!(page.remaining);
        }
    } else if t.ty.custom {
        meta["continue"] = json!("");
    }
    if wants_metadata_only(t.accept) {
        let items: Vec<Value> = page.items.iter().map(objects::partial).collect();
        return Ok(json!({
            "kind": "PartialObjectMetadataList", "apiVersion": "meta.k8s.io/v1",
            "metadata": meta, "items": items,
        }));
    }
    let items: Vec<Value> = page
        .items
        .into_iter()
        .map(|mut o| {
            // Built-in lists carry no kind/apiVersion on items; custom-resource lists do.
            if !t.ty.custom {
                if let Some(m) = o.as_object_mut() {
                    m.remove("kind");
                    m.remove("apiVersion");
                }
            }
            o
        })
        .collect();
    Ok(json!({
        "kind": format!("{}List", t.ty.kind), "apiVersion": t.ty.api_version(),
        "metadata": meta, "items": items,
    }))
}

/// Server-owned metadata a client cannot set.
fn strip_server_metadata(obj: &mut Value) {
    if let Some(m) = obj["metadata"].as_object_mut() {
        for k in [
            "uid",
            "resourceVersion",
            "generation",
            "creationTimestamp",
            "deletionTimestamp",
            "managedFields",
            "selfLink",
        ] {
            m.remove(k);
        }
    }
}

fn spec_part(obj: &Value) -> Value {
    let mut v = obj.clone();
    if let Some(m) = v.as_object_mut() {
        m.remove("metadata");
        m.remove("status");
    }
    v
}

/// The shared tail of every write: defaults, validation, generation, managedFields, no-op
/// detection, store (unless dry-run) and controller reactions. Returns (object, created).
fn commit(
    state: &mut State,
    t: &Target,
    old: Option<&Value>,
    mut new: Value,
    record: impl FnOnce(&mut Value, &str),
) -> Res<(Value, bool)> {
    let name = new["metadata"]["name"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let now = now_rfc3339();
    new["kind"] = json!(t.ty.kind);
    new["apiVersion"] = json!(t.ty.api_version());
    if t.ty.namespaced {
        new["metadata"]["namespace"] = json!(t.ns());
    }
    match old {
        None => {
            new["metadata"]["uid"] = json!(new_uid());
            new["metadata"]["creationTimestamp"] = json!(now);
            if t.ty.has_generation() {
                new["metadata"]["generation"] = json!(1);
            }
        }
        Some(old) => {
            for k in [
                "uid",
                "creationTimestamp",
                "generation",
                "deletionTimestamp",
            ] {
                match old["metadata"].get(k) {
                    Some(v) => new["metadata"][k] = v.clone(),
                    None => {
                        if let Some(m) = new["metadata"].as_object_mut() {
                            m.remove(k);
                        }
                    }
                }
            }
            new["metadata"]["resourceVersion"] = old["metadata"]["resourceVersion"].clone();
        }
    }
    status::defaults(t.ty, &mut new, old.is_none());
    // Empty label/annotation maps are omitted on the wire (Go `omitempty`).
    if let Some(m) = new["metadata"].as_object_mut() {
        m.retain(|k, v| {
            !(matches!(k.as_str(), "labels" | "annotations")
                && v.as_object().is_some_and(|o| o.is_empty()))
        });
    }
    if let Some(old) = old {
        validate::immutable(t.ty, &name, old, &new)?;
    }
    validate::values(t.ty, &name, &new)?;
    let spec_changed = old.is_none_or(|o| spec_part(o) != spec_part(&new));
    if let Some(old) = old {
        if spec_changed && t.ty.has_generation() {
            let g = old["metadata"]["generation"].as_i64().unwrap_or(0);
            new["metadata"]["generation"] = json!(g + 1);
        }
    }
    record(&mut new, &now);
    if let Some(old) = old {
        if *old == new {
            return Ok((new, false));
        }
    }
    if t.dry_run() {
        if old.is_none() {
            if let Some(m) = new["metadata"].as_object_mut() {
                m.remove("resourceVersion");
            }
        }
        return Ok((new, old.is_none()));
    }
    let key = t.key(&name);
    let stored = state.put(key.clone(), new);
    status::after_write(state, t.ty, &key, old.is_none(), spec_changed);
    Ok((stored, old.is_none()))
}

fn parse_json(body: &[u8]) -> Res<Value> {
    serde_json::from_slice(body).map_err(|e| {
        errors::bad_request(&format!("couldn't get version/kind; json parse error: {e}"))
    })
}

/// Apply bodies may be JSON or YAML text (kubectl and the kube crate send JSON).
fn parse_apply_body(body: &[u8]) -> Res<Value> {
    if let Ok(v) = serde_json::from_slice::<Value>(body) {
        return Ok(v);
    }
    let text = String::from_utf8_lossy(body);
    serde_yaml_ng::from_str::<Value>(&text)
        .map_err(|e| errors::bad_request(&format!("error decoding YAML: {e}")))
}

fn check_namespace_for_create(state: &State, t: &Target, name: &str) -> Res<()> {
    state.require_namespace(t.ty, t.ns())?;
    if t.ty.namespaced {
        let ns = &state.objects[&Key::namespace_key(t.ns())];
        if !ns["metadata"]["deletionTimestamp"].is_null() {
            let msg = format!(
                "{} \"{name}\" is forbidden: unable to create new content in namespace {} because it is being terminated",
                errors::qualified(&t.ty.plural, &t.ty.group),
                t.ns()
            );
            let details = json!({"name": name, "kind": t.ty.plural});
            return Err(Failure::Status(
                403,
                errors::status(403, Some("Forbidden"), &msg, Some(details)),
            ));
        }
    }
    Ok(())
}

/// POST: create (409 when the name is taken); also the ServiceAccount TokenRequest.
pub(crate) fn create(state: &mut State, t: &Target, body: &[u8]) -> Res<(u16, Value)> {
    let mut obj = parse_json(body)?;
    if t.subresource == Some("token") && t.ty.plural == "serviceaccounts" {
        return token_request(state, t, obj);
    }
    let name = match (
        obj["metadata"]["name"].as_str(),
        obj["metadata"]["generateName"].as_str(),
    ) {
        (Some(n), _) => n.to_string(),
        (None, Some(prefix)) => format!("{prefix}{}", &new_uid()[..5]),
        (None, None) => {
            return Err(errors::invalid(
                &t.ty.kind,
                &t.ty.group,
                "",
                vec![Cause::required("metadata.name")],
            ))
        }
    };
    obj["metadata"]["name"] = json!(name);
    validate::body_matches_url(&obj, &name, t.namespace)?;
    validate::name(t.ty, &name)?;
    check_namespace_for_create(state, t, &name)?;
    if state.objects.contains_key(&t.key(&name)) {
        return Err(errors::already_exists(&t.ty.plural, &t.ty.group, &name));
    }
    strip_server_metadata(&mut obj);
    if t.ty.has_status() {
        if let Some(m) = obj.as_object_mut() {
            m.remove("status");
        }
    }
    let (manager, api_version) = (t.manager(), t.ty.api_version());
    let (obj, _) = commit(state, t, None, obj, |new, now| {
        apply::record_update(None, new, &manager, &api_version, None, now)
    })?;
    Ok((201, obj))
}

fn token_request(state: &mut State, t: &Target, mut req: Value) -> Res<(u16, Value)> {
    let sa = t.key(t.name());
    if !state.objects.contains_key(&sa) {
        return Err(t.not_found(t.name()));
    }
    let token = format!("sa-token-{}", new_uid().replace('-', ""));
    let user = format!("system:serviceaccount:{}:{}", t.ns(), t.name());
    state.tokens.insert(token.clone(), user);
    let seconds = req["spec"]["expirationSeconds"].as_u64().unwrap_or(3600);
    let expires = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
        + seconds;
    req["kind"] = json!("TokenRequest");
    req["apiVersion"] = json!("authentication.k8s.io/v1");
    req["metadata"] =
        json!({"name": t.name(), "namespace": t.ns(), "creationTimestamp": now_rfc3339()});
    req["spec"]["expirationSeconds"] = json!(seconds);
    if req["spec"].get("boundObjectRef").is_none() {
        req["spec"]["boundObjectRef"] = Value::Null;
    }
    let (manager, now) = (t.manager(), now_rfc3339());
    apply::record_update(
        None,
        &mut req,
        &manager,
        "authentication.k8s.io/v1",
        Some("token"),
        &now,
    );
    req["status"] = json!({"token": token, "expirationTimestamp": errors::rfc3339(expires)});
    Ok((201, req))
}

/// PUT: replace; needs the current resourceVersion (422 without, 409 when stale).
pub(crate) fn replace(state: &mut State, t: &Target, body: &[u8]) -> Res<Value> {
    let mut obj = parse_json(body)?;
    let name = t.name().to_string();
    validate::body_matches_url(&obj, &name, t.namespace)?;
    let old = state
        .objects
        .get(&t.key(&name))
        .cloned()
        .ok_or_else(|| t.not_found(&name))?;
    match obj["metadata"]["resourceVersion"].as_str() {
        None | Some("") => {
            let cause = Cause::invalid(
                "metadata.resourceVersion",
                "0x0",
                "must be specified for an update",
            );
            return Err(errors::invalid(
                &t.ty.plural,
                &t.ty.group,
                &name,
                vec![cause],
            ));
        }
        Some(rv) if rv != old["metadata"]["resourceVersion"] => {
            return Err(errors::conflict_stale(&t.ty.plural, &t.ty.group, &name));
        }
        _ => {}
    }
    obj["metadata"]["name"] = json!(name);
    strip_server_metadata(&mut obj);
    let new = restrict_to_view(t, &old, obj);
    write_update(state, t, &old, new)
}

/// Keeps what a write through this endpoint may not change: spec via `/status`, status via
/// the main resource.
fn restrict_to_view(t: &Target, old: &Value, mut new: Value) -> Value {
    if t.subresource == Some("status") {
        let mut out = old.clone();
        out["status"] = new.get("status").cloned().unwrap_or(Value::Null);
        if out["status"].is_null() {
            if let Some(m) = out.as_object_mut() {
                m.remove("status");
            }
        }
        return out;
    }
    if t.ty.has_status() {
        match old.get("status") {
            Some(s) => new["status"] = s.clone(),
            None => {
                if let Some(m) = new.as_object_mut() {
                    m.remove("status");
                }
            }
        }
    }
    new
}

fn write_update(state: &mut State, t: &Target, old: &Value, new: Value) -> Res<Value> {
    let (manager, api_version) = (t.manager(), t.ty.api_version());
    let sub = t.subresource;
    let (obj, _) = commit(state, t, Some(old), new, |new, now| {
        apply::record_update(Some(old), new, &manager, &api_version, sub, now)
    })?;
    Ok(obj)
}

/// PATCH: JSON merge, strategic merge (a merge that also merges keyed lists) or apply.
pub(crate) fn patch(
    state: &mut State,
    t: &Target,
    content_type: &str,
    body: &[u8],
) -> Res<(u16, Value)> {
    let ct = content_type.split(';').next().unwrap_or("").trim();
    if ct == "application/apply-patch+yaml" {
        return server_side_apply(state, t, body);
    }
    let strategic = match ct {
        "application/merge-patch+json" => false,
        "application/strategic-merge-patch+json" if !t.ty.custom => true,
        _ => {
            let msg = "the body of the request was in an unknown format - accepted media types include: application/merge-patch+json, application/strategic-merge-patch+json, application/apply-patch+yaml";
            return Err(Failure::Status(
                415,
                errors::status(415, Some("UnsupportedMediaType"), msg, None),
            ));
        }
    };
    let patch = parse_json(body)?;
    let name = t.name().to_string();
    let old = state
        .objects
        .get(&t.key(&name))
        .cloned()
        .ok_or_else(|| t.not_found(&name))?;
    let mut new = old.clone();
    if strategic {
        fields::merge(&mut new, &patch, "");
    } else {
        fields::merge_patch(&mut new, &patch);
    }
    new["metadata"]["name"] = json!(name);
    let new = restrict_to_view(t, &old, new);
    Ok((200, write_update(state, t, &old, new)?))
}

fn server_side_apply(state: &mut State, t: &Target, body: &[u8]) -> Res<(u16, Value)> {
    let applied = parse_apply_body(body)?;
    let name = t.name().to_string();
    validate::body_matches_url(&applied, &name, t.namespace)?;
    if let Some(kind) = applied["kind"].as_str().filter(|k| *k != t.ty.kind) {
        return Err(errors::bad_request(&format!(
            "the kind of the object ({kind}) does not match the kind on the URL ({})",
            t.ty.kind
        )));
    }
    validate::typed_patch(t.ty, t.ns(), &name, &applied)?;
    validate::name(t.ty, &name)?;
    let live = state.objects.get(&t.key(&name)).cloned();
    if live.is_none() {
        check_namespace_for_create(state, t, &name)?;
    }
    let mut applied_clean = applied.clone();
    strip_server_metadata(&mut applied_clean);
    if let Some(m) = applied_clean["metadata"].as_object_mut() {
        m.remove("name");
        m.remove("namespace");
    }
    let (manager, api_version) = (t.manager(), t.ty.api_version());
    let now = now_rfc3339();
    let req = Apply {
        manager: &manager,
        force: t.query.get("force").is_some_and(|f| f == "true"),
        subresource: t.subresource,
        api_version: &api_version,
        has_status: t.ty.has_status(),
        now: &now,
    };
    let mut merged = apply::apply(live.as_ref(), &applied_clean, &req)?;
    merged["metadata"]["name"] = json!(name);
    if live.is_none() && t.subresource == Some("status") {
        return Err(t.not_found(&name));
    }
    let sub = t.subresource;
    let created = live.is_none();
    let (obj, _) = commit(state, t, live.as_ref(), merged, |new, now| {
        // An unchanged object keeps the applier's old timestamp (a true no-op); any change
        // stamps it now.
        let unchanged = live.as_ref().is_some_and(|l| {
            let mut probe = new.clone();
            probe["metadata"]["resourceVersion"] = l["metadata"]["resourceVersion"].clone();
            probe == *l
        });
        if !unchanged {
            apply::touch(new, &manager, "Apply", sub, now);
        }
    })?;
    Ok((if created { 201 } else { 200 }, obj))
}

/// DELETE: Status Success for most objects; a namespace turns Terminating and goes away
/// with its content shortly after.
pub(crate) fn delete(state: &mut State, t: &Target) -> Res<Value> {
    let name = t.name().to_string();
    let key = t.key(&name);
    let obj = state
        .objects
        .get(&key)
        .cloned()
        .ok_or_else(|| t.not_found(&name))?;
    if t.dry_run() {
        return Ok(obj);
    }
    if t.ty.kind == "Namespace" && t.ty.group.is_empty() {
        return status::start_namespace_deletion(state, &name).ok_or_else(|| t.not_found(&name));
    }
    if t.ty.kind == "CustomResourceDefinition" {
        let group = obj["spec"]["group"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        let plural = obj["spec"]["names"]["plural"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        state
            .custom
            .retain(|c| !(c.group == group && c.plural == plural));
        let owned: Vec<Key> = state
            .objects
            .keys()
            .filter(|k| k.group == group && k.resource == plural)
            .cloned()
            .collect();
        for k in owned {
            state.remove(&k);
        }
        let mut gone = state.remove(&key).unwrap_or(obj);
        gone["metadata"]["deletionTimestamp"] = json!(now_rfc3339());
        return Ok(gone);
    }
    state.remove(&key);
    let mut details = json!({"name": name});
    if !t.ty.group.is_empty() {
        details["group"] = json!(t.ty.group);
    }
    details["kind"] = json!(t.ty.plural);
    details["uid"] = obj["metadata"]["uid"].clone();
    Ok(json!({
        "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success",
        "details": details,
    }))
}
