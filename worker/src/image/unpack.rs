//! Unpacking one layer (a tar stream, plain, gzip or zstd) into a directory
//! that overlayfs uses as a lower layer.
//!
//! - Whiteouts become overlayfs' own: `.wh.NAME` a character device 0/0
//!   named `NAME`, `.wh..wh..opq` the `trusted.overlay.opaque=y` xattr on its
//!   directory. Overlayfs honours both in lower layers, so layers stay
//!   separate and shared instead of being flattened per image.
//! - Hard links are made inside the layer; their target must be in it.
//! - An entry whose path is absolute, climbs out with `..`, or passes through
//!   a symlink is refused: the layer is rejected, not partially skipped.
//! - Ownership, permission bits (setuid included), mtimes and xattrs are kept.
//!
//! The caller unpacks into a fresh temporary directory and renames it into
//! place only when this returns `Ok` and the digests match.

use std::fs;
use std::io::{self, BufRead, BufReader, Read};
use std::path::{Component, Path, PathBuf};

use super::ImageError;
use super::digest::HashingReader;

/// Where whiteout files start.
const WHITEOUT_PREFIX: &str = ".wh.";
/// The whiteout that makes its directory opaque.
const OPAQUE_WHITEOUT: &str = ".wh..wh..opq";
/// The xattr overlayfs reads to make a directory opaque.
pub const OPAQUE_XATTR: &str = "trusted.overlay.opaque";

/// The compression of a layer, told by its first bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    /// A bare tar stream.
    None,
    /// gzip (`1f 8b`).
    Gzip,
    /// zstd (`28 b5 2f fd`).
    Zstd,
}

impl Compression {
    /// Sniffs the compression from the first bytes of a blob.
    pub fn detect(head: &[u8]) -> Compression {
        if head.starts_with(&[0x1f, 0x8b]) {
            Compression::Gzip
        } else if head.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
            Compression::Zstd
        } else {
            Compression::None
        }
    }
}

/// What unpacking a layer found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unpacked {
    /// `sha256:` of the uncompressed tar stream (the layer's diff id).
    pub diff_id: String,
    /// Bytes of the uncompressed tar stream.
    pub size: u64,
}

/// Decompresses `blob` (sniffing its compression) and unpacks it into `dest`,
/// an existing empty directory. `what` names the layer in errors.
pub fn unpack_layer(blob: impl Read, dest: &Path, what: &str) -> Result<Unpacked, ImageError> {
    let mut buffered = BufReader::with_capacity(256 << 10, blob);
    let head = buffered
        .fill_buf()
        .map_err(|e| ImageError::invalid(what, format!("cannot read: {e}")))?;
    let decoded: Box<dyn Read> = match Compression::detect(head) {
        Compression::None => Box::new(buffered),
        Compression::Gzip => Box::new(flate2::bufread::MultiGzDecoder::new(buffered)),
        Compression::Zstd => Box::new(
            zstd::stream::read::Decoder::with_buffer(buffered)
                .map_err(|e| ImageError::invalid(what, format!("zstd: {e}")))?,
        ),
    };
    let mut hashing = HashingReader::new(decoded);
    unpack_tar(&mut hashing, dest, what)?;
    let (diff_id, size) = hashing
        .finish()
        .map_err(|e| ImageError::invalid(what, format!("cannot read: {e}")))?;
    Ok(Unpacked { diff_id, size })
}

