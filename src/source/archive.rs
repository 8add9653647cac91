//! Safe extraction of tar and tar+gzip artifacts.
//!
//! An artifact is untrusted input. Extraction refuses absolute paths, `..`, links that leave the
//! destination (checked lexically while extracting and again, following every link, afterwards),
//! writes through links, device files and FIFOs, and stops at a byte and file-count limit. It
//! streams: memory use does not depend on the artifact size.

use std::collections::HashSet;
use std::fs;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::path::{Component, Path, PathBuf};

use tar::EntryType;

use super::guard::{self, Guard, Refused};

/// Extraction limits.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Total bytes of file content.
    pub max_bytes: u64,
    /// Entries of any kind.
    pub max_files: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_bytes: 1 << 30,
            max_files: 50_000,
        }
    }
}

/// What was extracted.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    pub files: u64,
    pub bytes: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum ExtractError {
    #[error(
        "the artifact holds {path:?}, an absolute path; entries must be relative to the artifact root"
    )]
    AbsolutePath { path: String },
    #[error(
        "the artifact holds {path:?}, which contains '..'; entries must stay inside the artifact"
    )]
    ParentDir { path: String },
    #[error(
        "the artifact holds a symbolic link {path:?} -> {target:?} that points outside the artifact"
    )]
    EscapingSymlink { path: String, target: String },
    #[error(
        "the artifact holds a symbolic link {path:?} -> {target:?} that points to nothing inside the artifact"
    )]
    DanglingSymlink { path: String, target: String },
    #[error(
        "the artifact holds a hard link {path:?} -> {target:?}; hard links must point to a regular file earlier in the artifact"
    )]
    BadHardlink { path: String, target: String },
    #[error(
        "the artifact writes {path:?} through the symbolic link {link:?}, which is not allowed"
    )]
    ThroughSymlink { path: String, link: String },
    #[error("the artifact holds {path:?}, a {kind}; only files, directories and links are allowed")]
    SpecialFile { path: String, kind: &'static str },
    #[error("the artifact is larger than the extraction limit of {limit} bytes")]
    TooLarge { limit: u64 },
    #[error(
        "the artifact's entry {name:?} carries {size} bytes of {what}, more than a name or PAX header may take"
    )]
    MetadataTooLarge {
        name: String,
        what: &'static str,
        size: u64,
    },
    #[error("the artifact has more than the limit of {limit} entries")]
    TooManyFiles { limit: u64 },
    #[error("the artifact is not a valid tar or tar+gzip archive: {0}")]
    Corrupt(#[source] io::Error),
    #[error("writing {path}: {source}")]
    Write {
        path: String,
        #[source]
        source: io::Error,
    },
}

impl ExtractError {
    /// Condition reason and metric label.
    pub fn reason(&self) -> super::SourceReason {
        use super::SourceReason as R;
        match self {
            Self::TooLarge { .. } | Self::TooManyFiles { .. } | Self::MetadataTooLarge { .. } => {
                R::ArtifactTooLarge
            }
            Self::Corrupt(_) => R::InvalidArtifact,
            Self::Write { .. } => R::ExtractionFailed,
            _ => R::UnsafeArtifact,
        }
    }
}

/// The relative, normalised form of an archive path: no root, no `..`, no `.`.
fn relative(raw: &Path) -> Result<PathBuf, ExtractError> {
    // Entry names are shown shortened: an error must stay readable whatever the name.
    let shown = || raw.to_string_lossy().chars().take(200).collect::<String>();
    let mut out = PathBuf::new();
    for c in raw.components() {
        match c {
            Component::Normal(p) => out.push(p),
            Component::CurDir => {}
            Component::ParentDir => return Err(ExtractError::ParentDir { path: shown() }),
            Component::RootDir | Component::Prefix(_) => {
                return Err(ExtractError::AbsolutePath { path: shown() });
            }
        }
    }
    Ok(out)
}

/// Whether `target`, read relative to the directory holding `link`, stays inside the root.
fn link_stays_inside(link: &Path, target: &Path) -> bool {
    let mut depth: i64 = link.components().count() as i64 - 1;
    for c in target.components() {
        match c {
            Component::Normal(_) => depth += 1,
            Component::CurDir => {}
            Component::ParentDir => {
                depth -= 1;
                if depth < 0 {
                    return false;
                }
            }
            Component::RootDir | Component::Prefix(_) => return false,
        }
    }
    true
}

