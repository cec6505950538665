//! Images as directories, for the native runtime on an image (`--runtime native` with
//! `image:` or `dependencies:`): the image's filesystem exported from the engine and
//! unpacked once per image id under `$PADDOCK_HOME/cache/images/<id>`, which the native
//! runtime binds read-only as the sandbox's system directories instead of the host's.
//!
//! Unpacking: regular files, directories, symlinks and hard links only, each placed with
//! tar's in-directory checks (no entry lands outside the tree, none is written through a
//! symlink); device nodes and FIFOs are skipped, and modes keep only their permission bits
//! (no setuid, setgid or sticky). Ownership is kept when the daemon is root.
//!
//! Owns: `$PADDOCK_HOME/cache/images`. Never: shows a half-unpacked tree (a tree is
//! unpacked beside its place and renamed into it), or starts a container of the image.

use std::io;
use std::path::{Component, Path, PathBuf};

use async_trait::async_trait;
use bollard::Docker;
use bollard::models::ContainerCreateBody;
use bollard::query_parameters::{CreateContainerOptionsBuilder, RemoveContainerOptionsBuilder};
use futures_util::StreamExt;
use tokio::io::AsyncWriteExt;

use super::DockerRuntime;
use super::image::engine;
use crate::{EventSink, RootfsSource, SandboxError, SandboxSpec};

fn io_err(what: &'static str, path: &Path, e: io::Error) -> SandboxError {
    SandboxError::io(what, path.to_path_buf(), e)
}

/// The directory of `image`'s unpacked filesystem under `cache`, unpacked from the engine
/// on first use. `image` must be in the engine (nothing is pulled).
pub async fn ensure(d: &Docker, image: &str, cache: &Path) -> Result<PathBuf, SandboxError> {
    let info = d.inspect_image(image).await.map_err(|e| match e {
        bollard::errors::Error::DockerResponseServerError {
            status_code: 404, ..
        } => SandboxError::InvalidSpec {
            message: format!("the Docker engine has no image {image}"),
            hint: "build it (`paddock image build`, or `dependencies:` in paddock.yaml) or `docker pull` it first".into(),
        },
        e => engine("inspect image", e),
    })?;
    let id = info.id.unwrap_or_default();
    let key = id.strip_prefix("sha256:").unwrap_or(&id);
    if key.is_empty() || !key.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(SandboxError::Unsupported {
            message: format!("docker: image {image} has an unexpected id {id:?}"),
            hint: "check `docker image inspect` for it".into(),
        });
    }
    let dir = cache.join(key);
    if dir.is_dir() {
        return Ok(dir);
    }
    std::fs::create_dir_all(cache).map_err(|e| io_err("create directory", cache, e))?;
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    let suffix = format!("{}-{nanos}", std::process::id());
    let partial = cache.join(format!(".partial-{key}-{suffix}"));
    let tarball = cache.join(format!(".export-{key}-{suffix}.tar"));
    let result = async {
        export(d, image, &tarball).await?;
        let (t, p) = (tarball.clone(), partial.clone());
        let keep_owners = nix::unistd::geteuid().is_root();
        tokio::task::spawn_blocking(move || unpack(&t, &p, keep_owners))
            .await
            .map_err(|e| io_err("unpack image", &partial, io::Error::other(e)))?
            .map_err(|e| io_err("unpack image", &partial, e))?;
        match std::fs::rename(&partial, &dir) {
            Ok(()) => Ok(()),
            // Another run unpacked it first: theirs is as good.
            Err(_) if dir.is_dir() => Ok(()),
            Err(e) => Err(io_err("rename unpacked image", &dir, e)),
        }
    }
    .await;
    let _ = std::fs::remove_file(&tarball);
    if partial.exists() {
        let _ = crate::native::remove_tree(&partial);
    }
    result.map(|()| dir)
}

/// `docker export` of a container made from `image` (never started) into `tarball`.
async fn export(d: &Docker, image: &str, tarball: &Path) -> Result<(), SandboxError> {
    let body = ContainerCreateBody {
        image: Some(image.to_string()),
        // Never run: an image without a command still needs one to be created from.
        cmd: Some(vec!["/nonexistent-paddock-export".into()]),
        network_disabled: Some(true),
        labels: Some([("paddock.export".to_string(), image.to_string())].into()),
        ..Default::default()
    };
    let opts = CreateContainerOptionsBuilder::default().build();
    let c = d
        .create_container(Some(opts), body)
        .await
        .map_err(|e| engine("create a container to export", e))?;
    let copied = async {
        let mut out = tokio::fs::File::create(tarball)
            .await
            .map_err(|e| io_err("create file", tarball, e))?;
        let mut stream = d.export_container(&c.id);
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(|e| engine("export image", e))?;
            out.write_all(&chunk)
                .await
                .map_err(|e| io_err("write file", tarball, e))?;
        }
        out.flush()
            .await
            .map_err(|e| io_err("write file", tarball, e))
    }
    .await;
    let opts = RemoveContainerOptionsBuilder::default().force(true).build();
    let _ = d.remove_container(&c.id, Some(opts)).await;
    copied
}

/// `root` + the normal components of `rel` (what tar's `unpack_in` writes to).
fn inside(root: &Path, rel: &Path) -> PathBuf {
    let mut out = root.to_path_buf();
    for c in rel.components() {
        if let Component::Normal(n) = c {
            out.push(n);
        }
    }
    out
}

