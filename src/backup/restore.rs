//! Restore: refuse a tree that would write outside the destination or
//! is beyond the walk's bounds (see `walk.rs`), let rustic write the
//! files, then check every file's content against the hashes its tree
//! names and give the root its owner and mode.

use std::fs::File;
use std::io::{BufReader, Read};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use rustic_core::repofile::{Node, SnapshotFile};
use rustic_core::{IndexedFull, LocalDestination, Repository as Rustic, RestoreOptions};

use super::fail::{panic_read_repository, panic_summary, unwind};
use super::meta::Description;
use super::progress::relayed;
use super::restic::Restic;
use super::walk::{Bounds, Halt, PATH_MAX, Walk, measure};
use super::{Error, OnProgress, Result};

pub(super) fn restore(
    r: &Restic,
    id: &str,
    dest: &Path,
    progress: OnProgress<'_>,
    stop: &Arc<AtomicBool>,
) -> Result<()> {
    let doing = format!("restore of backup {id}");
    let doing = doing.as_str();
    check_empty_dir(dest)?;
    let dest_str = dest
        .to_str()
        .ok_or_else(|| Error::Failed(format!("{doing}: {} is not UTF-8", dest.display())))?;
    let bounds = Bounds { stop: stop.as_ref(), room: PATH_MAX.saturating_sub(dest_str.len() + 2) };
    let cancelled = || Error::Failed(format!("{doing}: cancelled"));
    let restored = relayed(progress, |bars| {
        let repo = r.repo_until(bars, doing, stop)?;
        let snap = r.find(&repo, id, doing)?;
        let full = snap.id.to_hex().as_str().to_string();
        let err = |e: Box<rustic_core::RusticError>| {
            if stop.load(Ordering::Relaxed) { cancelled() } else { r.target.error(doing, &e) }
        };
        let refused = |why: String| {
            Error::Refused(format!(
                "{doing} on backup target {}: refused, nothing was written: {why}",
                r.target.name
            ))
        };
        let repo = repo.to_indexed().map_err(err)?;

        // Nothing is written until the whole tree is known good: first
        // its size, each distinct tree read once, then every entry.
        match measure(&repo, snap.tree, stop) {
            Ok(_) => {}
            Err(Halt::Refused(why)) => return Err(refused(why)),
            Err(Halt::Cancelled) => return Err(cancelled()),
            Err(Halt::Failed(e)) => return Err(err(e)),
        }
        let mut walk = Walk::new(&repo, snap.tree, bounds).map_err(err)?;
        let mut nodes = 0u64;
        while let Some(item) = walk.next() {
            if let Err(e) = item {
                return Err(match walk.refused.take() {
                    Some(why) => refused(why),
                    None => err(e),
                });
            }
            nodes += 1;
        }

        let mut opts = RestoreOptions::default().numeric_id(true);
        opts.sparse = sparse_by_content();
        let local = LocalDestination::new(dest_str, false, false).map_err(err)?;
        let wrote = unwind(|| -> rustic_core::RusticResult<()> {
            let plan =
                repo.prepare_restore(&opts, Walk::new(&repo, snap.tree, bounds)?, &local, false)?;
            repo.restore(plan, &opts, Walk::new(&repo, snap.tree, bounds)?, &local)
        });
        match wrote {
            Ok(done) => done.map_err(err)?,
            // A worker found the backend stopped (see `stoppable.rs`).
            Err(_) if stop.load(Ordering::Relaxed) => return Err(cancelled()),
            // rustic unwraps a blob that fails to decrypt (and a local
            // write that fails) inside its worker threads.
            Err(panic) if panic_read_repository(&panic) => {
                let repo = repo.drop_index();
                r.check(&repo, &snap, doing)?;
                return Err(Error::Failed(format!(
                    "{doing} on backup target {}: reading the repository failed: {}",
                    r.target.name,
                    panic_summary(&panic)
                )));
            }
            Err(panic) => {
                return Err(Error::Failed(format!("{doing}: {}", panic_summary(&panic))));
            }
        }

        verify_contents(r, &repo, &snap, dest, doing, bounds)?;
        if let Some(root) =
            snap.description.as_deref().and_then(Description::parse).and_then(|d| d.root)
        {
            root.apply(dest)?;
        }
        bars.set_files_done(nodes);
        tracing::debug!(backup = %full, files = nodes, "restored");
        Ok(())
    });
    match restored {
        // Whatever failed once the stop was asked (a read the stopped
        // backend refused) failed because of it.
        Err(_) if stop.load(Ordering::Relaxed) => Err(cancelled()),
        other => other,
    }
}