/// Extracts a tar or tar+gzip stream (detected from its first bytes) into `dest`, which should
/// be a fresh directory: on error it may hold part of the tree, and callers discard it.
pub fn extract(reader: impl Read, dest: &Path, limits: &Limits) -> Result<Stats, ExtractError> {
    let mut buffered = BufReader::with_capacity(256 * 1024, reader);
    let gzip = buffered
        .fill_buf()
        .map_err(ExtractError::Corrupt)?
        .starts_with(&[0x1f, 0x8b]);
    // The stream may hold the content, a header block per entry and padding to blocks.
    let stream_limit = limits
        .max_bytes
        .saturating_add(limits.max_files.saturating_add(2).saturating_mul(1024));
    let result = if gzip {
        let stream = flate2::bufread::GzDecoder::new(buffered);
        unpack(
            tar::Archive::new(Guard::new(stream, stream_limit)),
            dest,
            limits,
        )
    } else {
        unpack(
            tar::Archive::new(Guard::new(buffered, stream_limit)),
            dest,
            limits,
        )
    };
    // What the guard refused is said as such, not as a corrupt archive.
    result.map_err(|e| match e {
        ExtractError::Corrupt(io) => match guard::refused(&io) {
            Some(Refused::Metadata { name, what, size }) => ExtractError::MetadataTooLarge {
                name: name.clone(),
                what,
                size: *size,
            },
            Some(Refused::Stream { .. }) => ExtractError::TooLarge {
                limit: limits.max_bytes,
            },
            None => ExtractError::Corrupt(io),
        },
        other => other,
    })
}

fn unpack<R: Read>(
    mut archive: tar::Archive<R>,
    dest: &Path,
    limits: &Limits,
) -> Result<Stats, ExtractError> {
    let write_err = |path: &Path| {
        let path = path.to_string_lossy().into_owned();
        move |source| ExtractError::Write { path, source }
    };
    fs::create_dir_all(dest).map_err(write_err(dest))?;
    let mut stats = Stats::default();
    let mut symlinks: Vec<(PathBuf, PathBuf)> = vec![];
    let mut link_set: HashSet<PathBuf> = HashSet::new();
    let mut files: HashSet<PathBuf> = HashSet::new();
    let mut buf = vec![0u8; 256 * 1024];

    for entry in archive.entries().map_err(ExtractError::Corrupt)? {
        let mut entry = entry.map_err(ExtractError::Corrupt)?;
        let kind = entry.header().entry_type();
        if matches!(kind, EntryType::XGlobalHeader | EntryType::XHeader) {
            continue;
        }
        let raw = entry.path().map_err(ExtractError::Corrupt)?.into_owned();
        let rel = relative(&raw)?;
        stats.files += 1;
        if stats.files > limits.max_files {
            return Err(ExtractError::TooManyFiles {
                limit: limits.max_files,
            });
        }
        if rel.as_os_str().is_empty() {
            continue;
        }
        // Never write through a link the archive itself created.
        for ancestor in rel
            .ancestors()
            .skip(1)
            .chain(std::iter::once(rel.as_path()))
        {
            if link_set.contains(ancestor) && (ancestor != rel || kind != EntryType::Directory) {
                return Err(ExtractError::ThroughSymlink {
                    path: rel.to_string_lossy().into_owned(),
                    link: ancestor.to_string_lossy().into_owned(),
                });
            }
        }
        let out = dest.join(&rel);
        if let Some(parent) = out.parent() {
            fs::create_dir_all(parent).map_err(write_err(parent))?;
        }
        match kind {
            EntryType::Directory => fs::create_dir_all(&out).map_err(write_err(&out))?,
            EntryType::Regular | EntryType::Continuous => {
                let executable = entry
                    .header()
                    .mode()
                    .map(|m| m & 0o111 != 0)
                    .unwrap_or(false);
                let mut file = fs::File::create(&out).map_err(write_err(&out))?;
                loop {
                    let n = entry.read(&mut buf).map_err(ExtractError::Corrupt)?;
                    if n == 0 {
                        break;
                    }
                    stats.bytes += n as u64;
                    if stats.bytes > limits.max_bytes {
                        return Err(ExtractError::TooLarge {
                            limit: limits.max_bytes,
                        });
                    }
                    file.write_all(&buf[..n]).map_err(write_err(&out))?;
                }
                set_mode(&out, if executable { 0o755 } else { 0o644 }).map_err(write_err(&out))?;
                files.insert(rel);
            }
            EntryType::Symlink => {
                let target = entry
                    .link_name()
                    .map_err(ExtractError::Corrupt)?
                    .unwrap_or_default()
                    .into_owned();
                if !link_stays_inside(&rel, &target) {
                    return Err(ExtractError::EscapingSymlink {
                        path: rel.to_string_lossy().into_owned(),
                        target: target.to_string_lossy().into_owned(),
                    });
                }
                let _ = fs::remove_file(&out);
                std::os::unix::fs::symlink(&target, &out).map_err(write_err(&out))?;
                link_set.insert(rel.clone());
                symlinks.push((rel, target));
            }
            EntryType::Link => {
                let raw_target = entry
                    .link_name()
                    .map_err(ExtractError::Corrupt)?
                    .unwrap_or_default()
                    .into_owned();
                let bad = || ExtractError::BadHardlink {
                    path: rel.to_string_lossy().into_owned(),
                    target: raw_target.to_string_lossy().into_owned(),
                };
                let target = relative(&raw_target).map_err(|_| bad())?;
                if !files.contains(&target) || target.ancestors().any(|a| link_set.contains(a)) {
                    return Err(bad());
                }
                let _ = fs::remove_file(&out);
                fs::hard_link(dest.join(&target), &out).map_err(write_err(&out))?;
                files.insert(rel);
            }
            other => {
                let kind = match other {
                    EntryType::Char => "character device",
                    EntryType::Block => "block device",
                    EntryType::Fifo => "FIFO",
                    EntryType::GNUSparse => "sparse file",
                    _ => "special entry",
                };
                return Err(ExtractError::SpecialFile {
                    path: rel.to_string_lossy().into_owned(),
                    kind,
                });
            }
        }
    }

    // Links are checked lexically above; following them for real catches chains of links whose
    // combination leaves the root, and links to nothing.
    let root = dest.canonicalize().map_err(write_err(dest))?;
    for (rel, target) in symlinks {
        let shown = || {
            (
                rel.to_string_lossy().into_owned(),
                target.to_string_lossy().into_owned(),
            )
        };
        match dest.join(&rel).canonicalize() {
            Ok(real) if real.starts_with(&root) => {}
            Ok(_) => {
                let (path, target) = shown();
                return Err(ExtractError::EscapingSymlink { path, target });
            }
            Err(_) => {
                let (path, target) = shown();
                return Err(ExtractError::DanglingSymlink { path, target });
            }
        }
    }
    Ok(stats)
}

