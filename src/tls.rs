//! One process-wide TLS crypto provider (ring, as kube uses), so that HTTP clients built with
//! rustls but no provider of their own work.

/// Installs the provider; later calls do nothing.
pub fn init() {
    // Err means a provider is installed already, which is what we want.
    let _ = rustls::crypto::ring::default_provider().install_default();
}
