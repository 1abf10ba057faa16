//! What the pipeline needs from the source and target stages, as two small traits. The daemon runs the real
//! ones (`source::Source`, `deploy::Target`); the unit tests run fakes, so every branch of a pass and of the
//! failure policy is tested without Git, a cluster or the binary.

use std::future::Future;
use std::sync::Arc;

use crate::bundle::Bundle;
use crate::deploy::{Applied, Drift, Drifted, Leadership, Mode, Target, TargetError};
use crate::revision::Manifests;
use crate::source::{Probe, Source, SourceError};

/// Where revisions come from.
pub trait Origin: Send + Sync {
    /// Which commit the configured ref points at now (one request where possible).
    fn probe(&self) -> impl Future<Output = Result<Probe, SourceError>> + Send;
    /// True when the probed commit (and its tag object) is already in the local cache.
    fn has_revision(&self, probe: &Probe) -> impl Future<Output = bool> + Send;
    /// Brings the probed commit into the cache; returns the commit id that arrived.
    fn fetch(&self, probe: &Probe) -> impl Future<Output = Result<String, SourceError>> + Send;
    /// Checks the signature policy; `Some(signer)` when one was required and found.
    fn verify(
        &self,
        probe: &Probe,
        revision: &str,
    ) -> impl Future<Output = Result<Option<String>, SourceError>> + Send;
    /// The files of a cached revision.
    fn read(&self, revision: &str) -> impl Future<Output = Result<Manifests, SourceError>> + Send;
}

/// Where bundles go.
pub trait Deploy: Send + Sync {
    /// Makes the target hold the whole bundle.
    fn apply(
        &self,
        source: &str,
        revision: &str,
        bundle: &Bundle,
        mode: &Mode,
    ) -> impl Future<Output = Result<Applied, TargetError>> + Send;
    /// What differs from what was last applied, found as cheaply as the target allows.
    fn drifted(
        &self,
        source: &str,
        revision: &str,
    ) -> impl Future<Output = Result<Drift, TargetError>> + Send;
    /// Re-applies only the drifted objects.
    fn correct(
        &self,
        source: &str,
        revision: &str,
        bundle: &Bundle,
        objects: &[Drifted],
    ) -> impl Future<Output = Result<Applied, TargetError>> + Send;
    /// Why this replica must not apply now, or `None` when it may.
    fn standby(&self) -> Option<Leadership>;
}

impl Origin for Source {
    fn probe(&self) -> impl Future<Output = Result<Probe, SourceError>> + Send {
        Source::probe(self)
    }
    fn has_revision(&self, probe: &Probe) -> impl Future<Output = bool> + Send {
        Source::has_revision(self, probe)
    }
    fn fetch(&self, probe: &Probe) -> impl Future<Output = Result<String, SourceError>> + Send {
        Source::fetch(self, probe)
    }
    fn verify(
        &self,
        probe: &Probe,
        revision: &str,
    ) -> impl Future<Output = Result<Option<String>, SourceError>> + Send {
        Source::verify(self, probe, revision)
    }
    fn read(&self, revision: &str) -> impl Future<Output = Result<Manifests, SourceError>> + Send {
        Source::read(self, revision)
    }
}

impl Deploy for Target {
    fn apply(
        &self,
        source: &str,
        revision: &str,
        bundle: &Bundle,
        mode: &Mode,
    ) -> impl Future<Output = Result<Applied, TargetError>> + Send {
        Target::apply(self, source, revision, bundle, mode)
    }
    fn drifted(
        &self,
        source: &str,
        revision: &str,
    ) -> impl Future<Output = Result<Drift, TargetError>> + Send {
        Target::drifted(self, source, revision)
    }
    fn correct(
        &self,
        source: &str,
        revision: &str,
        bundle: &Bundle,
        objects: &[Drifted],
    ) -> impl Future<Output = Result<Applied, TargetError>> + Send {
        Target::correct(self, source, revision, bundle, objects)
    }
    fn standby(&self) -> Option<Leadership> {
        Target::standby(self)
    }
}

/// A shared stage is the stage: the tests keep a handle on their fakes to steer them and look inside.
impl<O: Origin> Origin for Arc<O> {
    fn probe(&self) -> impl Future<Output = Result<Probe, SourceError>> + Send {
        self.as_ref().probe()
    }
    fn has_revision(&self, probe: &Probe) -> impl Future<Output = bool> + Send {
        self.as_ref().has_revision(probe)
    }
    fn fetch(&self, probe: &Probe) -> impl Future<Output = Result<String, SourceError>> + Send {
        self.as_ref().fetch(probe)
    }
    fn verify(
        &self,
        probe: &Probe,
        revision: &str,
    ) -> impl Future<Output = Result<Option<String>, SourceError>> + Send {
        self.as_ref().verify(probe, revision)
    }
    fn read(&self, revision: &str) -> impl Future<Output = Result<Manifests, SourceError>> + Send {
        self.as_ref().read(revision)
    }
}

impl<D: Deploy> Deploy for Arc<D> {
    fn apply(
        &self,
        source: &str,
        revision: &str,
        bundle: &Bundle,
        mode: &Mode,
    ) -> impl Future<Output = Result<Applied, TargetError>> + Send {
        self.as_ref().apply(source, revision, bundle, mode)
    }
    fn drifted(
        &self,
        source: &str,
        revision: &str,
    ) -> impl Future<Output = Result<Drift, TargetError>> + Send {
        self.as_ref().drifted(source, revision)
    }
    fn correct(
        &self,
        source: &str,
        revision: &str,
        bundle: &Bundle,
        objects: &[Drifted],
    ) -> impl Future<Output = Result<Applied, TargetError>> + Send {
        self.as_ref().correct(source, revision, bundle, objects)
    }
    fn standby(&self) -> Option<Leadership> {
        self.as_ref().standby()
    }
}
