//! OCI artifacts against the real distribution registry, with oras as an independent client.

mod support;

use std::path::Path;

use landform::api::OciRef;
use landform::source::oci::{Registry, Repository};
use support::*;
use tar::EntryType::*;

fn registry() -> String {
    testenv()["LANDFORM_TEST_REGISTRY"].clone()
}

fn unique(prefix: &str) -> String {
    let n = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!("{prefix}-{:x}", n & 0xffff_ffff)
}

fn module_dir() -> std::path::PathBuf {
    repo_root().join("examples/terraform/hello")
}

fn oras(args: &[&str]) -> (bool, String, String) {
    run(testenv_tool("oras").args(args))
}

/// `oras push` of files in `dir` (each `name:mediaType`) to `reference`.
fn oras_push(dir: &Path, reference: &str, extra: &[&str], files: &[&str]) {
    let (ok, _, err) = run(testenv_tool("oras")
        .current_dir(dir)
        .args(["push", "--plain-http", reference])
        .args(extra)
        .args(files));
    assert!(ok, "{err}");
}

fn same_tree(a: &Path, b: &Path) {
    for entry in std::fs::read_dir(a).unwrap() {
        let entry = entry.unwrap();
        let other = b.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            same_tree(&entry.path(), &other);
        } else {
            assert_eq!(
                std::fs::read(entry.path()).unwrap(),
                std::fs::read(&other).unwrap(),
                "{}",
                other.display()
            );
        }
    }
}

#[test]
fn push_is_flux_compatible_as_oras_sees_it_and_reproducible() {
    let repo = format!("{}/{}", registry(), unique("push"));
    let url = format!("oci://{repo}:1.0.0");
    let (ok, out, err) = run(landform()
        .args(["push", module_dir().to_str().unwrap(), &url, "--insecure"])
        .args([
            "--source",
            "https://git.example/infra",
            "--revision",
            "main@sha1:0123abcd",
        ])
        .args(["--annotation", "team=platform"]));
    assert!(ok, "{err}");
    assert!(
        out.starts_with(&format!("pushed oci://{repo}:1.0.0@sha256:")),
        "{out}"
    );

    let (ok, manifest, err) = oras(&[
        "manifest",
        "fetch",
        "--plain-http",
        &format!("{repo}:1.0.0"),
    ]);
    assert!(ok, "{err}");
    let m: serde_json::Value = serde_json::from_str(&manifest).unwrap();
    assert_eq!(m["mediaType"], "application/vnd.oci.image.manifest.v1+json");
    assert_eq!(
        m["config"]["mediaType"],
        "application/vnd.cncf.flux.config.v1+json"
    );
    assert_eq!(m["layers"].as_array().unwrap().len(), 1);
    assert_eq!(
        m["layers"][0]["mediaType"],
        "application/vnd.cncf.flux.content.v1.tar+gzip"
    );
    let ann = &m["annotations"];
    assert_eq!(
        ann["org.opencontainers.image.source"],
        "https://git.example/infra"
    );
    assert_eq!(
        ann["org.opencontainers.image.revision"],
        "main@sha1:0123abcd"
    );
    assert_eq!(ann["team"], "platform");
    let created = ann["org.opencontainers.image.created"].as_str().unwrap();
    assert!(created.parse::<jiff::Timestamp>().is_ok(), "{created}");

    // oras fetches the layer (Flux layers carry no title, so by blob digest); it is a tarball
    // of the module whose digest is the layer's.
    let dir = tempfile::tempdir().unwrap();
    let blob = dir.path().join("layer.tgz");
    let layer_ref = format!("{repo}@{}", m["layers"][0]["digest"].as_str().unwrap());
    let (ok, _, err) = run(testenv_tool("oras")
        .args(["blob", "fetch", "--plain-http", &layer_ref, "--output"])
        .arg(&blob));
    assert!(ok, "{err}");
    let bytes = std::fs::read(&blob).unwrap();
    assert_eq!(
        landform::source::digest::sha256(&bytes).to_string(),
        m["layers"][0]["digest"].as_str().unwrap()
    );
    let out = dir.path().join("x");
    landform::source::archive::extract(&bytes[..], &out, &Default::default()).unwrap();
    same_tree(&module_dir(), &out);

    // Same input, same layer digest.
    let (ok, _, err) = run(landform().args([
        "push",
        module_dir().to_str().unwrap(),
        &format!("oci://{repo}:again"),
        "--insecure",
    ]));
    assert!(ok, "{err}");
    let (_, again, _) = oras(&[
        "manifest",
        "fetch",
        "--plain-http",
        &format!("{repo}:again"),
    ]);
    let again: serde_json::Value = serde_json::from_str(&again).unwrap();
    assert_eq!(again["layers"][0]["digest"], m["layers"][0]["digest"]);
}

