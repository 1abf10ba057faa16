//! The two base64 flavours the wire formats need, in one place.
//!
//! We use the `base64` crate rather than a hand-written codec: it is the ecosystem's standard, well maintained,
//! already in this workspace's dependency graph (so it adds no code to audit), and its decoders reject
//! non-canonical input (stray characters, non-zero trailing bits), which a quick hand-written decoder tends to
//! accept. Which engine applies where:
//! - [`STANDARD`] (padded, strict): the `ed25519:` public key form, PEM bodies, and everything we emit;
//! - [`UNPADDED`]: OpenSSH's `SHA256:` fingerprints, which drop the padding.
//!
//! Structured-field byte sequences are decoded by the `sfv` crate (see `sfv`), with its own base64 engine.

use base64::engine::general_purpose::GeneralPurpose;
pub(crate) use base64::Engine;

pub(crate) const STANDARD: GeneralPurpose = base64::engine::general_purpose::STANDARD;
pub(crate) const UNPADDED: GeneralPurpose = base64::engine::general_purpose::STANDARD_NO_PAD;