/// Unpacks an uncompressed tar stream into `dest`.
fn unpack_tar(tar_stream: impl Read, dest: &Path, what: &str) -> Result<(), ImageError> {
    let bad = |reason: String| ImageError::invalid(what, reason);
    let mut archive = tar::Archive::new(tar_stream);
    archive.set_preserve_permissions(true);
    archive.set_preserve_ownerships(true);
    archive.set_preserve_mtime(true);
    archive.set_unpack_xattrs(true);
    archive.set_overwrite(true);
    let entries = archive
        .entries()
        .map_err(|e| bad(format!("not a tar archive: {e}")))?;
    for entry in entries {
        let mut entry = entry.map_err(|e| bad(format!("corrupt tar archive: {e}")))?;
        let raw = entry
            .path()
            .map_err(|e| bad(format!("entry with an unreadable path: {e}")))?
            .into_owned();
        let Some(rel) = confined(&raw).map_err(bad)? else {
            continue; // the layer's root itself ("./")
        };
        let parent = rel.parent().unwrap_or(Path::new(""));
        let name = rel
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or_default()
            .to_string();
        ensure_parents(dest, parent).map_err(bad)?;
        let target = dest.join(&rel);

        if name == OPAQUE_WHITEOUT {
            let dir = dest.join(parent);
            xattr::set(&dir, OPAQUE_XATTR, b"y").map_err(|e| {
                bad(format!(
                    "cannot mark {} opaque ({OPAQUE_XATTR}): {e}",
                    parent.display()
                ))
            })?;
            continue;
        }
        if let Some(hidden) = name.strip_prefix(WHITEOUT_PREFIX) {
            if hidden.starts_with(WHITEOUT_PREFIX) {
                continue; // other aufs metadata (.wh..wh.plnk...): nothing to apply
            }
            let hidden_path = dest.join(parent).join(hidden);
            // A whiteout hides lower layers only: content of this very layer
            // under that name stays.
            if fs::symlink_metadata(&hidden_path).is_err() {
                make_whiteout(&hidden_path)
                    .map_err(|e| bad(format!("cannot make whiteout {}: {e}", rel.display())))?;
            }
            continue;
        }

        let kind = entry.header().entry_type();
        if !kind.is_dir() {
            remove_non_dir(&target).map_err(|e| bad(format!("{}: {e}", rel.display())))?;
        }
        if kind.is_hard_link() {
            let link = entry
                .link_name()
                .map_err(|e| bad(format!("{}: unreadable link name: {e}", rel.display())))?
                .ok_or_else(|| bad(format!("{}: hard link without a target", rel.display())))?
                .into_owned();
            let link_rel = confined(&link)
                .map_err(|r| bad(format!("hard link {}: {r}", rel.display())))?
                .ok_or_else(|| bad(format!("hard link {} to the layer root", rel.display())))?;
            ensure_parents(dest, link_rel.parent().unwrap_or(Path::new("")))
                .map_err(|r| bad(format!("hard link {}: {r}", rel.display())))?;
            let source = dest.join(&link_rel);
            match fs::symlink_metadata(&source) {
                Ok(m) if !m.is_dir() => {}
                _ => {
                    return Err(bad(format!(
                        "hard link {} points to {}, which is not a file of this layer",
                        rel.display(),
                        link_rel.display()
                    )));
                }
            }
            fs::hard_link(&source, &target)
                .map_err(|e| bad(format!("hard link {}: {e}", rel.display())))?;
            continue;
        }
        entry
            .unpack(&target)
            .map_err(|e| bad(format!("cannot unpack {}: {e}", rel.display())))?;
    }
    Ok(())
}

/// The entry's path relative to the layer root; `Ok(None)` for the root
/// itself; an error for absolute paths and `..`.
fn confined(raw: &Path) -> Result<Option<PathBuf>, String> {
    let mut rel = PathBuf::new();
    for c in raw.components() {
        match c {
            Component::Normal(part) => rel.push(part),
            Component::CurDir => {}
            Component::ParentDir => {
                return Err(format!(
                    "entry {} climbs out of the layer with ..",
                    raw.display()
                ));
            }
            Component::RootDir | Component::Prefix(_) => {
                return Err(format!("entry {} has an absolute path", raw.display()));
            }
        }
    }
    Ok((!rel.as_os_str().is_empty()).then_some(rel))
}

