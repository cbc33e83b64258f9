//! The cluster: what hosts agree on, through an engine that already
//! exists (etcd), never a protocol of our own. docs/cluster.md states the
//! protocol and its failure table.
//!
//! The core sees the [`Cluster`] trait and the plain types here, never a
//! type of the etcd client: `etcd.rs` is the one implementation,
//! `fence.rs` makes a host stop writing a volume when it lost the right.
//!
//! What lives in the cluster, per volume: its [`Record`] (name, the
//! cluster-wide key that names its storage, pool, options, home host),
//! and the [`Holder`]s that mount it, each tied to its host's lease so
//! that a host that dies lets go within the lease's TTL.

mod etcd;
pub mod fence;

pub use etcd::Etcd;

use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::time::Instant;

use serde::{Deserialize, Serialize};

/// A cluster volume as the registry holds it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Record {
    pub name: String,
    /// The cluster-wide identity: storage key on every host, so that a
    /// shared pool's directory is the same everywhere, and a name taken
    /// again is another volume.
    pub key: String,
    pub pool: String,
    pub opts: BTreeMap<String, String>,
    pub description: String,
    pub size_bytes: Option<u64>,
    /// The host that made it (for a volume in a local pool: where its
    /// bytes are).
    pub home: String,
    pub created_ms: i64,
    /// Where the data of a volume moving between hosts waits (`-o
    /// follow=true`): set by the home that let it go, read by the new
    /// home to restore it. `None` for a volume whose bytes are at home.
    #[serde(default)]
    pub archive: Option<Archive>,
}

/// A backup that holds a moving volume's data: the restic snapshot
/// `snapshot` in the backup target named `target`, which every host of
/// the cluster configures alike.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Archive {
    pub target: String,
    pub snapshot: String,
}

/// Who may mount a cluster volume at once (the seed's `accessMode`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    SingleHostRw,
    MultiHostRw,
    SingleHostRo,
    MultiHostRo,
}

impl Access {
    pub const NAMES: &[&str] = &["singleHostRW", "multiHostRW", "singleHostRO", "multiHostRO"];

    pub fn parse(s: &str) -> Option<Access> {
        Some(match s {
            "singleHostRW" => Access::SingleHostRw,
            "multiHostRW" => Access::MultiHostRw,
            "singleHostRO" => Access::SingleHostRo,
            "multiHostRO" => Access::MultiHostRo,
            _ => return None,
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Access::SingleHostRw => "singleHostRW",
            Access::MultiHostRw => "multiHostRW",
            Access::SingleHostRo => "singleHostRO",
            Access::MultiHostRo => "multiHostRO",
        }
    }

    /// One host at a time.
    pub fn exclusive(self) -> bool {
        matches!(self, Access::SingleHostRw | Access::SingleHostRo)
    }

    pub fn read_only(self) -> bool {
        matches!(self, Access::SingleHostRo | Access::MultiHostRo)
    }
}

/// A host that mounts a volume, tied to that host's lease.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Holder {
    pub node: String,
    /// How many of Docker's mounts the host has of it.
    pub mounts: u32,
    pub since_ms: i64,
}

/// A host of the cluster, while its lease lives.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Node {
    pub node: String,
    pub started_ms: i64,
    /// When it last renewed its lease and said so.
    pub heartbeat_ms: i64,
}

/// A change of the registry, in etcd's order.
#[derive(Debug, Clone, PartialEq)]
pub enum Change {
    /// Everything there is (at start, and after the watch fell behind a
    /// compaction), and the names whose records could not be read (they
    /// are there, though not usable). A volume missing from it was
    /// removed while this host did not watch, or etcd lost its data: the
    /// core never destroys anything on that ground alone.
    All {
        records: Vec<Record>,
        unreadable: Vec<String>,
        /// The moves asked for, volume name → the host that asks.
        moves: Vec<(String, String)>,
    },
    Put(Record),
    Deleted {
        name: String,
        key: String,
    },
    /// Host `to` asks for the `follow` volume `name` to move to it.
    Move {
        name: String,
        to: String,
    },
    /// The holders of `name` changed, at etcd revision `revision`.
    Holders {
        name: String,
        holders: Vec<Holder>,
        revision: i64,
    },
}

