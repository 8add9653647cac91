//! The components scripts/testenv provides are real and usable: later suites rely on them.

mod support;

use support::*;

#[tokio::test]
async fn registries_answer_anonymously_and_with_basic_auth() {
    let env = testenv();
    let plain = &env["LANDFORM_TEST_REGISTRY"];
    assert_eq!(http_get(plain, "/v2/", None).await.map(|r| r.0), Some(200));

    let auth = &env["LANDFORM_TEST_REGISTRY_AUTH"];
    let creds = format!(
        "{}:{}",
        env["LANDFORM_TEST_REGISTRY_USER"], env["LANDFORM_TEST_REGISTRY_PASSWORD"]
    );
    assert_eq!(http_get(auth, "/v2/", None).await.map(|r| r.0), Some(401));
    assert_eq!(
        http_get(auth, "/v2/", Some("landform:wrong"))
            .await
            .map(|r| r.0),
        Some(401)
    );
    assert_eq!(
        http_get(auth, "/v2/", Some(&creds)).await.map(|r| r.0),
        Some(200)
    );
}

#[tokio::test]
async fn moto_serves_cloudformation() {
    let env = testenv();
    let url = env["LANDFORM_TEST_MOTO"]
        .trim_start_matches("http://")
        .to_string();
    // moto routes by the service named in the (unchecked) SigV4 credential scope.
    let auth = "AWS4-HMAC-SHA256 Credential=test/20260101/us-east-1/cloudformation/aws4_request, SignedHeaders=host, Signature=0";
    let headers = [
        ("Authorization", auth),
        ("Content-Type", "application/x-www-form-urlencoded"),
    ];
    let (code, body) = http_request(
        &url,
        "POST",
        "/",
        &headers,
        "Action=ListStacks&Version=2010-05-15",
    )
    .await
    .unwrap();
    assert_eq!(code, 200, "{body}");
    assert!(body.contains("ListStacksResponse"), "{body}");
}

#[test]
fn tofu_installs_providers_from_the_local_mirror_only() {
    let version = testenv_tool("tofu").arg("version").output().unwrap();
    let text = String::from_utf8_lossy(&version.stdout);
    assert!(text.starts_with("OpenTofu v1.12."), "{text}");

    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("main.tf"),
        r#"
terraform {
  required_providers {
    null   = { source = "hashicorp/null" }
    random = { source = "hashicorp/random" }
    local  = { source = "hashicorp/local" }
  }
}
resource "null_resource" "n" {}
resource "random_pet" "p" {}
resource "local_file" "f" {
  filename = "${path.module}/f.txt"
  content  = random_pet.p.id
}
"#,
    )
    .unwrap();
    let run = |args: &[&str]| {
        let out = testenv_tool("tofu")
            .current_dir(dir.path())
            .args(args)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "tofu {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).to_string()
    };
    run(&["init", "-input=false", "-no-color"]);
    run(&["apply", "-auto-approve", "-input=false", "-no-color"]);
    let pet = std::fs::read_to_string(dir.path().join("f.txt")).unwrap();
    assert!(
        pet.contains('-'),
        "random_pet writes name-name, got {pet:?}"
    );
}

#[test]
fn oras_is_available() {
    let out = testenv_tool("oras").arg("version").output().unwrap();
    assert!(String::from_utf8_lossy(&out.stdout).contains("Version:"));
}