#[test]
fn pulls_what_oras_pushed_and_what_landform_pushed() {
    let repo = format!("{}/{}", registry(), unique("oras"));
    let work = tempfile::tempdir().unwrap();
    let tgz = work.path().join("module.tgz");
    let mut buf = vec![];
    landform::source::pack::pack(&module_dir(), &mut buf).unwrap();
    std::fs::write(&tgz, &buf).unwrap();
    std::fs::write(work.path().join("config.json"), "{}").unwrap();
    let (ok, _, err) = run(testenv_tool("oras")
        .current_dir(work.path())
        .args(["push", "--plain-http", &format!("{repo}:v1")])
        .args([
            "--config",
            "config.json:application/vnd.cncf.flux.config.v1+json",
        ])
        .arg("module.tgz:application/vnd.cncf.flux.content.v1.tar+gzip"));
    assert!(ok, "{err}");

    let out = work.path().join("pulled");
    let (ok, msg, err) = run(landform()
        .args(["pull", &format!("oci://{repo}:v1"), "--insecure", "-o"])
        .arg(&out));
    assert!(ok, "{err}");
    assert!(msg.contains(&format!("oci://{repo}:v1@sha256:")), "{msg}");
    same_tree(&module_dir(), &out);

    // A generic artifact whose single layer has another media type.
    let plain = format!("{}/{}", registry(), unique("plain"));
    oras_push(
        work.path(),
        &format!("{plain}:v1"),
        &[],
        &["module.tgz:application/vnd.example.module.v1.tar+gzip"],
    );
    let out2 = work.path().join("pulled2");
    let (ok, _, err) = run(landform()
        .args([
            "pull",
            &format!("oci://{plain}:v1"),
            "--insecure",
            "--layer-media-type",
            "application/vnd.example.module.v1.tar+gzip",
            "-o",
        ])
        .arg(&out2));
    assert!(ok, "{err}");
    same_tree(&module_dir(), &out2);
    let (ok, _, err) = run(landform()
        .args([
            "pull",
            &format!("oci://{plain}:v1"),
            "--insecure",
            "--layer-media-type",
            "application/vnd.other",
            "-o",
        ])
        .arg(work.path().join("pulled3")));
    assert!(!ok);
    assert!(
        err.contains("(InvalidArtifact)")
            && err.contains("no layer of media type application/vnd.other"),
        "{err}"
    );
}

#[tokio::test]
async fn resolves_tags_semver_ranges_and_digests_without_downloading() {
    let name = unique("semver");
    let repo_url = format!("oci://{}/{name}", registry());
    let mut digests = std::collections::HashMap::new();
    for tag in ["1.0.0", "1.2.0", "v1.3.0-rc.1", "2.0.0", "latest"] {
        let (ok, out, err) = run(landform()
            .args([
                "push",
                module_dir().to_str().unwrap(),
                &format!("{repo_url}:{tag}"),
                "--insecure",
            ])
            .env(
                "SOURCE_DATE_EPOCH",
                format!("{}", 1_700_000_000 + tag.len()),
            ));
        assert!(ok, "{err}");
        digests.insert(tag, out.trim().rsplit('@').next().unwrap().to_string());
    }
    let repo = Repository::parse(&repo_url).unwrap();
    let reg = Registry::new(true, None);
    let r = |semver: &str, filter: Option<&str>| OciRef {
        semver: Some(semver.into()),
        semver_filter: filter.map(str::to_string),
        ..Default::default()
    };
    let got = reg
        .resolve(&repo, Some(&r(">=1.0.0 <2.0.0", None)))
        .await
        .unwrap();
    assert_eq!(got.revision, format!("1.2.0@{}", digests["1.2.0"]));
    let got = reg
        .resolve(&repo, Some(&r(">=1.0.0", Some("^1\\."))))
        .await
        .unwrap();
    assert_eq!(
        got.revision,
        format!("1.2.0@{}", digests["1.2.0"]),
        "the filter excludes 2.0.0"
    );
    let got = reg.resolve(&repo, None).await.unwrap();
    assert_eq!(got.revision, format!("latest@{}", digests["latest"]));
    let by_digest = OciRef {
        tag: Some("2.0.0".into()),
        digest: Some(digests["1.0.0"].clone()),
        ..Default::default()
    };
    let got = reg.resolve(&repo, Some(&by_digest)).await.unwrap();
    assert_eq!(got.digest, digests["1.0.0"], "a digest wins over a tag");
    let err = reg.resolve(&repo, Some(&r(">=3", None))).await.unwrap_err();
    assert_eq!(err.reason().as_str(), "NoMatchingVersion");
    assert!(err.to_string().contains(">=3"), "{err}");
    let missing = OciRef {
        tag: Some("9.9.9".into()),
        ..Default::default()
    };
    assert_eq!(
        reg.resolve(&repo, Some(&missing))
            .await
            .unwrap_err()
            .reason()
            .as_str(),
        "ArtifactNotFound"
    );
}