/// What a holding was made under: the lease it is tied to, and the etcd
/// revision that recorded it (older holder events are stale).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ticket {
    pub lease: i64,
    pub revision: i64,
}

/// Whether this host may write cluster volumes now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Health {
    /// Not yet connected: cluster volumes refuse Mounts.
    Connecting,
    /// Lease `lease` was renewed; it lives at least until `safe_until`.
    /// A new lease id means the old one was lost in between.
    Up { safe_until: Instant, lease: i64 },
    /// The lease may have expired: every holding is void and its mounts
    /// must be fenced.
    Lost,
}

/// What can go wrong, each with the words a user needs.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("the cluster's etcd cannot be reached: {0}")]
    Unreachable(String),
    #[error("volume name {name:?} is taken in the cluster (made on host {home})")]
    Taken { name: String, home: String },
    #[error("volume {name:?} is held by host {node} ({mounts} mount(s))")]
    Held { name: String, node: String, mounts: u32 },
    #[error("volume {name:?} changed in the cluster meanwhile; try again")]
    Moved { name: String },
    #[error("volume {name:?} is not in the cluster registry")]
    Unknown { name: String },
    #[error("the move of volume {name:?} to host {to} was called off")]
    CalledOff { name: String, to: String },
    #[error("this host holds no lease in etcd now (it is reconnecting)")]
    NoLease,
    #[error("etcd refused the request: {0}")]
    Refused(String),
}

pub type Result<T> = std::result::Result<T, Error>;

/// A boxed future: the trait is used as `dyn Cluster`.
pub type Fut<'a, T> = Pin<Box<dyn Future<Output = Result<T>> + Send + 'a>>;

/// The cluster as the core uses it. Every call that changes something is
/// one etcd transaction whose condition makes it exact (a name taken
/// twice, two exclusive holders) rather than check-then-write.
pub trait Cluster: Send + Sync {
    /// This host's name.
    fn node(&self) -> &str;

    /// How long a Mount waits for another holder to let go.
    fn mount_wait(&self) -> std::time::Duration;

    /// How long this host's lease outlives its last renewal.
    fn lease_ttl(&self) -> std::time::Duration;

    /// Adds a record; fails with `Taken` when the name is in use.
    fn register(&self, record: Record) -> Fut<'_, ()>;

    /// Removes a record, unless a host holds it (`Held`) or it is another
    /// volume of that name now (`Moved`). Whether this call removed it:
    /// `false` when it was gone already (another host removed it).
    fn unregister<'a>(&'a self, name: &'a str, key: &'a str) -> Fut<'a, bool>;

    /// Records this host as a holder of the volume `name` whose record
    /// has `key`, with `mounts` mounts; for an exclusive volume, only if
    /// no other host holds it (`Held`).
    fn hold<'a>(
        &'a self,
        name: &'a str,
        key: &'a str,
        mounts: u32,
        exclusive: bool,
    ) -> Fut<'a, Ticket>;

    /// Asks the home of the volume `name` whose record has `key` to hand
    /// it to this host. The request lives as long as this host's lease:
    /// a host that dies asks no more.
    fn request_move<'a>(&'a self, name: &'a str, key: &'a str) -> Fut<'a, ()>;

    /// Withdraws this host's request for `name`, if it is still there.
    fn cancel_move<'a>(&'a self, name: &'a str) -> Fut<'a, ()>;

    /// The home's last step of a move: `record` (its home now the host
    /// that asked, its archive set) replaces the volume's record, only
    /// if that host still asks (`CalledOff`) and it is the same volume
    /// (`Moved`).
    fn hand_over(&self, record: Record) -> Fut<'_, ()>;

    /// This host lets go of `name`.
    fn release<'a>(&'a self, name: &'a str) -> Fut<'a, ()>;

    /// The holders of `name`, from memory (kept by the watch).
    fn holders(&self, name: &str) -> Vec<Holder>;

    /// The hosts whose leases live.
    fn nodes(&self) -> Fut<'_, Vec<Node>>;

    /// The registry's changes, from the first full read on. Taken once.
    fn changes(&self) -> Option<tokio::sync::mpsc::Receiver<Change>>;

    /// This host's standing, as it changes.
    fn health(&self) -> tokio::sync::watch::Receiver<Health>;
}
