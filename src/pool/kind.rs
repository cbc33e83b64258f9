//! What a pool is made of: its configuration and the kinds a pool's
//! backend and filesystem can be. The config file is parsed into these.

use std::path::PathBuf;

/// A storage backend kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BackendKind {
    Dir,
    Btrfs,
    Loop,
}

impl BackendKind {
    pub fn as_str(self) -> &'static str {
        match self {
            BackendKind::Dir => "dir",
            BackendKind::Btrfs => "btrfs",
            BackendKind::Loop => "loop",
        }
    }
}

/// Docker's volume scope, reported in Capabilities.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    Local,
    Global,
}

#[derive(Debug, Clone, PartialEq)]
pub struct PoolConfig {
    pub name: String,
    pub backend: BackendKind,
    pub path: PathBuf,
    pub default: bool,
    pub scope: Scope,
    /// Loop pools: the filesystem made in each image, unless `-o fs=`.
    pub fs: FsKind,
    /// Loop pools: the size of a volume created without `-o size=`.
    pub default_size: u64,
    /// Loop pools: how far the sum of volume sizes may exceed the pool's
    /// capacity (1.0 = not at all).
    pub overcommit: f64,
    /// In a cluster, a shared pool keeps this host's snapshots, staging
    /// and trash apart, under `hosts/<node>/`: hosts share the volumes'
    /// bytes, never each other's work in progress.
    pub host_area: Option<String>,
}

/// The filesystem inside a loop pool's image.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FsKind {
    Ext4,
    Xfs,
}

impl FsKind {
    pub fn parse(s: &str) -> Option<FsKind> {
        match s {
            "ext4" => Some(FsKind::Ext4),
            "xfs" => Some(FsKind::Xfs),
            _ => None,
        }
    }

    /// The smallest image its mkfs accepts (xfsprogs refuses filesystems
    /// under 300 MiB; mke2fs needs a few hundred KiB, rounded up here).
    pub fn min_size(self) -> u64 {
        match self {
            FsKind::Ext4 => 1 << 20,
            FsKind::Xfs => 300 << 20,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            FsKind::Ext4 => "ext4",
            FsKind::Xfs => "xfs",
        }
    }
}

/// A loop pool's size when the config names none.
pub const DEFAULT_LOOP_SIZE: u64 = 1 << 30;
