//! Every key the configuration file accepts, described once as data: the
//! README's reference and `ballast config example` are rendered from it
//! (`render.rs`), and tests hold it to the parser in `mod.rs` both ways
//! (every key described is accepted, every key accepted is described, and
//! every default described is the one the parser applies).

/// A table of the file; `Top` is the keys before any table header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Table {
    Top,
    Admin,
    Pool,
    BackupTarget,
    Cluster,
}

impl Table {
    /// The top-level key that holds the table; `None` for `Top`.
    pub fn key(self) -> Option<&'static str> {
        match self {
            Table::Top => None,
            Table::Admin => Some("admin"),
            Table::Pool => Some("pool"),
            Table::BackupTarget => Some("backup_target"),
            Table::Cluster => Some("cluster"),
        }
    }

    /// The header that opens the table in TOML: `[admin]`, `[[pool]]`.
    pub fn header(self) -> Option<String> {
        match self {
            Table::Top => None,
            Table::Admin => Some("[admin]".into()),
            Table::Cluster => Some("[cluster]".into()),
            Table::Pool | Table::BackupTarget => Some(format!("[[{}]]", self.key()?)),
        }
    }
}

/// A value's type, as people write it in the file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ty {
    String,
    Boolean,
    Integer,
    Float,
    /// A string with binary units: `512M`, `10G`.
    Size,
    /// A string such as `30m`, `24h`, `7d`, `1h30m`, `0s`.
    Duration,
    /// An absolute path.
    Path,
    /// An array of absolute paths.
    Paths,
    /// An array of URLs.
    Urls,
    /// One of these strings.
    Enum(&'static [&'static str]),
}

impl Ty {
    pub fn name(self) -> String {
        match self {
            Ty::String => "string".into(),
            Ty::Boolean => "boolean".into(),
            Ty::Integer => "integer".into(),
            Ty::Float => "float".into(),
            Ty::Size => "size".into(),
            Ty::Duration => "duration".into(),
            Ty::Path => "path".into(),
            Ty::Paths => "array of paths".into(),
            Ty::Urls => "array of URLs".into(),
            Ty::Enum(options) => {
                let quoted: Vec<String> = options.iter().map(|o| format!("`{o}`")).collect();
                quoted.join(", ")
            }
        }
    }
}