fn set_mode(path: &Path, mode: u32) -> io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    fs::set_permissions(path, fs::Permissions::from_mode(mode))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A raw tar entry, written byte by byte so that tests can build archives that well-behaved
    /// writers refuse to produce.
    fn entry(out: &mut Vec<u8>, path: &str, kind: EntryType, link: &str, data: &[u8]) {
        let mut h = tar::Header::new_ustar();
        {
            let raw = h.as_old_mut();
            raw.name[..path.len()].copy_from_slice(path.as_bytes());
            raw.linkname[..link.len()].copy_from_slice(link.as_bytes());
        }
        h.set_entry_type(kind);
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        h.set_cksum();
        out.extend_from_slice(h.as_bytes());
        out.extend_from_slice(data);
        out.resize(out.len().div_ceil(512) * 512, 0);
    }

    fn archive(entries: &[(&str, EntryType, &str, &[u8])]) -> Vec<u8> {
        let mut out = vec![];
        for (p, k, l, d) in entries {
            entry(&mut out, p, *k, l, d);
        }
        out.extend_from_slice(&[0u8; 1024]);
        out
    }

    fn gzip(data: &[u8]) -> Vec<u8> {
        let mut e = flate2::write::GzEncoder::new(vec![], flate2::Compression::fast());
        e.write_all(data).unwrap();
        e.finish().unwrap()
    }

    fn run(data: &[u8], limits: Limits) -> (tempfile::TempDir, Result<Stats, ExtractError>) {
        let dir = tempfile::tempdir().unwrap();
        let res = extract(data, &dir.path().join("out"), &limits);
        (dir, res)
    }

    use EntryType::*;

    #[test]
    fn extracts_files_dirs_and_inside_links_from_tar_and_tar_gz() {
        let tar = archive(&[
            ("mod/", Directory, "", b""),
            ("mod/main.tf", Regular, "", b"resource \"x\" \"y\" {}"),
            ("mod/link.tf", Symlink, "main.tf", b""),
            ("mod/sub/up.tf", Symlink, "../main.tf", b""),
            ("mod/hard.tf", Link, "mod/main.tf", b""),
        ]);
        for data in [tar.clone(), gzip(&tar)] {
            let (dir, res) = run(&data, Limits::default());
            let stats = res.unwrap();
            assert_eq!(stats.files, 5);
            assert_eq!(stats.bytes, 19);
            let out = dir.path().join("out/mod");
            assert_eq!(
                fs::read_to_string(out.join("link.tf")).unwrap(),
                "resource \"x\" \"y\" {}"
            );
            assert_eq!(
                fs::read_to_string(out.join("sub/up.tf")).unwrap(),
                "resource \"x\" \"y\" {}"
            );
            assert_eq!(
                fs::read_to_string(out.join("hard.tf")).unwrap(),
                "resource \"x\" \"y\" {}"
            );
        }
    }

    #[test]
    fn refuses_parent_dir_and_absolute_paths() {
        let (_d, res) = run(
            &archive(&[("../evil.tf", Regular, "", b"x")]),
            Limits::default(),
        );
        let err = res.unwrap_err();
        assert!(matches!(err, ExtractError::ParentDir { .. }), "{err}");
        assert_eq!(err.reason(), crate::source::SourceReason::UnsafeArtifact);
        assert!(err.to_string().contains("\"../evil.tf\""));

        let (_d, res) = run(
            &archive(&[("a/../../evil.tf", Regular, "", b"x")]),
            Limits::default(),
        );
        assert!(matches!(res.unwrap_err(), ExtractError::ParentDir { .. }));
        let (_d, res) = run(
            &archive(&[("/etc/evil", Regular, "", b"x")]),
            Limits::default(),
        );
        assert!(matches!(
            res.unwrap_err(),
            ExtractError::AbsolutePath { .. }
        ));
    }

    #[test]
    fn refuses_links_that_leave_the_root() {
        for (link, target) in [
            ("a/l", "../../etc/passwd"),
            ("l", "/etc/passwd"),
            ("l", ".."),
        ] {
            let (_d, res) = run(&archive(&[(link, Symlink, target, b"")]), Limits::default());
            let err = res.unwrap_err();
            assert!(
                matches!(err, ExtractError::EscapingSymlink { .. }),
                "{link} -> {target}: {err}"
            );
        }
        // Each link stays inside on its own; together they leave.
        let chain = archive(&[
            ("a/b/l1", Symlink, "../..", b""),
            ("l2", Symlink, "a/b/l1/..", b""),
        ]);
        let (_d, res) = run(&chain, Limits::default());
        assert!(matches!(
            res.unwrap_err(),
            ExtractError::EscapingSymlink { .. }
        ));
    }

    #[test]
    fn refuses_writing_through_a_link_and_dangling_links() {
        let through = archive(&[("d", Symlink, ".", b""), ("d/x.tf", Regular, "", b"x")]);
        let (_d, res) = run(&through, Limits::default());
        assert!(matches!(
            res.unwrap_err(),
            ExtractError::ThroughSymlink { .. }
        ));
        let dangling = archive(&[("l", Symlink, "missing.tf", b"")]);
        let (_d, res) = run(&dangling, Limits::default());
        assert!(matches!(
            res.unwrap_err(),
            ExtractError::DanglingSymlink { .. }
        ));
    }

    #[test]
    fn refuses_bad_hard_links_and_devices() {
        let (_d, res) = run(
            &archive(&[("h", Link, "/etc/passwd", b"")]),
            Limits::default(),
        );
        assert!(matches!(res.unwrap_err(), ExtractError::BadHardlink { .. }));
        let (_d, res) = run(&archive(&[("h", Link, "later.tf", b"")]), Limits::default());
        assert!(matches!(res.unwrap_err(), ExtractError::BadHardlink { .. }));
        for kind in [Char, Block, Fifo] {
            let (_d, res) = run(&archive(&[("dev", kind, "", b"")]), Limits::default());
            assert!(matches!(res.unwrap_err(), ExtractError::SpecialFile { .. }));
        }
    }

    #[test]
    fn enforces_limits() {
        let big = vec![7u8; 10_000];
        let (_d, res) = run(
            &archive(&[("big", Regular, "", &big)]),
            Limits {
                max_bytes: 9_999,
                max_files: 10,
            },
        );
        let err = res.unwrap_err();
        assert_eq!(err.reason(), crate::source::SourceReason::ArtifactTooLarge);
        assert!(err.to_string().contains("9999 bytes"), "{err}");
        let many = archive(&[
            ("a", Regular, "", b""),
            ("b", Regular, "", b""),
            ("c", Regular, "", b""),
        ]);
        let (_d, res) = run(
            &many,
            Limits {
                max_bytes: 100,
                max_files: 2,
            },
        );
        assert!(matches!(
            res.unwrap_err(),
            ExtractError::TooManyFiles { limit: 2 }
        ));
    }

    #[test]
    fn reports_garbage_as_corrupt() {
        let (_d, res) = run(
            &gzip(b"this is not a tar archive at all, just text that goes on"),
            Limits::default(),
        );
        assert_eq!(
            res.unwrap_err().reason(),
            crate::source::SourceReason::InvalidArtifact
        );
    }
}