/// Creates the missing directories of `parent` under `dest`, refusing to go
/// through anything that is not a real directory (a symlink planted by an
/// earlier entry could otherwise send later entries anywhere on the host).
fn ensure_parents(dest: &Path, parent: &Path) -> Result<(), String> {
    let mut at = dest.to_path_buf();
    for part in parent.components() {
        at.push(part);
        match fs::symlink_metadata(&at) {
            Ok(m) if m.is_dir() => {}
            Ok(m) if m.file_type().is_symlink() => {
                return Err(format!(
                    "entry under {} goes through a symlink, out of the layer",
                    parent.display()
                ));
            }
            Ok(_) => {
                // A whiteout or a file where a directory is needed: the
                // directory of this layer replaces it.
                fs::remove_file(&at).map_err(|e| format!("{}: {e}", at.display()))?;
                make_dir(&at)?;
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => make_dir(&at)?,
            Err(e) => return Err(format!("{}: {e}", at.display())),
        }
    }
    Ok(())
}

/// A directory the layer implies but does not list: 0755 as Docker makes
/// them, whatever the daemon's umask.
fn make_dir(path: &Path) -> Result<(), String> {
    use std::os::unix::fs::PermissionsExt;
    fs::create_dir(path)
        .and_then(|()| fs::set_permissions(path, fs::Permissions::from_mode(0o755)))
        .map_err(|e| format!("{}: {e}", path.display()))
}

/// Removes a file, symlink or whiteout at `path` (tar's overwrite), leaving
/// directories alone.
fn remove_non_dir(path: &Path) -> io::Result<()> {
    match fs::symlink_metadata(path) {
        Ok(m) if !m.is_dir() => fs::remove_file(path),
        _ => Ok(()),
    }
}

/// An overlayfs whiteout: a character device with device number 0/0.
fn make_whiteout(path: &Path) -> nix::Result<()> {
    use nix::sys::stat::{Mode, SFlag, mknod};
    mknod(path, SFlag::S_IFCHR, Mode::empty(), 0)
}

/// Whether `path` is an overlayfs whiteout (character device 0/0).
pub fn is_whiteout(path: &Path) -> bool {
    use std::os::unix::fs::{FileTypeExt, MetadataExt};
    fs::symlink_metadata(path).is_ok_and(|m| m.file_type().is_char_device() && m.rdev() == 0)
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::*;

    /// A tar stream built entry by entry.
    struct Layer(tar::Builder<Vec<u8>>);

    impl Layer {
        fn new() -> Self {
            Layer(tar::Builder::new(Vec::new()))
        }
        fn header(kind: tar::EntryType, size: u64) -> tar::Header {
            let mut h = tar::Header::new_gnu();
            h.set_entry_type(kind);
            h.set_size(size);
            h.set_mode(if kind.is_dir() { 0o755 } else { 0o644 });
            h.set_uid(0);
            h.set_gid(0);
            h.set_mtime(1_700_000_000);
            h
        }
        fn dir(mut self, path: &str) -> Self {
            let mut h = Self::header(tar::EntryType::Directory, 0);
            self.0.append_data(&mut h, path, io::empty()).unwrap();
            self
        }
        fn file(mut self, path: &str, data: &[u8]) -> Self {
            let mut h = Self::header(tar::EntryType::Regular, data.len() as u64);
            self.0.append_data(&mut h, path, data).unwrap();
            self
        }
        /// Writes the path bytes directly (tar::Builder refuses `..` itself).
        fn raw_file(mut self, path: &str, data: &[u8]) -> Self {
            let mut h = Self::header(tar::EntryType::Regular, data.len() as u64);
            let name = &mut h.as_old_mut().name;
            name[..path.len()].copy_from_slice(path.as_bytes());
            h.set_cksum();
            self.0.append(&h, data).unwrap();
            self
        }
        fn link(mut self, kind: tar::EntryType, path: &str, target: &str) -> Self {
            let mut h = Self::header(kind, 0);
            self.0.append_link(&mut h, path, target).unwrap();
            self
        }
        fn bytes(self) -> Vec<u8> {
            self.0.into_inner().unwrap()
        }
    }

    fn unpack(bytes: &[u8]) -> (tempfile::TempDir, Result<Unpacked, ImageError>) {
        let dir = tempfile::tempdir().unwrap();
        let result = unpack_layer(bytes, dir.path(), "layer");
        (dir, result)
    }

    fn is_root() -> bool {
        nix::unistd::geteuid().is_root()
    }

    #[test]
    fn files_dirs_symlinks_and_diff_id() {
        let tar = Layer::new()
            .dir("bin/")
            .file("bin/busybox", b"#!busybox")
            .link(tar::EntryType::Symlink, "bin/sh", "/bin/busybox")
            .bytes();
        let (dir, result) = unpack(&tar);
        let unpacked = result.unwrap();
        assert_eq!(unpacked.diff_id, super::super::digest::sha256_digest(&tar));
        assert_eq!(unpacked.size, tar.len() as u64);
        assert_eq!(
            fs::read(dir.path().join("bin/busybox")).unwrap(),
            b"#!busybox"
        );
        assert_eq!(
            fs::read_link(dir.path().join("bin/sh")).unwrap(),
            Path::new("/bin/busybox"),
            "symlinks keep their (absolute) target: it resolves inside the container"
        );
    }

    #[test]
    fn gzip_and_zstd_layers_have_the_diff_id_of_their_tar() {
        let tar = Layer::new().file("etc/motd", b"hi").bytes();
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(&tar).unwrap();
        let gz = gz.finish().unwrap();
        let zst = zstd::encode_all(&tar[..], 1).unwrap();
        for blob in [gz, zst] {
            let (dir, result) = unpack(&blob);
            assert_eq!(
                result.unwrap().diff_id,
                super::super::digest::sha256_digest(&tar)
            );
            assert_eq!(fs::read(dir.path().join("etc/motd")).unwrap(), b"hi");
        }
    }

    #[test]
    fn whiteouts_become_overlay_whiteouts_and_opaque_dirs() {
        if !is_root() {
            eprintln!("skipped: whiteouts need root (mknod, trusted.* xattrs); CI runs as root");
            return;
        }
        let tar = Layer::new()
            .file("etc/.wh.motd", b"")
            .dir("var/cache/")
            .file("var/cache/.wh..wh..opq", b"")
            .file("var/cache/new", b"n")
            .file("keep", b"k")
            .file(".wh.keep", b"")
            .bytes();
        let (dir, result) = unpack(&tar);
        result.unwrap();
        assert!(
            is_whiteout(&dir.path().join("etc/motd")),
            "etc/motd is a 0/0 char device"
        );
        assert!(
            !dir.path().join("etc/.wh.motd").exists(),
            "no .wh. file left"
        );
        assert_eq!(
            xattr::get(dir.path().join("var/cache"), OPAQUE_XATTR).unwrap(),
            Some(b"y".to_vec())
        );
        assert!(!dir.path().join("var/cache/.wh..wh..opq").exists());
        assert_eq!(fs::read(dir.path().join("var/cache/new")).unwrap(), b"n");
        assert_eq!(
            fs::read(dir.path().join("keep")).unwrap(),
            b"k",
            "a whiteout does not hide its own layer's file"
        );
    }

    #[test]
    fn hard_links_share_an_inode_inside_the_layer() {
        use std::os::unix::fs::MetadataExt;
        let tar = Layer::new()
            .file("bin/busybox", b"bb")
            .link(tar::EntryType::Link, "bin/ls", "bin/busybox")
            .link(tar::EntryType::Link, "bin/cat", "./bin/busybox")
            .bytes();
        let (dir, result) = unpack(&tar);
        result.unwrap();
        let ino = |p: &str| fs::metadata(dir.path().join(p)).unwrap().ino();
        assert_eq!(ino("bin/ls"), ino("bin/busybox"));
        assert_eq!(ino("bin/cat"), ino("bin/busybox"));
        assert_eq!(
            fs::metadata(dir.path().join("bin/busybox"))
                .unwrap()
                .nlink(),
            3
        );
    }

    #[test]
    fn escaping_entries_are_refused() {
        let outside = tempfile::tempdir().unwrap();
        let victim = outside.path().join("victim");
        let cases: Vec<(&str, Vec<u8>)> = vec![
            ("dot-dot", Layer::new().raw_file("../escape", b"x").bytes()),
            (
                "nested dot-dot",
                Layer::new().raw_file("a/../../escape", b"x").bytes(),
            ),
            (
                "absolute",
                Layer::new().raw_file("/etc/escape", b"x").bytes(),
            ),
            (
                "through a symlink",
                Layer::new()
                    .link(
                        tar::EntryType::Symlink,
                        "evil",
                        outside.path().to_str().unwrap(),
                    )
                    .file("evil/victim", b"x")
                    .bytes(),
            ),
            (
                "hard link out",
                Layer::new()
                    .link(tar::EntryType::Link, "passwd", "../../../../etc/passwd")
                    .bytes(),
            ),
            (
                "hard link through a symlink",
                Layer::new()
                    .link(
                        tar::EntryType::Symlink,
                        "evil",
                        outside.path().to_str().unwrap(),
                    )
                    .link(tar::EntryType::Link, "stolen", "evil/victim")
                    .bytes(),
            ),
        ];
        fs::write(&victim, b"safe").unwrap();
        for (name, tar) in cases {
            let (dir, result) = unpack(&tar);
            let err = result.expect_err(name).to_string();
            assert!(
                err.contains("out of the layer")
                    || err.contains("absolute")
                    || err.contains("climbs out")
                    || err.contains("not a file of this layer"),
                "{name}: {err}"
            );
            assert!(
                !dir.path().parent().unwrap().join("escape").exists(),
                "{name}"
            );
            assert_eq!(fs::read(&victim).unwrap(), b"safe", "{name} wrote outside");
            assert!(!dir.path().join("stolen").exists(), "{name}");
        }
    }

    #[test]
    fn garbage_is_refused() {
        let (_dir, result) = unpack(&[0x1f, 0x8b, 0, 1, 2, 3]);
        assert!(
            matches!(result, Err(ImageError::Invalid { .. })),
            "{result:?}"
        );
    }
}
