//! placeholder
use serde_json::Value;

use super::files::RepoFiles;
use super::load::Kustomization;
use super::{Res, Result};

pub fn run(
    _files: &RepoFiles,
    _k: &Kustomization,
    _list: &[Value],
    _acc: &mut [Res],
) -> Result<()> {
    Ok(())
}
