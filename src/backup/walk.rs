//! A backup's tree, read with every tree object's hash checked, and the
//! names a restore must refuse.
//!
//! rustic reads tree objects by their index entry and only checks that
//! they decrypt: a repository written by a hostile key holder could serve
//! any tree under any id, even one that contains itself. Checked hashes
//! make the tree a finite, immutable DAG: every pass over it (validate,
//! plan, restore) sees the same entries.

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};

use rustic_core::repofile::{BlobType, Node, Tree};
use rustic_core::{ErrorKind, IndexedFull, Repository, RusticError, RusticResult, TreeId};

/// Every node below the tree `root`, depth first, each directory before
/// its entries, with its path relative to the root: the order rustic's own
/// lister yields and its restore expects. The first entry a restore must
/// not write ends the walk with an error, and `refused` says why.
pub(super) struct Walk<'a, S> {
    repo: &'a Repository<S>,
    /// The entries still to yield, one iterator per open directory.
    stack: Vec<std::vec::IntoIter<Node>>,
    path: PathBuf,
    pub refused: Option<String>,
    /// The root's refusal, yielded first.
    pending: Option<Box<RusticError>>,
}

impl<'a, S: IndexedFull> Walk<'a, S> {
    pub fn new(repo: &'a Repository<S>, root: TreeId) -> RusticResult<Self> {
        let mut walk =
            Walk { repo, stack: Vec::new(), path: PathBuf::new(), refused: None, pending: None };
        let tree = load(repo, root)?;
        walk.pending = walk.enter(tree, Path::new("/")).err();
        Ok(walk)
    }

    /// Makes `tree` (the directory `at`) the one whose entries come next.
    fn enter(&mut self, tree: Tree, at: &Path) -> RusticResult<()> {
        let mut names = std::collections::HashSet::new();
        if let Some(dup) = tree.nodes.iter().find(|n| !names.insert(n.name())) {
            let why =
                format!("directory {:?} names {:?} twice", at.display().to_string(), dup.name());
            return Err(self.refuse(why));
        }
        self.stack.push(tree.nodes.into_iter());
        Ok(())
    }

    fn refuse(&mut self, why: String) -> Box<RusticError> {
        self.stack.clear();
        self.refused = Some(why);
        RusticError::new(
            ErrorKind::InvalidInput,
            "the backup holds an entry a restore must not write",
        )
    }
}

impl<S: IndexedFull> Iterator for Walk<'_, S> {
    type Item = RusticResult<(PathBuf, Node)>;

    fn next(&mut self) -> Option<Self::Item> {
        if let Some(e) = self.pending.take() {
            return Some(Err(e));
        }
        loop {
            let top = self.stack.last_mut()?;
            let Some(node) = top.next() else {
                self.stack.pop();
                if !self.stack.is_empty() {
                    self.path.pop();
                }
                continue;
            };
            let path = self.path.join(node.name());
            if let Some(why) = refuse(&path, &node.name()) {
                return Some(Err(self.refuse(why)));
            }
            if let Some(id) = node.subtree.filter(|_| node.is_dir()) {
                let entered = load(self.repo, id).and_then(|tree| self.enter(tree, &path));
                if let Err(e) = entered {
                    self.stack.clear();
                    return Some(Err(e));
                }
                self.path.push(node.name());
            }
            return Some(Ok((path, node)));
        }
    }
}

/// Reads the tree object `id` and checks that its content hashes to `id`.
fn load<S: IndexedFull>(repo: &Repository<S>, id: TreeId) -> RusticResult<Tree> {
    let hex = id.to_hex();
    let data = repo.cat_blob(BlobType::Tree, hex.as_str())?;
    if !id.blob_matches_reader(data.len() as u64, &mut data.as_ref()) {
        return Err(RusticError::new(
            ErrorKind::Verification,
            "tree object {id} does not hash to its id: the repository was altered",
        )
        .attach_context("id", hex.as_str()));
    }
    serde_json::from_slice(&data).map_err(|e| {
        RusticError::with_source(ErrorKind::Verification, "tree object {id} is not a tree", e)
            .attach_context("id", hex.as_str())
    })
}

/// Why a tree entry must not be restored, if it must not: a name that is
/// empty, `.` or `..`, or holds `/` or NUL, or a path that is not plainly
/// relative (rustic joins paths under the destination as they are).
pub(super) fn refuse(path: &Path, name: &OsStr) -> Option<String> {
    let bytes = name.as_bytes();
    let why = if bytes.is_empty() {
        "an empty name"
    } else if bytes == b"." || bytes == b".." {
        "a name that is . or .."
    } else if bytes.contains(&b'/') {
        "a name containing /"
    } else if bytes.contains(&0) {
        "a name containing NUL"
    } else if !path.components().all(|c| matches!(c, Component::Normal(_))) {
        "a path that is absolute or leaves the destination"
    } else {
        return None;
    };
    Some(format!("entry {:?} has {why}", path.display().to_string()))
}