#[tokio::test]
async fn semver_ranges_see_every_page_of_tags() {
    let name = unique("pages");
    let repo_url = format!("oci://{}/{name}", registry());
    let (ok, _, err) = run(landform().args([
        "push",
        module_dir().to_str().unwrap(),
        &format!("{repo_url}:0.0.0"),
        "--insecure",
    ]));
    assert!(ok, "{err}");
    // More tags than one page holds; the newest sorts last.
    let mut tags: Vec<String> = (1..=1000).map(|i| format!("0.0.{i}")).collect();
    tags.push("5.0.0".into());
    let (ok, _, err) = run(testenv_tool("oras")
        .args([
            "tag",
            "--plain-http",
            &format!("{}/{name}:0.0.0", registry()),
        ])
        .args(&tags));
    assert!(ok, "{err}");
    let got = Registry::new(true, None)
        .resolve(
            &Repository::parse(&repo_url).unwrap(),
            Some(&OciRef {
                semver: Some(">=1.0.0".into()),
                ..Default::default()
            }),
        )
        .await
        .unwrap();
    assert!(got.revision.starts_with("5.0.0@"), "{}", got.revision);
}

#[test]
fn basic_auth_from_the_docker_config() {
    let env = testenv();
    let host = &env["LANDFORM_TEST_REGISTRY_AUTH"];
    let url = format!("oci://{host}/{}:1", unique("auth"));
    let docker = tempfile::tempdir().unwrap();
    let (ok, _, err) = run(landform()
        .args(["push", module_dir().to_str().unwrap(), &url, "--insecure"])
        .env("DOCKER_CONFIG", docker.path()));
    assert!(!ok);
    assert!(err.contains("(SourceUnauthorized)"), "{err}");

    use base64::Engine;
    let auth = base64::engine::general_purpose::STANDARD.encode(format!(
        "{}:{}",
        env["LANDFORM_TEST_REGISTRY_USER"], env["LANDFORM_TEST_REGISTRY_PASSWORD"]
    ));
    std::fs::write(
        docker.path().join("config.json"),
        format!(r#"{{"auths":{{"{host}":{{"auth":"{auth}"}}}}}}"#),
    )
    .unwrap();
    let (ok, _, err) = run(landform()
        .args(["push", module_dir().to_str().unwrap(), &url, "--insecure"])
        .env("DOCKER_CONFIG", docker.path()));
    assert!(ok, "{err}");
    let out = docker.path().join("out");
    let (ok, _, err) = run(landform()
        .args(["pull", &url, "--insecure", "-o"])
        .arg(&out)
        .env("DOCKER_CONFIG", docker.path()));
    assert!(ok, "{err}");
    assert!(out.join("main.tf").exists());
    assert!(!err.contains(&env["LANDFORM_TEST_REGISTRY_PASSWORD"]));
}

/// Pushes a raw tarball with oras in Flux's format and pulls it with landform.
fn pull_hostile(
    entries: &[RawEntry],
    extra: &[&str],
) -> (String, std::path::PathBuf, tempfile::TempDir) {
    let repo = format!("{}/{}", registry(), unique("hostile"));
    let work = tempfile::tempdir().unwrap();
    std::fs::write(work.path().join("a.tgz"), raw_targz(entries)).unwrap();
    oras_push(
        work.path(),
        &format!("{repo}:x"),
        &[],
        &["a.tgz:application/vnd.cncf.flux.content.v1.tar+gzip"],
    );
    let out = work.path().join("out");
    let (ok, _, err) = run(landform()
        .args(["pull", &format!("oci://{repo}:x"), "--insecure", "-o"])
        .arg(&out)
        .args(extra));
    assert!(!ok, "pulling a hostile artifact succeeded");
    (err, out, work)
}

#[test]
fn hostile_artifacts_are_refused_and_nothing_is_extracted() {
    let cases: [(&[RawEntry], &[&str], &str, &str); 4] = [
        (
            &[
                ("ok.tf", Regular, "", b"x"),
                ("../evil.tf", Regular, "", b"x"),
            ],
            &[],
            "(UnsafeArtifact)",
            "contains '..'",
        ),
        (
            &[("l", Symlink, "../../../etc/passwd", b"")],
            &[],
            "(UnsafeArtifact)",
            "points outside the artifact",
        ),
        (
            &[("big.tf", Regular, "", &[b'x'; 4096])],
            &["--max-bytes", "1024"],
            "(ArtifactTooLarge)",
            "limit of 1024 bytes",
        ),
        (
            &[("dev", Char, "", b"")],
            &[],
            "(UnsafeArtifact)",
            "character device",
        ),
    ];
    for (entries, extra, reason, words) in cases {
        let (err, out, _work) = pull_hostile(entries, extra);
        assert!(
            err.contains(reason) && err.contains(words),
            "{reason}: {err}"
        );
        assert!(!out.exists(), "{reason}: output was created");
    }
}

#[test]
fn a_huge_pax_header_is_refused_before_it_is_read_with_a_short_answer() {
    // 50 MiB of PAX path in a tarball that compresses to a few hundred KB.
    let pax = format!("52428830 path={}\n", "a".repeat(50 << 20));
    let (err, out, _work) = pull_hostile(
        &[
            (
                "./PaxHeaders/huge",
                tar::EntryType::XHeader,
                "",
                pax.as_bytes(),
            ),
            ("main.tf", Regular, "", b"x"),
        ],
        &[],
    );
    assert!(
        err.contains("(ArtifactTooLarge)")
            && err.contains("./PaxHeaders/huge")
            && err.contains("PAX header"),
        "{err}"
    );
    assert!(
        err.len() < 1000,
        "a bounded answer, not {} bytes",
        err.len()
    );
    assert!(!out.exists());
}

#[test]
fn unreachable_registry_and_missing_digest_say_so() {
    let port = free_port();
    let (ok, _, err) = run(landform().args([
        "pull",
        &format!("oci://127.0.0.1:{port}/x/y:1"),
        "--insecure",
        "-o",
        "/tmp/landform-never",
    ]));
    assert!(!ok);
    assert!(
        err.contains("(SourceUnavailable)") && err.contains(&format!("127.0.0.1:{port}")),
        "{err}"
    );

    let missing = format!("sha256:{}", "0".repeat(64));
    let repo = format!("{}/{}", registry(), unique("missing"));
    let (ok, _, err) = run(landform().args([
        "pull",
        &format!("oci://{repo}@{missing}"),
        "--insecure",
        "-o",
        "/tmp/landform-never",
    ]));
    assert!(!ok);
    assert!(err.contains("(ArtifactNotFound)"), "{err}");
}

#[test]
fn a_cached_digest_is_not_downloaded_again() {
    let repo = format!("{}/{}", registry(), unique("cache"));
    let url = format!("oci://{repo}:1");
    assert!(run(landform().args(["push", module_dir().to_str().unwrap(), &url, "--insecure"])).0);
    let work = tempfile::tempdir().unwrap();
    let cache = work.path().join("cache");
    let (ok, first, err) = run(landform()
        .args(["pull", &url, "--insecure", "--cache"])
        .arg(&cache)
        .arg("-o")
        .arg(work.path().join("a")));
    assert!(ok, "{err}");
    assert!(!first.contains("from cache"), "{first}");
    let (ok, second, err) = run(landform()
        .args(["pull", &url, "--insecure", "--cache"])
        .arg(&cache)
        .arg("-o")
        .arg(work.path().join("b")));
    assert!(ok, "{err}");
    assert!(second.contains("(from cache)"), "{second}");
    same_tree(&module_dir(), &work.path().join("b"));
}
