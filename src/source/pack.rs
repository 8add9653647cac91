//! Reproducible tar+gzip archives of a directory or a single file: same input, same bytes.
//! Entries are sorted, owners and times are zeroed, modes are normalised to 0644/0755, and the
//! gzip header carries no name or time.

use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

/// Directories and files never packed: VCS data, local OpenTofu working data and state files
/// (which may hold secrets).
fn ignored(name: &str) -> bool {
    // `*.tfstate*`: state, its backups, and OpenTofu's timestamped `.tfstate.<ts>.backup`.
    matches!(name, ".git" | ".terraform" | ".terraform.lock.hcl.bak") || name.contains(".tfstate")
}

fn walk(root: &Path, rel: &Path, out: &mut Vec<PathBuf>) -> io::Result<()> {
    let mut names: Vec<_> = fs::read_dir(root.join(rel))?
        .map(|e| e.map(|e| e.file_name()))
        .collect::<Result<_, _>>()?;
    names.sort();
    for name in names {
        if ignored(&name.to_string_lossy()) {
            continue;
        }
        let child = rel.join(&name);
        out.push(child.clone());
        let meta = fs::symlink_metadata(root.join(&child))?;
        if meta.is_dir() {
            walk(root, &child, out)?;
        }
    }
    Ok(())
}

/// Writes a reproducible tar+gzip of `input` (a directory's contents, or one file) to `out`.
pub fn pack(input: &Path, out: impl Write) -> io::Result<()> {
    let gz = flate2::GzBuilder::new()
        .mtime(0)
        .write(out, flate2::Compression::default());
    let mut tar = tar::Builder::new(gz);
    tar.mode(tar::HeaderMode::Deterministic);
    tar.follow_symlinks(false);
    let meta = fs::symlink_metadata(input)?;
    let (root, entries) = if meta.is_dir() {
        let mut entries = vec![];
        walk(input, Path::new(""), &mut entries)?;
        (input.to_path_buf(), entries)
    } else {
        let name = input
            .file_name()
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "input has no file name"))?;
        (
            input.parent().unwrap_or(Path::new(".")).to_path_buf(),
            vec![PathBuf::from(name)],
        )
    };
    for rel in entries {
        let path = root.join(&rel);
        let meta = fs::symlink_metadata(&path)?;
        let mut header = tar::Header::new_gnu();
        header.set_metadata_in_mode(&meta, tar::HeaderMode::Deterministic);
        header.set_mtime(0);
        header.set_uid(0);
        header.set_gid(0);
        if meta.is_dir() {
            header.set_mode(0o755);
            tar.append_data(&mut header, &rel, io::empty())?;
        } else if meta.file_type().is_symlink() {
            let target = fs::read_link(&path)?;
            header.set_mode(0o777);
            header.set_size(0);
            tar.append_link(&mut header, &rel, &target)?;
        } else if meta.is_file() {
            use std::os::unix::fs::PermissionsExt;
            let exec = meta.permissions().mode() & 0o111 != 0;
            header.set_mode(if exec { 0o755 } else { 0o644 });
            header.set_size(meta.len());
            tar.append_data(&mut header, &rel, fs::File::open(&path)?)?;
        }
    }
    tar.into_inner()?.finish()?.flush()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_input_same_bytes_and_it_round_trips() {
        let dir = tempfile::tempdir().unwrap();
        let src = dir.path().join("module");
        fs::create_dir_all(src.join("sub")).unwrap();
        fs::create_dir_all(src.join(".git")).unwrap();
        fs::write(src.join("main.tf"), "a").unwrap();
        fs::write(src.join("sub/vars.tf"), "b").unwrap();
        fs::write(src.join("terraform.tfstate"), "secret state").unwrap();
        fs::write(src.join("terraform.tfstate.1700000000.backup"), "old state").unwrap();
        fs::write(src.join(".git/HEAD"), "ref").unwrap();
        std::os::unix::fs::symlink("main.tf", src.join("link.tf")).unwrap();

        let mut first = vec![];
        pack(&src, &mut first).unwrap();
        // Touch a file: times must not matter.
        std::thread::sleep(std::time::Duration::from_millis(1100));
        fs::write(src.join("main.tf"), "a").unwrap();
        let mut second = vec![];
        pack(&src, &mut second).unwrap();
        assert_eq!(first, second);

        let out = dir.path().join("out");
        crate::source::archive::extract(&first[..], &out, &Default::default()).unwrap();
        assert_eq!(fs::read_to_string(out.join("sub/vars.tf")).unwrap(), "b");
        assert_eq!(fs::read_to_string(out.join("link.tf")).unwrap(), "a");
        for state in ["terraform.tfstate", "terraform.tfstate.1700000000.backup"] {
            assert!(
                !out.join(state).exists(),
                "{state}: state files are never packed"
            );
        }
        assert!(!out.join(".git").exists());
    }

    #[test]
    fn packs_a_single_file() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join("template.yaml"), "Resources: {}").unwrap();
        let mut buf = vec![];
        pack(&dir.path().join("template.yaml"), &mut buf).unwrap();
        let out = dir.path().join("out");
        crate::source::archive::extract(&buf[..], &out, &Default::default()).unwrap();
        assert_eq!(
            fs::read_to_string(out.join("template.yaml")).unwrap(),
            "Resources: {}"
        );
    }
}
