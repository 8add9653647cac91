//! Streaming download with digest verification: bytes go to a file as they arrive and are hashed
//! on the way, so memory stays flat whatever the artifact size. A mismatch leaves nothing behind.

use std::path::Path;

use bytes::Bytes;
use futures::{Stream, StreamExt};
use tokio::io::AsyncWriteExt;

use super::SourceReason;
use super::digest::{Digest, Hasher};

/// Why an artifact could not be fetched. `reason()` is the condition reason.
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    #[error("{0}")]
    InvalidSource(String),
    #[error("cannot reach {target}: {detail}")]
    Unreachable { target: String, detail: String },
    #[error("{target} refused the credentials: {detail}")]
    Unauthorized { target: String, detail: String },
    #[error("{what} was not found (it may have been deleted or garbage-collected)")]
    NotFound { what: String },
    #[error("no tag of {repository} matches the semver range {range:?}{filter}")]
    NoMatchingVersion {
        repository: String,
        range: String,
        filter: String,
    },
    #[error("artifact {reference} has no layer of media type {media_type}")]
    NoLayer {
        reference: String,
        media_type: String,
    },
    #[error("digest mismatch for {what}: expected {expected}, got {actual}; nothing was extracted")]
    DigestMismatch {
        what: String,
        expected: String,
        actual: String,
    },
    #[error("{what} is larger than the {declared} bytes its descriptor declares")]
    LargerThanDeclared { what: String, declared: u64 },
    #[error(transparent)]
    Extract(#[from] super::archive::ExtractError),
    #[error("{context}: {detail}")]
    Failed { context: String, detail: String },
}

impl FetchError {
    pub fn reason(&self) -> SourceReason {
        match self {
            Self::InvalidSource(_) => SourceReason::InvalidSource,
            Self::Unreachable { .. } => SourceReason::SourceUnavailable,
            Self::Unauthorized { .. } => SourceReason::SourceUnauthorized,
            Self::NotFound { .. } => SourceReason::ArtifactNotFound,
            Self::NoMatchingVersion { .. } => SourceReason::NoMatchingVersion,
            Self::NoLayer { .. } => SourceReason::InvalidArtifact,
            Self::DigestMismatch { .. } => SourceReason::DigestMismatch,
            Self::LargerThanDeclared { .. } => SourceReason::InvalidArtifact,
            Self::Extract(e) => e.reason(),
            Self::Failed { .. } => SourceReason::FetchFailed,
        }
    }

    /// Whether trying again later can help.
    pub fn retryable(&self) -> bool {
        !matches!(self, Self::InvalidSource(_))
    }

    pub fn failed(context: impl Into<String>, detail: impl std::fmt::Display) -> Self {
        Self::Failed {
            context: context.into(),
            detail: detail.to_string(),
        }
    }
}

/// Writes `stream` to `dest`, hashing as it goes; on a digest mismatch removes `dest` and fails
/// naming both digests. Returns the number of bytes written.
/// `declared`: the size the blob's descriptor gives, if any; a stream longer than that is cut
/// off there rather than downloaded whole.
pub async fn write_verified<E: std::fmt::Display>(
    mut stream: impl Stream<Item = Result<Bytes, E>> + Unpin,
    expected: &Digest,
    declared: Option<u64>,
    what: &str,
    dest: &Path,
) -> Result<u64, FetchError> {
    let io_err = |e: std::io::Error| FetchError::failed(format!("writing {}", dest.display()), e);
    // Network chunks are small (tens of KiB); batching them into large writes keeps the number
    // of blocking file operations low.
    let file = tokio::fs::File::create(dest).await.map_err(io_err)?;
    let mut file = tokio::io::BufWriter::with_capacity(1 << 20, file);
    let mut hasher = Hasher::new(expected.algorithm);
    let mut written = 0u64;
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| FetchError::failed(format!("downloading {what}"), e))?;
        written += chunk.len() as u64;
        if let Some(declared) = declared.filter(|d| written > *d) {
            drop(file);
            let _ = tokio::fs::remove_file(dest).await;
            return Err(FetchError::LargerThanDeclared {
                what: what.to_string(),
                declared,
            });
        }
        hasher.update(&chunk);
        file.write_all(&chunk).await.map_err(io_err)?;
    }
    file.flush().await.map_err(io_err)?;
    drop(file);
    let actual = hasher.finish();
    if &actual != expected {
        let _ = tokio::fs::remove_file(dest).await;
        return Err(FetchError::DigestMismatch {
            what: what.to_string(),
            expected: expected.to_string(),
            actual: actual.to_string(),
        });
    }
    Ok(written)
}

/// Downloads an HTTP(S) URL (a Flux artifact) to `dest`, verifying `expected`.
pub async fn download(
    client: &reqwest::Client,
    url: &str,
    expected: &Digest,
    dest: &Path,
) -> Result<u64, FetchError> {
    let response = client
        .get(url)
        .send()
        .await
        .map_err(|e| FetchError::Unreachable {
            target: url.to_string(),
            detail: e.to_string(),
        })?;
    match response.status() {
        s if s.is_success() => {}
        reqwest::StatusCode::NOT_FOUND | reqwest::StatusCode::GONE => {
            return Err(FetchError::NotFound {
                what: format!("artifact {url}"),
            });
        }
        reqwest::StatusCode::UNAUTHORIZED | reqwest::StatusCode::FORBIDDEN => {
            return Err(FetchError::Unauthorized {
                target: url.to_string(),
                detail: response.status().to_string(),
            });
        }
        s => {
            return Err(FetchError::failed(
                format!("downloading {url}"),
                format!("HTTP {s}"),
            ));
        }
    }
    write_verified(response.bytes_stream(), expected, None, url, dest).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::source::digest::sha256;

    #[tokio::test]
    async fn verifies_while_streaming_and_removes_a_mismatch() {
        let dir = tempfile::tempdir().unwrap();
        let dest = dir.path().join("a");
        let chunks = || {
            futures::stream::iter(vec![
                Ok::<_, std::io::Error>(Bytes::from_static(b"hel")),
                Ok(Bytes::from_static(b"lo")),
            ])
        };
        let n = write_verified(chunks(), &sha256(b"hello"), Some(5), "a", &dest)
            .await
            .unwrap();
        assert_eq!(n, 5);
        assert_eq!(std::fs::read(&dest).unwrap(), b"hello");

        // Longer than its descriptor says: cut off, and nothing is left.
        let err = write_verified(chunks(), &sha256(b"hello"), Some(3), "the layer", &dest)
            .await
            .unwrap_err();
        assert!(
            matches!(err, FetchError::LargerThanDeclared { declared: 3, .. }),
            "{err}"
        );
        assert!(!dest.exists());

        let err = write_verified(chunks(), &sha256(b"other"), None, "the artifact", &dest)
            .await
            .unwrap_err();
        assert_eq!(err.reason(), SourceReason::DigestMismatch);
        let msg = err.to_string();
        assert!(
            msg.contains(&sha256(b"other").to_string())
                && msg.contains(&sha256(b"hello").to_string()),
            "{msg}"
        );
        assert!(!dest.exists(), "a mismatched download is removed");
    }
}
