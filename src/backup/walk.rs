//! A backup's tree, read with every tree object's hash checked, and the
//! names a restore must refuse.
//!
//! rustic reads tree objects by their index entry and only checks that
//! they decrypt: a repository written by a hostile key holder could serve
//! any tree under any id, even one that contains itself. Checked hashes
//! make the tree a finite, immutable DAG: every pass over it (validate,
//! plan, restore) sees the same entries.
//!
//! Finite is not small: a tree naming one subtree twice at every level
//! expands to 2^levels entries from a few objects. So a restore first
//! counts what the tree expands to ([`measure`], each distinct tree read
//! once) and refuses one beyond [`MAX_ENTRIES`] or [`MAX_DEPTH`]; every
//! walk counts again, and stops when told to.

use std::collections::HashMap;
use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};

use rustic_core::repofile::{BlobType, Node, Tree};
use rustic_core::{ErrorKind, IndexedFull, Repository, RusticError, RusticResult, TreeId};

/// The most entries (files, directories, links) a restore writes: a
/// bound on its time whatever the repository says.
pub(super) const MAX_ENTRIES: u64 = 50_000_000;
/// The deepest directory a restore makes: a path of more levels does not
/// fit in PATH_MAX (4,096 bytes) anyway.
pub(super) const MAX_DEPTH: usize = 2048;
/// The largest tree object read, one directory's listing held whole in
/// memory (about 400,000 entries with all their metadata).
pub(super) const MAX_TREE_BYTES: u32 = 128 << 20;
/// The longest path a restore writes, destination included.
pub(super) const PATH_MAX: usize = 4096;

/// What every walk of one restore shares: when to stop, and how long a
/// path below the destination may be.
#[derive(Clone, Copy)]
pub(super) struct Bounds<'a> {
    /// Set to cancel: the walk ends with an error at its next entry.
    pub stop: &'a AtomicBool,
    /// Bytes a path relative to the destination may have.
    pub room: usize,
}

/// Every node below the tree `root`, depth first, each directory before
/// its entries, with its path relative to the root: the order rustic's own
/// lister yields and its restore expects. The first entry a restore must
/// not write ends the walk with an error, and `refused` says why.
pub(super) struct Walk<'a, S> {
    repo: &'a Repository<S>,
    bounds: Bounds<'a>,
    /// The entries still to yield, one iterator per open directory.
    stack: Vec<std::vec::IntoIter<Node>>,
    path: PathBuf,
    /// Entries yielded so far.
    entries: u64,
    pub refused: Option<String>,
    /// The root's refusal, yielded first.
    pending: Option<Box<RusticError>>,
}

impl<'a, S: IndexedFull> Walk<'a, S> {
    pub fn new(repo: &'a Repository<S>, root: TreeId, bounds: Bounds<'a>) -> RusticResult<Self> {
        let mut walk = Walk {
            repo,
            bounds,
            stack: Vec::new(),
            path: PathBuf::new(),
            entries: 0,
            refused: None,
            pending: None,
        };
        walk.pending = match load(repo, root) {
            Ok(tree) => walk.enter(tree, Path::new("/")).err(),
            Err(Load::Refused(why)) => Some(walk.refuse(why)),
            Err(Load::Failed(e)) => return Err(e),
        };
        Ok(walk)
    }