/// Unpack `tarball` into the new directory `dst` (see the module doc for what is kept).
pub fn unpack(tarball: &Path, dst: &Path, keep_owners: bool) -> io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    use tar::EntryType as T;
    std::fs::create_dir(dst)?;
    let file = std::fs::File::open(tarball)?;
    let mut ar = tar::Archive::new(io::BufReader::with_capacity(1 << 20, file));
    ar.set_preserve_permissions(false);
    ar.set_preserve_ownerships(keep_owners);
    ar.set_unpack_xattrs(false);
    ar.set_overwrite(true);
    // Directories get their modes at the end: a read-only one would refuse its entries.
    let mut dirs: Vec<(PathBuf, u32)> = Vec::new();
    for entry in ar.entries()? {
        let mut entry = entry?;
        let kind = entry.header().entry_type();
        match kind {
            T::Regular | T::Continuous | T::GNUSparse | T::Symlink | T::Link => {
                entry.unpack_in(dst)?;
            }
            T::Directory => {
                let mode = entry.header().mode()? & 0o777;
                let path = inside(dst, &entry.path()?);
                if entry.unpack_in(dst)? {
                    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755 | mode))?;
                    dirs.push((path, mode));
                }
            }
            // Device nodes, FIFOs and anything unknown: never made.
            _ => {}
        }
    }
    for (path, mode) in dirs.iter().rev() {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(*mode))?;
    }
    Ok(())
}

#[async_trait]
impl RootfsSource for DockerRuntime {
    async fn rootfs(
        &self,
        spec: &SandboxSpec,
        cache: &Path,
        events: &EventSink,
    ) -> Result<PathBuf, SandboxError> {
        let image = self.ensure_image(spec, events).await?;
        ensure(self.engine().await?, &image, cache).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::{MetadataExt, PermissionsExt};

    fn tarball(dir: &Path, build: impl FnOnce(&mut tar::Builder<Vec<u8>>)) -> PathBuf {
        let mut b = tar::Builder::new(Vec::new());
        build(&mut b);
        let p = dir.join("t.tar");
        std::fs::write(&p, b.into_inner().unwrap()).unwrap();
        p
    }

    fn header(kind: tar::EntryType, mode: u32, size: u64) -> tar::Header {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(kind);
        h.set_mode(mode);
        h.set_size(size);
        h
    }

    #[test]
    fn unpack_keeps_files_links_and_dirs_and_drops_devices_fifos_and_special_bits() {
        let t = tempfile::tempdir().unwrap();
        let tb = tarball(t.path(), |b| {
            b.append_data(
                &mut header(tar::EntryType::Directory, 0o555, 0),
                "usr/",
                &[][..],
            )
            .unwrap();
            b.append_data(
                &mut header(tar::EntryType::Directory, 0o755, 0),
                "usr/bin/",
                &[][..],
            )
            .unwrap();
            b.append_data(
                &mut header(tar::EntryType::Regular, 0o4755, 2),
                "usr/bin/su",
                &b"hi"[..],
            )
            .unwrap();
            let mut l = header(tar::EntryType::Symlink, 0o777, 0);
            b.append_link(&mut l, "bin", "usr/bin").unwrap();
            b.append_data(
                &mut header(tar::EntryType::Char, 0o666, 0),
                "dev-null",
                &[][..],
            )
            .unwrap();
            b.append_data(&mut header(tar::EntryType::Fifo, 0o666, 0), "fifo", &[][..])
                .unwrap();
        });
        let dst = t.path().join("root");
        unpack(&tb, &dst, false).unwrap();
        let su = std::fs::metadata(dst.join("usr/bin/su")).unwrap();
        assert_eq!(su.mode() & 0o7777, 0o755, "setuid is dropped");
        assert_eq!(std::fs::read(dst.join("bin/su")).unwrap(), b"hi");
        assert!(
            std::fs::symlink_metadata(dst.join("bin"))
                .unwrap()
                .file_type()
                .is_symlink()
        );
        assert!(!dst.join("dev-null").exists() && !dst.join("fifo").exists());
        let usr = std::fs::metadata(dst.join("usr")).unwrap();
        assert_eq!(
            usr.permissions().mode() & 0o777,
            0o555,
            "directory modes are restored"
        );
    }

    #[test]
    fn unpack_never_writes_outside_its_directory() {
        let t = tempfile::tempdir().unwrap();
        let outside = t.path().join("outside");
        std::fs::create_dir(&outside).unwrap();
        let tb = tarball(t.path(), |b| {
            // A symlink to outside, then a file "through" it.
            let mut l = header(tar::EntryType::Symlink, 0o777, 0);
            b.append_link(&mut l, "esc", &outside).unwrap();
            let mut h = header(tar::EntryType::Regular, 0o644, 1);
            h.set_path("esc/planted").unwrap();
            h.set_cksum();
            b.append(&h, &b"x"[..]).unwrap();
            // A hard link to a file outside.
            let mut hl = header(tar::EntryType::Link, 0o644, 0);
            b.append_link(&mut hl, "hl", t.path().join("t.tar")).ok();
        });
        let dst = t.path().join("root");
        let _ = unpack(&tb, &dst, false);
        assert!(!outside.join("planted").exists(), "nothing lands outside");
        assert_eq!(std::fs::read_dir(&outside).unwrap().count(), 0);
    }
}