fn check_empty_dir(dest: &Path) -> Result<()> {
    let refuse = |why: &str| Error::Refused(format!("restore into {}: {why}", dest.display()));
    match std::fs::symlink_metadata(dest) {
        Ok(m) if m.is_dir() => {}
        Ok(_) => return Err(refuse("not a directory")),
        Err(e) => return Err(refuse(&e.to_string())),
    }
    let mut entries = std::fs::read_dir(dest).map_err(|e| refuse(&e.to_string()))?;
    if entries.next().is_some() {
        return Err(refuse("the directory is not empty"));
    }
    Ok(())
}

/// rustic 0.13 does not export its `SparseRestore`; the field is public
/// and the type deserializes, so the value is made by name.
fn sparse_by_content<T: serde::de::DeserializeOwned>() -> T {
    serde_json::from_str("\"ByContent\"").expect("rustic knows sparse restore ByContent")
}

/// Reads every restored file back and checks each piece against the
/// hash its tree names: rustic's restore only checks that blobs decrypt,
/// so a repository that serves the wrong blob under an id would go
/// unnoticed. Costs one more read of the restored data.
fn verify_contents<S: IndexedFull>(
    r: &Restic,
    repo: &Rustic<S>,
    snap: &SnapshotFile,
    dest: &Path,
    doing: &str,
    bounds: Bounds<'_>,
) -> Result<()> {
    let err = |e: Box<rustic_core::RusticError>| {
        if bounds.stop.load(Ordering::Relaxed) {
            Error::Failed(format!("{doing}: cancelled"))
        } else {
            r.target.error(doing, &e)
        }
    };
    for item in Walk::new(repo, snap.tree, bounds).map_err(err)? {
        let (path, node) = item.map_err(err)?;
        if node.is_file() {
            verify_file(r, repo, snap, &dest.join(&path), &node, doing)?;
        }
    }
    Ok(())
}

fn verify_file<S: IndexedFull>(
    r: &Restic,
    repo: &Rustic<S>,
    snap: &SnapshotFile,
    path: &Path,
    node: &Node,
    doing: &str,
) -> Result<()> {
    let local =
        |e: std::io::Error| Error::Failed(format!("{doing}: reading back {}: {e}", path.display()));
    // Never waits on a FIFO or follows a symlink put where a file was.
    let flags = rustix::fs::OFlags::NOFOLLOW | rustix::fs::OFlags::NONBLOCK;
    let file = File::options()
        .read(true)
        .custom_flags(flags.bits().cast_signed())
        .open(path)
        .map_err(local)?;
    if !file.metadata().map_err(local)?.is_file() {
        return Err(local(std::io::Error::other("not a regular file")));
    }
    let mut file = BufReader::with_capacity(1 << 20, file);
    for blob in node.content.iter().flatten() {
        let entry = repo.get_index_entry(blob).map_err(|e| r.target.error(doing, &e))?;
        let len = u64::from(entry.location.data_length());
        if !blob.blob_matches_reader(len, &mut file) {
            return Err(Error::Corrupt(format!(
                "{doing} on backup target {}: backup {}: file {} does not match its data \
                 (blob {} in pack {}): corruption or tampering",
                r.target.name,
                snap.id.to_hex().as_str(),
                path.display(),
                blob.to_hex().as_str(),
                entry.pack.to_hex().as_str()
            )));
        }
    }
    // Nothing may follow the last piece.
    let mut extra = [0u8; 1];
    if file.read(&mut extra).map_err(local)? != 0 {
        return Err(Error::Corrupt(format!(
            "{doing} on backup target {}: backup {}: file {} is longer than its data",
            r.target.name,
            snap.id.to_hex().as_str(),
            path.display()
        )));
    }
    Ok(())
}
