//! The files of one revision: what the source stage hands the bundle stage, and the only thing the two share.
//!
//! A source reads a commit's tree (from the Git cache or a local repository) into these types; the bundle stage
//! turns them into objects without knowing where they came from. Either the manifests under the source's path,
//! or, when that path holds a kustomization, a read-only view of the repository for the kustomize build.

pub mod files;

pub use files::{Entry, RepoFiles};

/// The file names kustomize recognises as a kustomization, in the order it looks for them. A source folder
/// holding one of them is built by kustomize rather than read as plain manifests.
pub const KUSTOMIZATION_NAMES: [&str; 3] =
    ["kustomization.yaml", "kustomization.yml", "Kustomization"];

/// One manifest file of a revision, with its path relative to the repository root.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ManifestFile {
    pub path: String,
    pub content: Vec<u8>,
}

/// The manifests found under a source's `path`, in a stable (byte-wise path) order, and what was skipped.
#[derive(Debug, Default)]
pub struct Manifests {
    pub files: Vec<ManifestFile>,
    pub warnings: Vec<String>,
    /// Set when `path` holds a kustomization: then `files` is empty and the build reads from the repository.
    pub kustomization: Option<KustomizationInput>,
}

/// What a kustomize build needs: the repository's files (kustomizations refer to `../../base`), and the folder
/// to build.
#[derive(Debug)]
pub struct KustomizationInput {
    pub files: RepoFiles,
    pub root: String,
}
