//! `crds/` must be exactly what `landform crds` prints.

#[test]
fn crds_directory_is_up_to_date() {
    let expected = landform::cli::crds::render().expect("rendering CRDs");
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/crds/landform.dev.yaml");
    let actual = std::fs::read_to_string(path).expect("reading crds/landform.dev.yaml");
    assert!(
        actual == expected,
        "crds/landform.dev.yaml is stale; regenerate it with: cargo run -- crds > crds/landform.dev.yaml"
    );
}

#[test]
fn crds_carry_names_columns_and_status() {
    let crds = landform::api::crds();
    let names: Vec<_> = crds
        .iter()
        .map(|c| c.metadata.name.clone().unwrap())
        .collect();
    assert_eq!(
        names,
        [
            "terraforms.landform.dev",
            "cloudformationstacks.landform.dev"
        ]
    );
    for (crd, short) in crds.iter().zip(["tf", "cfnstack"]) {
        assert_eq!(
            crd.spec.names.short_names.as_deref(),
            Some(&[short.to_string()][..])
        );
        assert_eq!(
            crd.spec.names.categories.as_deref(),
            Some(&["landform".to_string()][..])
        );
        let v = &crd.spec.versions[0];
        assert_eq!(v.name, "v1alpha1");
        assert!(v.subresources.as_ref().unwrap().status.is_some());
        let cols: Vec<_> = v
            .additional_printer_columns
            .as_ref()
            .unwrap()
            .iter()
            .map(|c| c.name.as_str())
            .collect();
        assert_eq!(
            cols,
            [
                "Ready", "Reason", "Status", "Revision", "Plan", "Drift", "Age"
            ]
        );
    }
}
