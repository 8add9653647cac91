//! `landform push` and `landform pull`: Flux-compatible OCI artifacts from the command line.

use std::collections::BTreeMap;
use std::path::PathBuf;

use crate::source::archive::Limits;
use crate::source::cache::Cache;
use crate::source::credentials;
use crate::source::fetch::FetchError;
use crate::source::oci::{self, Pin, Registry, Repository};

#[derive(Clone, Debug, clap::Args)]
pub struct PushArgs {
    /// A module directory or a single template file.
    pub input: PathBuf,
    /// Destination, `oci://host/repository:tag`.
    pub url: String,
    /// Source URL recorded in the org.opencontainers.image.source annotation.
    #[arg(long)]
    pub source: Option<String>,
    /// Revision recorded in the org.opencontainers.image.revision annotation (e.g. branch@sha1:…).
    #[arg(long)]
    pub revision: Option<String>,
    /// Extra manifest annotations, KEY=VALUE (repeatable).
    #[arg(long = "annotation", value_parser = parse_annotation)]
    pub annotations: Vec<(String, String)>,
    /// Talk plain HTTP to the registry.
    #[arg(long)]
    pub insecure: bool,
}

#[derive(Clone, Debug, clap::Args)]
pub struct PullArgs {
    /// `oci://host/repository:tag` or `oci://host/repository@sha256:…`.
    pub url: String,
    /// Directory to extract into (must not exist yet, or be empty).
    #[arg(long, short)]
    pub output: PathBuf,
    /// Media type of the layer to extract (default: Flux's content layer, else the only layer).
    #[arg(long)]
    pub layer_media_type: Option<String>,
    /// Talk plain HTTP to the registry.
    #[arg(long)]
    pub insecure: bool,
    /// Keep extracted artifacts here by digest and reuse them instead of downloading again.
    #[arg(long)]
    pub cache: Option<PathBuf>,
    /// Refuse artifacts that extract to more than this many bytes.
    #[arg(long, default_value_t = Limits::default().max_bytes)]
    pub max_bytes: u64,
    /// Refuse artifacts with more than this many entries.
    #[arg(long, default_value_t = Limits::default().max_files)]
    pub max_files: u64,
}

fn parse_annotation(s: &str) -> Result<(String, String), String> {
    s.split_once('=')
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .ok_or_else(|| format!("{s:?} is not KEY=VALUE"))
}

fn registry_for(repo: &Repository, insecure: bool) -> Result<Registry, FetchError> {
    let creds = match credentials::user_config() {
        Some(config) => credentials::lookup(&config, &repo.registry)
            .map_err(|e| FetchError::InvalidSource(format!("Docker config: {e}")))?,
        None => None,
    };
    Ok(Registry::new(insecure, creds))
}

/// RFC 3339 time of now, or of SOURCE_DATE_EPOCH when set (for reproducible manifests).
fn created() -> String {
    let ts = std::env::var("SOURCE_DATE_EPOCH")
        .ok()
        .and_then(|s| s.parse::<i64>().ok())
        .and_then(|s| jiff::Timestamp::from_second(s).ok())
        .unwrap_or_else(jiff::Timestamp::now);
    ts.strftime("%Y-%m-%dT%H:%M:%SZ").to_string()
}

pub async fn push(args: PushArgs) -> Result<String, FetchError> {
    let (repo, pin) = Repository::parse_pinned(&args.url)?;
    let Pin::Tag(tag) = pin else {
        return Err(FetchError::InvalidSource(
            "push needs a tag (oci://host/repository:tag), not a digest".into(),
        ));
    };
    if !args.input.exists() {
        return Err(FetchError::InvalidSource(format!(
            "{} does not exist",
            args.input.display()
        )));
    }
    let mut annotations = BTreeMap::from([(oci::ANNOTATION_CREATED.to_string(), created())]);
    if let Some(s) = args.source {
        annotations.insert(oci::ANNOTATION_SOURCE.into(), s);
    }
    if let Some(r) = args.revision {
        annotations.insert(oci::ANNOTATION_REVISION.into(), r);
    }
    annotations.extend(args.annotations);
    let digest = registry_for(&repo, args.insecure)?
        .push(&repo, &tag, &args.input, annotations)
        .await?;
    Ok(format!("pushed {}:{tag}@{digest}", repo.url()))
}

pub async fn pull(args: PullArgs) -> Result<String, FetchError> {
    let (repo, pin) = Repository::parse_pinned(&args.url)?;
    let registry = registry_for(&repo, args.insecure)?;
    let reference = match pin {
        Pin::Tag(tag) => crate::api::OciRef {
            tag: Some(tag),
            ..Default::default()
        },
        Pin::Digest(d) => crate::api::OciRef {
            digest: Some(d),
            ..Default::default()
        },
    };
    let resolved = registry.resolve(&repo, Some(&reference)).await?;
    if args.output.exists()
        && std::fs::read_dir(&args.output)
            .map(|mut d| d.next().is_some())
            .unwrap_or(true)
    {
        return Err(FetchError::InvalidSource(format!(
            "{} exists and is not empty",
            args.output.display()
        )));
    }
    let limits = Limits {
        max_bytes: args.max_bytes,
        max_files: args.max_files,
    };
    // Without --cache the "cache" is a scratch directory next to the output.
    let scratch;
    let cache = match &args.cache {
        Some(dir) => Cache::new(dir),
        None => {
            let parent = args
                .output
                .parent()
                .filter(|p| !p.as_os_str().is_empty())
                .unwrap_or(std::path::Path::new("."));
            scratch = tempfile::Builder::new()
                .prefix(".landform-pull-")
                .tempdir_in(parent)
                .map_err(|e| FetchError::failed("creating a scratch directory", e))?;
            Cache::new(scratch.path())
        }
    };
    let media = args.layer_media_type.clone();
    let key: crate::source::digest::Digest = resolved
        .digest
        .parse()
        .map_err(|e| FetchError::InvalidSource(format!("manifest digest: {e}")))?;
    let entry = cache
        .get_or_fetch(&key, &limits, |dest| {
            let registry = &registry;
            let repo = &repo;
            let digest = resolved.digest.clone();
            async move {
                registry
                    .fetch_layer(repo, &digest, media.as_deref(), &dest)
                    .await?;
                Ok(())
            }
        })
        .await?;
    crate::source::cache::place_tree(&entry.dir, &args.output, args.cache.is_none())
        .map_err(|e| FetchError::failed(format!("writing {}", args.output.display()), e))?;
    Ok(format!(
        "pulled {}:{} to {}{}",
        repo.url(),
        resolved.revision,
        args.output.display(),
        if entry.hit { " (from cache)" } else { "" }
    ))
}
