//! A resource file's objects: multi-document YAML, JSON or `kind: List`, each remembering the file and document
//! it came from, with the checks kustomize makes on objects as it reads them.

use serde_json::Value;

use super::problem::Problem;
use super::{KustomizeError, Res, Result};
use crate::bundle::yaml;

/// The objects of a resource file (multi-document YAML, JSON, `kind: List`).
pub fn read(path: &str, bytes: &[u8]) -> Result<Vec<Res>> {
    let text = std::str::from_utf8(bytes).map_err(|e| KustomizeError::Invalid {
        file: path.into(),
        message: format!(
            "not valid UTF-8 (at byte {}); save the file as UTF-8",
            e.valid_up_to()
        ),
    })?;
    // kustomize reads resources strictly: a key written twice in one mapping is an error (kustomization files
    // themselves are read leniently, the last value winning, and so are they here).
    let docs = yaml::parse_documents_with(path, text, usize::MAX, yaml::RepeatedKeys::Refuse)
        .map_err(|e| KustomizeError::Manifest(e.to_string()))?;
    let mut out = Vec::new();
    for (index, doc) in docs.into_iter().enumerate() {
        let document = index + 1;
        blank_subject_namespace(&doc).map_err(|problem| KustomizeError::Invalid {
            file: format!("{path}, document {document}"),
            message: problem.to_string(),
        })?;
        for obj in crate::bundle::flatten(doc, path, document)
            .map_err(|e| KustomizeError::Manifest(e.to_string()))?
        {
            let mut r = Res::new(obj, format!("{path}, document {document}"));
            r.from = Some(super::Origin::File(path.to_string()));
            out.push(r);
        }
    }
    Ok(out)
}

/// kustomize refuses an RBAC subject with `namespace:` written but left blank.
fn blank_subject_namespace(doc: &Value) -> std::result::Result<(), Problem> {
    let kind = doc.get("kind").and_then(Value::as_str).unwrap_or("");
    if kind != "RoleBinding" && kind != "ClusterRoleBinding" {
        return Ok(());
    }
    for (i, s) in doc
        .get("subjects")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .enumerate()
    {
        if s.get("namespace")
            .is_some_and(|n| n.is_null() || n.as_str() == Some(""))
        {
            return Err(Problem::BlankSubjectNamespace {
                kind: kind.to_string(),
                index: i,
            });
        }
    }
    Ok(())
}
