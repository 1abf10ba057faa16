//! What is wrong inside one field of a kustomization or an object, before the build names the file: the parts
//! of the builder that find it do not know which file they are in.

#[derive(Debug, thiserror::Error)]
pub enum Problem {
    #[error("target pattern {pattern:?} is not a valid regular expression: {source}")]
    Pattern {
        pattern: String,
        source: Box<regex::Error>,
    },
    #[error("label selector {text:?} is not valid at {part:?}")]
    Selector { text: String, part: String },
    #[error("the reference {old:?} could mean several objects ({candidates}): each was once called {old:?} and none fits the referrer's name prefixes and suffixes better (kustomize refuses this too); write the reference as the final name of the one meant, or give them distinct names")]
    Ambiguous { old: String, candidates: String },
    #[error(
        "the field holds no `name` to update; fix the nameReference field spec in `configurations`"
    )]
    NoName,
    #[error("{kind} subjects[{index}].namespace is blank; name the namespace or remove the key")]
    BlankSubjectNamespace { kind: String, index: usize },
}
