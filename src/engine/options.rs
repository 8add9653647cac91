//! The runner's settings, from its command line.

use std::path::PathBuf;

use crate::source::archive::Limits;

#[derive(Clone, Debug)]
pub struct Options {
    pub tofu: PathBuf,
    pub terraform: PathBuf,
    pub cache_dir: PathBuf,
    pub limits: Limits,
    /// Passed to the engine as TF_PLUGIN_CACHE_DIR, so providers are downloaded once.
    pub plugin_cache_dir: Option<PathBuf>,
    /// In a pod: the kubernetes backend uses the pod's service account.
    pub in_cluster: bool,
    /// Outside a pod: the kubeconfig the kubernetes backend uses.
    pub kubeconfig: Option<PathBuf>,
}
