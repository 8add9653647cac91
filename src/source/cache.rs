//! Extracted artifacts kept by digest: a digest already in the cache is never downloaded again.

use std::future::Future;
use std::path::{Path, PathBuf};

use super::archive::{self, Limits};
use super::digest::Digest;
use super::fetch::FetchError;

pub struct Cache {
    root: PathBuf,
}

/// Where an artifact's tree is, and whether it came from the cache.
#[derive(Debug)]
pub struct Entry {
    pub dir: PathBuf,
    pub hit: bool,
}

impl Cache {
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self { root: root.into() }
    }

    /// The directory of a digest: `<algorithm>/<hex>`, from a parsed digest only (a digest as
    /// a registry or a source wrote it could hold `/` or `..`).
    pub fn dir_for(&self, digest: &Digest) -> PathBuf {
        self.root.join(digest.algorithm.name()).join(&digest.hex)
    }

    /// The extracted tree of `digest`; on a miss, `download` writes the archive to the path it is
    /// given, which is then extracted and moved into place atomically, so a crash never leaves
    /// a half-extracted tree that looks complete.
    pub async fn get_or_fetch<F, Fut>(
        &self,
        digest: &Digest,
        limits: &Limits,
        download: F,
    ) -> Result<Entry, FetchError>
    where
        F: FnOnce(PathBuf) -> Fut,
        Fut: Future<Output = Result<(), FetchError>>,
    {
        let dir = self.dir_for(digest);
        if dir.is_dir() {
            return Ok(Entry { dir, hit: true });
        }
        let io = |what: &str, p: &Path| {
            let context = format!("{what} {}", p.display());
            move |e: std::io::Error| FetchError::failed(context, e)
        };
        let parent = dir.parent().unwrap_or(&self.root).to_path_buf();
        tokio::fs::create_dir_all(&parent)
            .await
            .map_err(io("creating", &parent))?;
        let work = tempfile::Builder::new()
            .prefix(".incoming-")
            .tempdir_in(&parent)
            .map_err(io("creating a directory in", &parent))?;
        let archive_path = work.path().join("artifact");
        download(archive_path.clone()).await?;
        let tree = work.path().join("tree");
        let limits = *limits;
        let extract_to = tree.clone();
        tokio::task::spawn_blocking(move || {
            let file = std::fs::File::open(&archive_path)
                .map_err(|e| FetchError::failed("reading the download", e))?;
            archive::extract(file, &extract_to, &limits).map_err(FetchError::from)
        })
        .await
        .map_err(|e| FetchError::failed("extracting", e))??;
        match tokio::fs::rename(&tree, &dir).await {
            Ok(()) => {}
            // Another fetch of the same digest finished first; its tree is as good as ours.
            Err(_) if dir.is_dir() => {}
            Err(e) => return Err(io("moving into", &dir)(e)),
        }
        Ok(Entry { dir, hit: false })
    }
}

/// Puts an extracted tree at `to`: moved when it is scratch (`moved`), else copied so that the
/// cached tree stays pristine. Links are copied as links.
pub fn place_tree(from: &Path, to: &Path, moved: bool) -> std::io::Result<()> {
    if moved {
        if to.exists() {
            std::fs::remove_dir(to)?;
        }
        return std::fs::rename(from, to);
    }
    std::fs::create_dir_all(to)?;
    for entry in std::fs::read_dir(from)? {
        let entry = entry?;
        let target = to.join(entry.file_name());
        let ty = entry.file_type()?;
        if ty.is_dir() {
            place_tree(&entry.path(), &target, false)?;
        } else if ty.is_symlink() {
            std::os::unix::fs::symlink(std::fs::read_link(entry.path())?, &target)?;
        } else {
            std::fs::copy(entry.path(), &target)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_cached_digest_is_not_fetched_again_and_failures_leave_nothing() {
        let root = tempfile::tempdir().unwrap();
        let cache = Cache::new(root.path());
        let mut tarball = vec![];
        let src = tempfile::tempdir().unwrap();
        std::fs::write(src.path().join("main.tf"), "x").unwrap();
        crate::source::pack::pack(src.path(), &mut tarball).unwrap();
        let digest = crate::source::digest::sha256(&tarball);

        let bytes = tarball.clone();
        let first = cache
            .get_or_fetch(&digest, &Limits::default(), |p| async move {
                std::fs::write(p, bytes).unwrap();
                Ok(())
            })
            .await
            .unwrap();
        assert!(!first.hit);
        assert_eq!(
            std::fs::read_to_string(first.dir.join("main.tf")).unwrap(),
            "x"
        );

        let second = cache
            .get_or_fetch(&digest, &Limits::default(), |_| async {
                panic!("fetched again")
            })
            .await
            .unwrap();
        assert!(second.hit);
        assert_eq!(second.dir, first.dir);

        let other: Digest = format!("sha256:{}", "0".repeat(64)).parse().unwrap();
        let err = cache
            .get_or_fetch(&other, &Limits::default(), |p| async move {
                std::fs::write(p, b"not an archive").unwrap();
                Ok(())
            })
            .await
            .unwrap_err();
        assert_eq!(err.reason(), crate::source::SourceReason::InvalidArtifact);
        assert!(!cache.dir_for(&other).exists());
        let leftovers: Vec<_> = std::fs::read_dir(cache.dir_for(&other).parent().unwrap())
            .unwrap()
            .collect();
        assert_eq!(leftovers.len(), 1, "only the good entry remains");
    }
}