    /// Makes `tree` (the directory `at`) the one whose entries come next.
    fn enter(&mut self, tree: Tree, at: &Path) -> RusticResult<()> {
        if self.stack.len() >= MAX_DEPTH {
            return Err(self.refuse(too_deep()));
        }
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

    fn step(&mut self) -> Option<RusticResult<(PathBuf, Node)>> {
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
            if self.bounds.stop.load(Ordering::Relaxed) {
                self.stack.clear();
                return Some(Err(RusticError::new(
                    ErrorKind::Internal,
                    "the restore was cancelled",
                )));
            }
            self.entries += 1;
            if self.entries > MAX_ENTRIES {
                return Some(Err(self.refuse(too_many(self.entries))));
            }
            let path = self.path.join(node.name());
            if let Some(why) = refuse(&path, &node.name()) {
                return Some(Err(self.refuse(why)));
            }
            if path.as_os_str().len() > self.bounds.room {
                let why = too_long(&path, self.stack.len(), self.bounds.room);
                return Some(Err(self.refuse(why)));
            }
            if let Some(id) = node.subtree.filter(|_| node.is_dir()) {
                let entered = match load(self.repo, id) {
                    Ok(tree) => self.enter(tree, &path),
                    Err(Load::Refused(why)) => Err(self.refuse(why)),
                    Err(Load::Failed(e)) => Err(e),
                };
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

impl<S: IndexedFull> Iterator for Walk<'_, S> {
    type Item = RusticResult<(PathBuf, Node)>;

    fn next(&mut self) -> Option<Self::Item> {
        self.step()
    }
}

/// Why a walk stopped before its end.
#[derive(Debug)]
pub(super) enum Halt {
    /// The tree must not be restored; why, in words.
    Refused(String),
    Cancelled,
    Failed(Box<RusticError>),
}

/// How many entries the tree `root` expands to, each distinct tree read
/// once (a subtree named twice counts twice but is read once), refusing a
/// tree beyond [`MAX_ENTRIES`] or [`MAX_DEPTH`] as soon as it shows: a
/// crafted tree of 2^46 entries is refused after reading its 47 objects.
pub(super) fn measure<S: IndexedFull>(
    repo: &Repository<S>,
    root: TreeId,
    stop: &AtomicBool,
) -> Result<u64, Halt> {
    /// A tree being counted: its subtrees still to count, and the
    /// entries counted so far (its own and its finished subtrees').
    struct Frame {
        id: TreeId,
        subtrees: std::vec::IntoIter<TreeId>,
        entries: u64,
    }
    let open = |id: TreeId| -> Result<Frame, Halt> {
        let tree = load(repo, id).map_err(Halt::from)?;
        let entries = tree.nodes.len() as u64;
        let subtrees: Vec<_> =
            tree.nodes.iter().filter(|n| n.is_dir()).filter_map(|n| n.subtree).collect();
        Ok(Frame { id, subtrees: subtrees.into_iter(), entries })
    };
    // Expanded entry counts of the trees finished so far.
    let mut counted: HashMap<TreeId, u64> = HashMap::new();
    // Entries of the distinct trees read: bounds the reading itself.
    let mut read = 0u64;
    let mut stack = vec![open(root)?];
    loop {
        if stop.load(Ordering::Relaxed) {
            return Err(Halt::Cancelled);
        }
        let top = stack.last_mut().expect("the stack ends with its root");
        if top.entries > MAX_ENTRIES || read > MAX_ENTRIES {
            return Err(Halt::Refused(too_many(top.entries.max(read))));
        }
        match top.subtrees.next() {
            Some(sub) => match counted.get(&sub) {
                Some(n) => top.entries = top.entries.saturating_add(*n),
                // A tree cannot hold itself (its id is its hash); checked
                // anyway, since a walk of it would never end.
                None if stack.iter().any(|f| f.id == sub) => {
                    return Err(Halt::Refused("a directory contains itself".into()));
                }
                None if stack.len() >= MAX_DEPTH => return Err(Halt::Refused(too_deep())),
                None => {
                    let frame = open(sub)?;
                    read = read.saturating_add(frame.entries);
                    stack.push(frame);
                }
            },
            None => {
                let done = stack.pop().expect("the stack ends with its root");
                let Some(parent) = stack.last_mut() else { return Ok(done.entries) };
                parent.entries = parent.entries.saturating_add(done.entries);
                counted.insert(done.id, done.entries);
            }
        }
    }
}

fn too_many(seen: u64) -> String {
    format!(
        "its tree expands to more than {MAX_ENTRIES} entries (at least {seen}): a damaged or \
         crafted backup"
    )
}

fn too_deep() -> String {
    format!("its tree is more than {MAX_DEPTH} directories deep: a damaged or crafted backup")
}

/// A path too long to write, named by its depth and its first 100
/// characters (never the destination's host path).
fn too_long(path: &Path, depth: usize, room: usize) -> String {
    let text = path.display().to_string();
    let prefix: String = text.chars().take(100).chain(['…']).collect();
    format!(
        "entry {prefix:?} (depth {depth}, {} bytes) is longer than a path below the volume may \
         be ({room} bytes)",
        text.len()
    )
}

enum Load {
    Refused(String),
    Failed(Box<RusticError>),
}

impl From<Load> for Halt {
    fn from(l: Load) -> Halt {
        match l {
            Load::Refused(why) => Halt::Refused(why),
            Load::Failed(e) => Halt::Failed(e),
        }
    }
}

/// Reads the tree object `id`, refusing one larger than
/// [`MAX_TREE_BYTES`] before reading it, and checks that its content
/// hashes to `id`.
fn load<S: IndexedFull>(repo: &Repository<S>, id: TreeId) -> Result<Tree, Load> {
    let hex = id.to_hex();
    let entry = repo.get_index_entry(&id).map_err(Load::Failed)?;
    let size = entry.location.data_length().max(entry.location.length);
    if size > MAX_TREE_BYTES {
        return Err(Load::Refused(format!(
            "one of its directories is listed in {} MiB, more than the {} MiB a restore reads: \
             a damaged or crafted backup",
            size >> 20,
            MAX_TREE_BYTES >> 20
        )));
    }
    let data = repo.cat_blob(BlobType::Tree, hex.as_str()).map_err(Load::Failed)?;
    if !id.blob_matches_reader(data.len() as u64, &mut data.as_ref()) {
        return Err(Load::Failed(
            RusticError::new(
                ErrorKind::Verification,
                "tree object {id} does not hash to its id: the repository was altered",
            )
            .attach_context("id", hex.as_str()),
        ));
    }
    serde_json::from_slice(&data).map_err(|e| {
        Load::Failed(
            RusticError::with_source(ErrorKind::Verification, "tree object {id} is not a tree", e)
                .attach_context("id", hex.as_str()),
        )
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
