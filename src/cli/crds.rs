//! `landform crds`: the CustomResourceDefinitions, as one multi-document YAML stream.

use crate::api;

/// Renders every CRD as YAML, each document introduced by `---`.
pub fn render() -> Result<String, serde_yaml::Error> {
    let mut out = String::new();
    for crd in api::crds() {
        out.push_str("---\n");
        out.push_str(&serde_yaml::to_string(&crd)?);
    }
    Ok(out)
}
