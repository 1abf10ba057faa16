//! `[source.verify]`: which signatures a source's revisions must carry, and the key files that say whom to trust.

use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::{relative_to, GitRef, Invalid};
use crate::signature::{load_policy, Mode, Policy};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawVerify {
    mode: String,
    allowed_signers: Option<PathBuf>,
    pgp_keys: Option<PathBuf>,
}

/// The key files are read here, at load time, so a typo in them stops `outpost check` and start-up with the file
/// and line named, instead of failing every poll later.
pub(super) fn validate(
    raw: RawVerify,
    git_ref: &GitRef,
    config_path: &Path,
) -> Result<Policy, Invalid> {
    let mode = Mode::parse(&raw.mode).ok_or_else(|| {
        format!(
            "mode = {:?}: write \"head\", \"tag\" or \"tag_and_head\"",
            raw.mode
        )
    })?;
    if mode.needs_tag() && !matches!(git_ref, GitRef::Tag(_) | GitRef::Semver(_)) {
        return Err(format!(
            "mode = \"{}\" checks the signed tag that selects the commit, but this source follows {git_ref}; select a tag or semver range, or use mode = \"head\"",
            mode.as_str()
        ).into());
    }
    if raw.allowed_signers.is_none() && raw.pgp_keys.is_none() {
        return Err("set allowed_signers (SSH keys) and/or pgp_keys (OpenPGP keys): with neither, nothing could ever be trusted".into());
    }
    let signers = raw.allowed_signers.map(|p| relative_to(config_path, &p));
    let pgp_keys = raw.pgp_keys.map(|p| relative_to(config_path, &p));
    load_policy(mode, signers.as_deref(), pgp_keys.as_deref()).map_err(|e| Invalid(e.to_string()))
}
