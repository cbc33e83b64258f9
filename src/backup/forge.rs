//! Test support: objects written straight into a repository with its
//! key, as a hostile key holder can write them, for trees no archiver
//! makes (a subtree named twice at every level, one directory of
//! millions of entries).

use std::path::{Path, PathBuf};

use aes256ctr_poly1305aes::Aes256CtrPoly1305Aes;
use aes256ctr_poly1305aes::aead::AeadInPlace;
use rustic_core::repofile::{Metadata, Node, NodeType, Tree};
use rustic_core::{SnapshotOptions, TreeId};
use sha2::{Digest, Sha256};

use super::meta::Description;
use super::progress::Bars;
use super::{VolumeMeta, restic};
use crate::config::BackupTarget;

/// Tree objects to be written as one pack.
pub(crate) struct Forge {
    target: BackupTarget,
    state_dir: PathBuf,
    repo_dir: PathBuf,
    key: Aes256CtrPoly1305Aes,
    /// Encrypted blobs with their pack header entries.
    blobs: Vec<(Vec<u8>, Vec<u8>, serde_json::Value)>,
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

impl Forge {
    /// The repository of `target` (a `file://` one), created if needed.
    pub fn new(target: &BackupTarget, state_dir: &Path) -> Forge {
        let r = restic::open(target, state_dir).unwrap();
        let key = r.repo(&Bars::default(), "forging", true).unwrap().key();
        let mut bytes = Vec::with_capacity(64);
        bytes.extend_from_slice(&key.encrypt);
        bytes.extend_from_slice(&key.mac.k);
        bytes.extend_from_slice(&key.mac.r);
        let repo_dir = PathBuf::from(target.url.strip_prefix("file://").unwrap());
        Forge {
            target: target.clone(),
            state_dir: state_dir.to_path_buf(),
            repo_dir,
            key: Aes256CtrPoly1305Aes::new(aes256ctr_poly1305aes::Key::from_slice(&bytes)),
            blobs: Vec::new(),
        }
    }

    fn encrypt(&self, data: &[u8]) -> Vec<u8> {
        let mut nonce = [0u8; 16];
        getrandom::fill(&mut nonce).unwrap();
        let mut out = nonce.to_vec();
        out.extend_from_slice(data);
        let tag = self.key.encrypt_in_place_detached(&nonce.into(), &[], &mut out[16..]).unwrap();
        out.extend_from_slice(&tag);
        out
    }

    /// A tree of `nodes`.
    pub fn tree(&mut self, nodes: Vec<Node>) -> TreeId {
        let (data, _) = Tree { nodes }.serialize().unwrap();
        self.raw_tree(&data, false)
    }

    /// A tree object of content `data` (JSON), stored compressed or not.
    pub fn raw_tree(&mut self, data: &[u8], compress: bool) -> TreeId {
        let id: [u8; 32] = Sha256::digest(data).into();
        let id_hex = hex(&id);
        let (stored, mut header) = if compress {
            (zstd::bulk::compress(data, 1).unwrap(), vec![3u8])
        } else {
            (data.to_vec(), vec![1u8])
        };
        let sealed = self.encrypt(&stored);
        header.extend_from_slice(&len32(sealed.len()).to_le_bytes());
        let mut entry = serde_json::json!({ "id": id_hex, "type": "tree", "length": sealed.len() });
        if compress {
            header.extend_from_slice(&len32(data.len()).to_le_bytes());
            entry["uncompressed_length"] = data.len().into();
        }
        header.extend_from_slice(&id);
        self.blobs.push((sealed, header, entry));
        TreeId::from(id_hex.parse::<rustic_core::Id>().unwrap())
    }

    /// Writes the pack and its index, and a ballast snapshot whose tree
    /// is `root`; returns the snapshot's id.
    pub fn seal(self, root: TreeId) -> String {
        let (mut pack, mut header, mut entries) = (Vec::new(), Vec::new(), Vec::new());
        for (sealed, head, mut entry) in self.blobs.iter().cloned() {
            entry["offset"] = pack.len().into();
            pack.extend_from_slice(&sealed);
            header.extend_from_slice(&head);
            entries.push(entry);
        }
        let header = self.encrypt(&header);
        pack.extend_from_slice(&header);
        pack.extend_from_slice(&len32(header.len()).to_le_bytes());
        let pack_id = hex(&Sha256::digest(&pack));
        let dir = self.repo_dir.join("data").join(&pack_id[..2]);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join(&pack_id), &pack).unwrap();
        let index = serde_json::json!({ "packs": [{ "id": pack_id, "blobs": entries }] });
        let index = self.encrypt(&serde_json::to_vec(&index).unwrap());
        std::fs::write(self.repo_dir.join("index").join(hex(&Sha256::digest(&index))), index)
            .unwrap();

        let r = restic::open(&self.target, &self.state_dir).unwrap();
        let repo = r.repo(&Bars::default(), "forging", false).unwrap();
        let desc = Description { meta: meta(), root: None };
        let opts = SnapshotOptions::default().description(desc.to_json());
        let mut snap = opts.add_tags("ballast").unwrap().to_snapshot().unwrap();
        snap.tree = root;
        let before: Vec<_> = r.snapshots(&repo, "forging").unwrap();
        repo.save_snapshots(vec![snap]).unwrap();
        let after = r.snapshots(&repo, "forging").unwrap();
        let new = after.iter().find(|s| !before.iter().any(|b| b.id == s.id)).unwrap();
        new.id.to_hex().as_str().to_string()
    }
}

fn meta() -> VolumeMeta {
    VolumeMeta {
        volume_name: "forged".into(),
        volume_id: "1v999".into(),
        snapshot_id: String::new(),
        backend: "dir".into(),
        size_bytes: None,
        driver_opts: Default::default(),
        host: "elsewhere".into(),
        host_id: "forger".into(),
        backup_id: String::new(),
    }
}

/// A directory entry named `name` for the tree `subtree`.
pub(crate) fn dir(name: &str, subtree: TreeId) -> Node {
    let meta = Metadata { mode: Some(0o755), ..Default::default() };
    let mut node = Node::new_node(std::ffi::OsStr::new(name), NodeType::Dir, meta);
    node.subtree = Some(subtree);
    node
}

/// A backup whose tree is `levels` deep, each level's directory naming
/// the one below twice (`a` and `b`): 2^(levels+1) entries, `levels`+1
/// objects. Returns its restic id.
pub(crate) fn dag(target: &BackupTarget, state_dir: &Path, levels: u32) -> String {
    let mut forge = Forge::new(target, state_dir);
    let mut tree = forge.tree(Vec::new());
    for _ in 0..levels {
        tree = forge.tree(vec![dir("a", tree), dir("b", tree)]);
    }
    forge.seal(tree)
}

/// A length as the pack format's u32; a forged blob is far smaller.
fn len32(n: usize) -> u32 {
    u32::try_from(n).expect("a forged blob's length fits a pack header")
}
