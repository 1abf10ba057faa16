//! What an API server's refusal of an apply says beyond its message: which other field managers own the fields
//! we sent (a 409), and which fields cannot change in place (a 422), so apply can take them over or recreate.

use super::client::ApiFailure;

/// `(manager, field)` of each field-manager conflict in a 409.
pub(super) fn conflicts(f: &ApiFailure) -> Vec<(String, String)> {
    f.causes
        .iter()
        .filter(|(reason, _, _)| reason == "FieldManagerConflict")
        .map(|(_, field, message)| {
            let manager = message.split('"').nth(1).unwrap_or(message).to_string();
            (manager, field.clone())
        })
        .collect()
}

/// The fields a 422 says are immutable.
pub(super) fn immutable_fields(f: &ApiFailure) -> Vec<String> {
    if f.code != 422 {
        return Vec::new();
    }
    let mut fields: Vec<String> = f
        .causes
        .iter()
        .filter(|(_, _, m)| m.contains("immutable"))
        .map(|(_, field, _)| field.clone())
        .collect();
    if fields.is_empty() && f.message.contains("field is immutable") {
        fields.push("a field".into());
    }
    fields
}

#[cfg(test)]
mod tests {
    use super::*;

    fn failure(code: u16, message: &str, causes: &[(&str, &str, &str)]) -> ApiFailure {
        ApiFailure {
            code,
            reason: String::new(),
            message: message.into(),
            causes: causes
                .iter()
                .map(|(a, b, c)| (a.to_string(), b.to_string(), c.to_string()))
                .collect(),
            details_kind: String::new(),
        }
    }

    #[test]
    fn conflicts_name_the_other_manager() {
        let f = failure(
            409,
            "Apply failed with 1 conflict",
            &[(
                "FieldManagerConflict",
                ".data.mode",
                "conflict with \"kubectl-client-side-apply\" using v1",
            )],
        );
        assert_eq!(
            conflicts(&f),
            vec![(
                "kubectl-client-side-apply".to_string(),
                ".data.mode".to_string()
            )]
        );
    }

    #[test]
    fn immutable_fields_are_read_from_causes() {
        let f = failure(
            422,
            "Deployment.apps \"web\" is invalid: spec.selector: Invalid value: ...: field is immutable",
            &[("FieldValueInvalid", "spec.selector", "Invalid value: ...: field is immutable")],
        );
        assert_eq!(immutable_fields(&f), vec!["spec.selector".to_string()]);
        assert!(immutable_fields(&failure(422, "name invalid", &[])).is_empty());
    }
}