/// What the parser does when a key is left out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Omitted {
    /// The table is refused without it.
    Required,
    /// The parser applies this value (TOML): writing it changes nothing.
    Value(&'static str),
    /// No value stands for "unset"; this says what it means.
    Unset(&'static str),
}

/// One key of one table.
#[derive(Debug, Clone, Copy)]
pub struct Key {
    pub table: Table,
    pub name: &'static str,
    pub ty: Ty,
    pub default: Omitted,
    /// One paragraph: what the key does, its rules.
    pub meaning: &'static str,
    /// A valid value (TOML). Together, one table's examples are valid.
    pub example: &'static str,
}

/// A table and what it is for.
#[derive(Debug, Clone, Copy)]
pub struct Section {
    pub table: Table,
    pub title: &'static str,
    pub about: &'static str,
}

pub const SECTIONS: &[Section] = &[
    Section {
        table: Table::Top,
        title: "Top-level keys",
        about: "They come before any table header.",
    },
    Section {
        table: Table::Admin,
        title: "`[admin]`",
        about: "The admin endpoint: the admin socket, and the TCP listener that \
                `--admin-listen` adds. Optional.",
    },
    Section {
        table: Table::Pool,
        title: "`[[pool]]`",
        about: "A storage pool; one table per pool. Without any, one `dir` pool \
                named `default` lives in `<state-dir>/pools/default`.",
    },
    Section {
        table: Table::BackupTarget,
        title: "`[[backup_target]]`",
        about: "Where backups go: a restic repository in a directory or an S3 \
                bucket; one table per target. Credentials and passwords are never \
                logged nor shown by the API or `ballast config check`.",
    },
    Section {
        table: Table::Cluster,
        title: "`[cluster]`",
        about: "Joins this host to a cluster of ballast daemons that share a registry of \
                volumes and single-writer leases in etcd (see \"Running on a cluster\" \
                and docs/cluster.md). Without it, the daemon is on its own.",
    },
];

const fn key(
    table: Table,
    name: &'static str,
    ty: Ty,
    default: Omitted,
    example: &'static str,
    meaning: &'static str,
) -> Key {
    Key { table, name, ty, default, meaning, example }
}

use Omitted::{Required, Unset, Value};
use Table::{Admin, BackupTarget, Cluster, Pool, Top};

/// Every key, table by table in file order. The examples of a table's
/// keys go together (a `loop` pool, an `s3://` target), so that a table
/// with all of them set is valid.
pub const KEYS: &[Key] = &[
    key(
        Top,
        "trash_retention",
        Ty::Duration,
        Value(r#""24h""#),
        r#""7d""#,
        "How long a removed volume's data stays in the trash (`docker volume rm` is a \
         soft delete) before the daemon purges it; `ballast volume restore` brings a \
         volume back meanwhile. `0s` purges at once. A pool under 10% free space has \
         its oldest removed volumes purged early.",
    ),
    key(
        Top,
        "host_path_roots",
        Ty::Paths,
        Value("[]"),
        r#"["/srv"]"#,
        "Directories strictly inside which `-o path=DIR` makes an existing host \
         directory a volume (symlinks resolved). Each must exist when the daemon \
         starts. Empty: host-path volumes are refused.",
    ),
    key(
        Admin,
        "access_key",
        Ty::String,
        Unset("no TCP listener"),
        r#""admin""#,
        "The user of HTTP basic auth on the TCP admin listener (`--admin-listen`), \
         which refuses to start without it. Set together with `secret_key`; not \
         empty. The admin socket needs no credentials.",
    ),
    key(
        Admin,
        "secret_key",
        Ty::String,
        Unset("no TCP listener"),
        r#""a-long-random-secret""#,
        "The password of HTTP basic auth on the TCP admin listener, checked in \
         constant time on every request. Set together with `access_key`; not empty. \
         Keep this file readable by root only.",
    ),
    key(
        Admin,
        "socket_group",
        Ty::String,
        Unset("the admin socket is root's alone (mode 0600)"),
        r#""docker""#,
        "A group (name or numeric id) that gets the admin socket, mode 0660, so that \
         its members run the `ballast` CLI without root. A group that does not \
         exist stops start-up. A socket passed in by systemd is left as it is.",
    ),
    key(
        Admin,
        "trust_forwarded_headers",
        Ty::Boolean,
        Value("false"),
        "true",
        "Build the API's absolute links from `X-Forwarded-Proto`, `-Host`, `-Port` \
         and `-Prefix` instead of `Host`. Only behind a reverse proxy you run, \
         which sets them.",
    ),
    key(
        Admin,
        "tls_cert",
        Ty::Path,
        Unset("plain HTTP, on loopback addresses only"),
        r#""/etc/ballast/admin.crt""#,
        "A PEM file with the TCP admin listener's certificate chain, leaf first. \
         With `tls_key`, the listener speaks HTTPS only, so the access and secret \
         keys never cross the network in clear. Read at start-up.",
    ),
    key(
        Admin,
        "tls_key",
        Ty::Path,
        Unset("plain HTTP, on loopback addresses only"),
        r#""/etc/ballast/admin.key""#,
        "A PEM file with the private key of `tls_cert` (PKCS#8, PKCS#1 or SEC1). \
         Keep it readable by root only.",
    ),
    key(
        Admin,
        "insecure",
        Ty::Boolean,
        Value("false"),
        "true",
        "Let `--admin-listen` serve plain HTTP on an address other than loopback, \
         sending the keys in clear. Without TLS, a non-loopback address stops \
         start-up unless this is true.",
    ),
    key(
        Pool,
        "name",
        Ty::String,
        Required,
        r#""fast""#,
        "The pool's name, as in `-o pool=NAME`; unique among pools. 1 to 255 \
         characters of `A-Za-z0-9_.-`, starting with a letter or digit.",
    ),
    key(
        Pool,
        "backend",
        Ty::Enum(&["dir", "btrfs", "loop"]),
        Required,
        r#""loop""#,
        "`dir`: a directory per volume, sizes cannot be enforced. `btrfs`: a \
         subvolume per volume on a btrfs filesystem, instant snapshots and clones, \
         sizes as quota-group limits. `loop`: an image file per volume with its own \
         filesystem, attached to a loop device; sizes enforced.",
    ),
    key(
        Pool,
        "path",
        Ty::Path,
        Unset("`<state-dir>/pools/<name>`"),
        r#""/srv/ballast/fast""#,
        "The pool's directory, absolute; a `btrfs` pool's is on btrfs. Made at the \
         first start if missing (its parent must exist) and marked with a \
         `ballast-pool` file. A pool that holds volumes but whose marker is missing \
         (its disk not mounted yet) is unavailable until it appears.",
    ),
    key(
        Pool,
        "default",
        Ty::Boolean,
        Value("false"),
        "true",
        "The pool of volumes created without `-o pool=`. At most one pool says \
         `true`; when none does, the first pool is the default.",
    ),
    key(
        Pool,
        "scope",
        Ty::Enum(&["local", "global"]),
        Value(r#""local""#),
        r#""global""#,
        "The volume scope reported to Docker: `global` when the pool's storage is \
         shared by the hosts of a cluster. The driver reports `global` if any pool \
         says so.",
    ),
    key(
        Pool,
        "fs",
        Ty::Enum(&["ext4", "xfs"]),
        Value(r#""ext4""#),
        r#""xfs""#,
        "`loop` pools only: the filesystem made in each image, unless the volume's \
         `-o fs=` says otherwise. `mkfs.ext4` or `mkfs.xfs` must be installed; xfs \
         images are at least 300M.",
    ),
    key(
        Pool,
        "default_size",
        Ty::Size,
        Value(r#""1G""#),
        r#""10G""#,
        "`loop` pools only: the size of a volume created without `-o size=`.",
    ),
    key(
        Pool,
        "overcommit",
        Ty::Float,
        Value("1.0"),
        "1.5",
        "`loop` pools only: how far the volumes' sizes together may exceed the \
         pool's capacity. A create that would pass capacity × `overcommit` is \
         refused; `1.0` never overcommits. Above 0.",
    ),
    key(
        BackupTarget,
        "name",
        Ty::String,
        Required,
        r#""offsite""#,
        "The target's name, as in `--target` and `-o backup-target=`; unique among \
         targets, and the same rule as pool names.",
    ),
    key(
        BackupTarget,
        "url",
        Ty::String,
        Required,
        r#""s3://backups/ballast""#,
        "`file:///absolute/path` (any mounted directory, NFS included) or \
         `s3://bucket/prefix`. The first backup creates the repository; a listing \
         or a restore never does.",
    ),
    key(
        BackupTarget,
        "endpoint",
        Ty::String,
        Unset("AWS, `https://s3.<region>.amazonaws.com`"),
        r#""https://s3.example.net""#,
        "`s3://` targets only: an S3-compatible server, `http://host[:port]` or \
         `https://host[:port]`, spoken to with path-style requests.",
    ),
    key(
        BackupTarget,
        "region",
        Ty::String,
        Unset("`us-east-1`"),
        r#""eu-central-1""#,
        "`s3://` targets: the region requests are signed for.",
    ),
    key(
        BackupTarget,
        "access_key",
        Ty::String,
        Unset("`AWS_ACCESS_KEY_ID` from the daemon's environment"),
        r#""backup-writer""#,
        "`s3://` targets: the access key id. Set together with `secret_key`; \
         without both, the daemon's `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY` \
         (and `AWS_SESSION_TOKEN`) are used, and nothing else from the host.",
    ),
    key(
        BackupTarget,
        "secret_key",
        Ty::String,
        Unset("`AWS_SECRET_ACCESS_KEY` from the daemon's environment"),
        r#""backup-writer-secret""#,
        "`s3://` targets: the secret access key. Set together with `access_key`.",
    ),
    key(
        BackupTarget,
        "password_file",
        Ty::Path,
        Unset("a key generated into `<state-dir>/backup-keys/<name>.key`"),
        r#""/etc/ballast/offsite.key""#,
        "The file holding the repository's password, absolute; one trailing newline \
         is not part of the password. Unset, a random key is generated on first use \
         (mode 0600), and another host restoring these backups needs that same file.",
    ),
    key(
        BackupTarget,
        "keep_last",
        Ty::Integer,
        Unset("not a rule; without any rule, every backup is kept"),
        "7",
        "Retention, applied to a volume's backups in this target after each backup \
         of it: keep the newest N. With `keep_daily` and `keep_weekly`, a backup that \
         any of them keeps stays. At least 1.",
    ),
    key(
        BackupTarget,
        "keep_daily",
        Ty::Integer,
        Unset("not a rule; without any rule, every backup is kept"),
        "14",
        "Retention: keep the newest backup of each of the last N days that have \
         one. At least 1.",
    ),
    key(
        BackupTarget,
        "keep_weekly",
        Ty::Integer,
        Unset("not a rule; without any rule, every backup is kept"),
        "8",
        "Retention: keep the newest backup of each of the last N weeks that have \
         one. At least 1.",
    ),
    key(
        Cluster,
        "etcd",
        Ty::Urls,
        Required,
        r#"["https://10.0.0.1:2379", "https://10.0.0.2:2379"]"#,
        "The etcd cluster's client URLs (an array of `http://` or `https://` URLs; \
         every member, so that one down changes nothing). Names, options and holders \
         of cluster volumes live there under `/ballast/v1/`.",
    ),
    key(
        Cluster,
        "node",
        Ty::String,
        Unset("the host name, up to its first dot"),
        r#""node-a""#,
        "This host's name in the cluster: what `ballast cluster status` lists and \
         what errors name as a volume's holder. Unique per host.",
    ),
    key(
        Cluster,
        "lease_ttl",
        Ty::Duration,
        Value(r#""10s""#),
        r#""15s""#,
        "How long this host's etcd lease outlives its last keep-alive. A crashed \
         host's volumes are free for others after it; a host that cannot renew for \
         6/10 of it fences its mounts of cluster volumes (read-only). From `2s` to `300s`.",
    ),
    key(
        Cluster,
        "mount_wait",
        Ty::Duration,
        Value(r#""10s""#),
        r#""5s""#,
        "How long a Mount of a volume another host holds waits for it to let go \
         (swarm starts a task's new container before the old one has stopped) \
         before it fails naming the holder. At most `20s`.",
    ),
    key(
        Cluster,
        "user",
        Ty::String,
        Unset("no etcd authentication"),
        r#""ballast""#,
        "The etcd user, with `password`.",
    ),
    key(
        Cluster,
        "password",
        Ty::String,
        Unset("no etcd authentication"),
        r#""a-long-random-secret""#,
        "The etcd user's password. Keep this file readable by root only.",
    ),
    key(
        Cluster,
        "ca_file",
        Ty::Path,
        Unset("the system's roots"),
        r#""/etc/ballast/etcd-ca.pem""#,
        "The CA that signed the etcd members' certificates (PEM), for `https://` \
         endpoints.",
    ),
    key(
        Cluster,
        "cert_file",
        Ty::Path,
        Unset("no client certificate"),
        r#""/etc/ballast/etcd-client.pem""#,
        "This host's client certificate (PEM), with `key_file`, where etcd asks for \
         one.",
    ),
    key(
        Cluster,
        "key_file",
        Ty::Path,
        Unset("no client certificate"),
        r#""/etc/ballast/etcd-client-key.pem""#,
        "The private key of `cert_file` (PEM).",
    ),
];

/// The keys of one table, in file order.
pub fn keys(table: Table) -> impl Iterator<Item = &'static Key> {
    KEYS.iter().filter(move |k| k.table == table)
}

/// A short, typical file: host paths allowed, a btrfs pool as the default,
/// a loop pool with sizes, and a backup target on a NAS.
pub const EXAMPLE: &str = r#"trash_retention = "7d"
host_path_roots = ["/srv"]

[[pool]]
name = "fast"
backend = "btrfs"
path = "/mnt/btrfs/ballast"
default = true

[[pool]]
name = "quota"
backend = "loop"
path = "/srv/ballast/quota"
default_size = "10G"

[[backup_target]]
name = "nas"
url = "file:///mnt/nas/ballast-backups"
keep_daily = 14
"#;
