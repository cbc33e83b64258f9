//! Every type of the admin API: its fields (docs/design.md, "The volume
//! model", after Rancher's v1 `volume` pages), the methods and actions it
//! allows, and what collections of it can be filtered and sorted on.

use super::{ActionDef, Default, Field, Options, Schema, Ty, field};
use crate::volume::{MAX_DESCRIPTION, MAX_NAME_LEN, validate_new_name};

pub static SCHEMAS: &[&Schema] = &[
    &API_VERSION,
    &PROJECT,
    &VOLUME,
    &SNAPSHOT,
    &BACKUP,
    &STORAGE_POOL,
    &BACKUP_TARGET,
    &CLUSTER_NODE,
    &IMAGE,
    &INSTANCE,
    &ERROR,
    &VOLUME_SCHEDULE,
    &VOLUME_SNAPSHOT_INPUT,
    &REVERT_TO_SNAPSHOT_INPUT,
    &RESTORE_FROM_BACKUP_INPUT,
    &VOLUME_DEALLOCATE_INPUT,
    &VOLUME_RESTORE_INPUT,
    &SNAPSHOT_BACKUP_INPUT,
    &BACKUP_RESTORE_INPUT,
];

/// A length limit as the schema states it (u32). Every caller is a
/// constant, so a limit that did not fit would stop the build at the
/// assertion; `u32::try_from` cannot run in a constant.
#[allow(clippy::cast_possible_truncation, reason = "the assertion rules truncation out")]
const fn limit(n: usize) -> u32 {
    assert!(n <= u32::MAX as usize, "a length limit fits in u32");
    n as u32
}

const ID: Field = field("id", Ty::String, "the unique identifier, never reused").query();
const TYPE: Field = field("type", Ty::String, "the schema id of this resource");
const NAME_CHARS: &str = "A-Za-z0-9_.-";
const STATE_OPTIONS: &[&str] = &["requested", "inactive", "active", "removed", "purged"];
const JOB_STATES: &[&str] = &["creating", "created", "error", "removed"];
const TRANSITIONING: Field = field("transitioning", Ty::Enum, "yes while a job runs on it")
    .options(Options::Fixed(&["no", "yes", "error"]))
    .query();
const TRANSITIONING_MESSAGE: Field =
    field("transitioningMessage", Ty::String, "progress or the error of the last job").query();
const TRANSITIONING_PROGRESS: Field = field(
    "transitioningProgress",
    Ty::Int,
    "the percent done of the job running on it; null when none runs or it tells none",
)
.nullable()
.query();
const CREATED: Field = field("created", Ty::Date, "RFC 3339, UTC").query();
/// Rancher's common resource fields that typed clients decode.
const KIND: Field = field("kind", Ty::String, "the kind of resource; the same as `type`").query();
const UUID: Field = field(
    "uuid",
    Ty::String,
    "stable for the resource's lifetime and across restarts, unique across hosts",
)
.query();
/// `removeTime` of a resource that has no trash: removed, it is gone.
const NO_REMOVE_TIME: Field =
    field("removeTime", Ty::Date, "always null: a removed one is gone at once").nullable();
const CREATED_TS: Field = field("createdTS", Ty::Int, "milliseconds since the epoch").query();

const GET: &[&str] = &["GET"];
/// Retention counts are kept as 32-bit numbers.
const KEEP_MAX: i64 = u32::MAX as i64;
const NO_ACTIONS: &[ActionDef] = &[];

const fn action(
    name: &'static str,
    input: Option<&'static str>,
    output: &'static str,
) -> ActionDef {
    ActionDef { name, input, output }
}

fn name_rule(name: &str) -> crate::Result<()> {
    validate_new_name(name)
}

pub static API_VERSION: Schema = Schema {
    id: "apiVersion",
    collection: None,
    description: "a version of the API, with links to its collections",
    fields: &[ID, TYPE],
    resource_methods: GET,
    collection_methods: GET,
    resource_actions: NO_ACTIONS,
    default_sort: "id",
};

pub static PROJECT: Schema = Schema {
    id: "project",
    collection: Some("projects"),
    description: "the one project (`1a5`) every resource of this host belongs to; \
                  `/v1/projects/1a5/{collection}` is the same as `/v1/{collection}`",
    fields: &[ID, TYPE, field("name", Ty::String, "").query()],
    resource_methods: GET,
    collection_methods: GET,
    resource_actions: NO_ACTIONS,
    default_sort: "id",
};

pub static VOLUME: Schema = Schema {
    id: "volume",
    collection: Some("volumes"),
    description: "a volume Docker can mount, kept in a storage pool",
    fields: &[
        ID,
        TYPE,
        KIND,
        UUID,
        field("name", Ty::String, "Docker's name for it; unique among live volumes")
            .create()
            .required()
            .chars(NAME_CHARS)
            .length(1, limit(MAX_NAME_LEN))
            .rule(name_rule)
            .query(),
        field("description", Ty::String, "")
            .create()
            .update()
            .length(0, limit(MAX_DESCRIPTION))
            .query(),
        field("driver", Ty::String, "the plugin's driver name; the only valid value is this one")
            .create()
            .required()
            .options(Options::Driver)
            .default(Default::Driver)
            .query(),
        field("driverOpts", Ty::Map, "docker volume create -o KEY=VALUE: pool, size, fs…").create(),
        field("allocate", Ty::Boolean, "false leaves the new volume `requested`")
            .create()
            .default(Default::Bool(true)),
        field("externalId", Ty::String, "the name Docker knows").query(),
        field("uri", Ty::String, "where its files are, backend://path").nullable().query(),
        field("isHostPath", Ty::Boolean, "").query(),
        field("accessMode", Ty::Enum, "who may mount it at once: `-o access-mode=` in a cluster")
            .options(Options::Fixed(crate::cluster::Access::NAMES))
            .query(),
        field("hostId", Ty::String, "in a cluster, the host that made it; null otherwise")
            .nullable()
            .query(),
        field("holders", Ty::Array, "in a cluster, the hosts that mount it now"),
        field(
            "leaseState",
            Ty::Enum,
            "in a cluster, who holds it: free, held (here), heldElsewhere, fenced",
        )
        .options(Options::Fixed(crate::core::LeaseState::NAMES))
        .query(),
        field(
            "instanceId",
            Ty::Reference("instance"),
            "the first of `mountIds` (the one container using it, when one is); null when none",
        )
        .nullable()
        .query(),
        field("mountIds", Ty::Array, "the mount IDs of all the containers using it").query(),
        field("imageId", Ty::Reference("image"), "always null: volumes are not made from images")
            .nullable()
            .query(),
        field("storagePoolId", Ty::Reference("storagePool"), "").query(),
        field("sizeBytes", Ty::Int, "its hard size, when its pool enforces one").nullable().query(),
        field("usedBytes", Ty::Int, "").query(),
        field("mountCount", Ty::Int, "").query(),
        field("snapshotCount", Ty::Int, "").query(),
        field("state", Ty::Enum, "").options(Options::Fixed(STATE_OPTIONS)).query(),
        TRANSITIONING,
        TRANSITIONING_MESSAGE,
        TRANSITIONING_PROGRESS,
        CREATED,
        CREATED_TS,
        field("removed", Ty::Date, "when it went to the trash").nullable().query(),
        field("removeTime", Ty::Date, "when it leaves the trash, purged; null outside the trash")
            .nullable()
            .query(),
        field("schedule", Ty::Object("volumeSchedule"), "scheduled snapshots and backups")
            .update()
            .nullable(),
    ],
    resource_methods: &["GET", "PUT", "DELETE"],
    collection_methods: &["GET", "POST"],
    resource_actions: &[
        action("allocate", None, "volume"),
        action("activate", None, "volume"),
        action("deactivate", None, "volume"),
        action("deallocate", Some("volumeDeallocateInput"), "volume"),
        action("snapshot", Some("volumeSnapshotInput"), "snapshot"),
        action("reverttosnapshot", Some("revertToSnapshotInput"), "volume"),
        action("restorefrombackup", Some("restoreFromBackupInput"), "volume"),
        action("remove", None, "volume"),
        action("restore", Some("volumeRestoreInput"), "volume"),
        action("purge", None, "volume"),
    ],
    default_sort: "name",
};

pub static SNAPSHOT: Schema = Schema {
    id: "snapshot",
    collection: Some("snapshots"),
    description: "a point-in-time copy of a volume",
    fields: &[
        ID,
        TYPE,
        KIND,
        UUID,
        field("name", Ty::String, "").query(),
        field("volumeId", Ty::Reference("volume"), "").query(),
        field("state", Ty::Enum, "").options(Options::Fixed(JOB_STATES)).query(),
        TRANSITIONING,
        TRANSITIONING_MESSAGE,
        TRANSITIONING_PROGRESS,
        field("sizeBytes", Ty::Int, "").nullable().query(),
        CREATED,
        CREATED_TS,
        NO_REMOVE_TIME,
    ],
    resource_methods: &["GET", "DELETE"],
    collection_methods: GET,
    resource_actions: &[
        action("backup", Some("snapshotBackupInput"), "backup"),
        action("remove", None, "snapshot"),
    ],
    default_sort: "id",
};

pub static BACKUP: Schema = Schema {
    id: "backup",
    collection: Some("backups"),
    description: "a volume's content in a restic repository; give `volumeId` (backs up a new \
                  snapshot) or `snapshotId`",
    fields: &[
        ID,
        TYPE,
        KIND,
        UUID,
        field("name", Ty::String, "").query(),
        field("volumeId", Ty::Reference("volume"), "").create().nullable().query(),
        field("volumeName", Ty::String, "").query(),
        field("sourceVolumeId", Ty::String, "the volume's id on the host that made it").query(),
        field("sourceHost", Ty::String, "").query(),
        field("snapshotId", Ty::Reference("snapshot"), "").create().nullable().query(),
        field("backupTargetId", Ty::Reference("backupTarget"), "the default target when left out")
            .create()
            .nullable()
            .query(),
        field("resticId", Ty::String, "").nullable().query(),
        field("uri", Ty::String, "").nullable().query(),
        field("backend", Ty::String, "the pool backend it was taken from").query(),
        field("volumeSizeBytes", Ty::Int, "").nullable().query(),
        field("driverOpts", Ty::Map, "the volume's driverOpts"),
        field("sizeBytes", Ty::Int, "").nullable().query(),
        field("storedBytes", Ty::Int, "").nullable().query(),
        field("state", Ty::Enum, "").options(Options::Fixed(JOB_STATES)).query(),
        TRANSITIONING,
        TRANSITIONING_MESSAGE,
        TRANSITIONING_PROGRESS,
        CREATED,
        CREATED_TS,
        NO_REMOVE_TIME,
    ],
    resource_methods: &["GET", "DELETE"],
    collection_methods: &["GET", "POST"],
    resource_actions: &[
        action("verify", None, "backup"),
        action("restore", Some("backupRestoreInput"), "volume"),
        action("remove", None, "backup"),
    ],
    default_sort: "id",
};

pub static STORAGE_POOL: Schema = Schema {
    id: "storagePool",
    collection: Some("storagepools"),
    description: "a named place volumes live in (a directory, btrfs, loop images)",
    fields: &[
        ID,
        TYPE,
        field("name", Ty::String, "").query(),
        field("backend", Ty::Enum, "").options(Options::Fixed(&["dir", "btrfs", "loop"])).query(),
        field("path", Ty::String, "").nullable().query(),
        field("scope", Ty::Enum, "").options(Options::Fixed(&["local", "global"])).query(),
        field("default", Ty::Boolean, "").query(),
        field("state", Ty::Enum, "").options(Options::Fixed(&["active", "unavailable"])).query(),
        field("capacityBytes", Ty::Int, "").query(),
        field("usedBytes", Ty::Int, "").query(),
        field("freeBytes", Ty::Int, "").query(),
        field(
            "reservedBytes",
            Ty::Int,
            "loop pools: the sum of their volumes' image sizes, which capacityBytes × overcommit \
             bounds (null for other backends)",
        )
        .nullable()
        .query(),
        field(
            "allowedBytes",
            Ty::Int,
            "loop pools: capacityBytes × overcommit, the most their images may sum to (null for \
             other backends)",
        )
        .nullable()
        .query(),
        field(
            "copiesShareData",
            Ty::Boolean,
            "snapshots and clones share data with their source (btrfs, or reflinks on xfs) \
             instead of copying it",
        )
        .query(),
        field("volumeCount", Ty::Int, "").query(),
    ],
    resource_methods: GET,
    collection_methods: GET,
    resource_actions: NO_ACTIONS,
    default_sort: "name",
};

pub static CLUSTER_NODE: Schema = Schema {
    id: "clusterNode",
    collection: Some("clusternodes"),
    description: "a host of the cluster this one joined ([cluster]), while its lease in etcd lives",
    fields: &[
        ID,
        TYPE,
        field("name", Ty::String, "the host's `node` name").query(),
        field("self", Ty::Boolean, "this host").query(),
        field("heartbeat", Ty::Date, "when it last renewed its lease and said so").query(),
        field("started", Ty::Date, "when its daemon started").query(),
        field("holdCount", Ty::Int, "how many volumes it mounts").query(),
        field("holds", Ty::Array, "the names of the volumes it mounts"),
    ],
    resource_methods: &[],
    collection_methods: GET,
    resource_actions: NO_ACTIONS,
    default_sort: "name",
};

pub static BACKUP_TARGET: Schema = Schema {
    id: "backupTarget",
    collection: Some("backuptargets"),
    description: "a restic repository backups go to (configured, not created here)",
    fields: &[
        ID,
        TYPE,
        field("name", Ty::String, "").query(),
        field("url", Ty::String, "").query(),
        field("endpoint", Ty::String, "").nullable().query(),
        field("region", Ty::String, "").nullable().query(),
        field("keepLast", Ty::Int, "").nullable().query(),
        field("keepDaily", Ty::Int, "").nullable().query(),
        field("keepWeekly", Ty::Int, "").nullable().query(),
        field("imported", Ty::Int, "backups the answered sync imported; null elsewhere").nullable(),
    ],
    resource_methods: GET,
    collection_methods: GET,
    resource_actions: &[action("sync", None, "backupTarget")],
    default_sort: "name",
};

/// The types the seed's volume references without this API serving
/// them: described, so that a typed client finds every referenced type's
/// schema, with no collection, since there is nothing to list.
pub static IMAGE: Schema = Schema {
    id: "image",
    collection: None,
    description: "a machine image; volumes here are never made from one, so `imageId` is \
                  always null and there is no collection",
    fields: &[ID, TYPE],
    resource_methods: &[],
    collection_methods: &[],
    resource_actions: NO_ACTIONS,
    default_sort: "id",
};

pub static INSTANCE: Schema = Schema {
    id: "instance",
    collection: None,
    description: "a container using a volume, known by its mount ID (a volume's `instanceId` \
                  and `mountIds`); Docker keeps the containers, so there is no collection",
    fields: &[ID, TYPE],
    resource_methods: &[],
    collection_methods: &[],
    resource_actions: NO_ACTIONS,
    default_sort: "id",
};

pub static ERROR: Schema = Schema {
    id: "error",
    collection: None,
    description: "the body of every failed request",
    fields: &[
        TYPE,
        field("status", Ty::Int, "the HTTP status"),
        field("code", Ty::String, "what kind of mistake, for clients to switch on"),
        field("message", Ty::String, ""),
        field("detail", Ty::String, "what to do about it"),
        field("fieldName", Ty::String, "the request field to blame").nullable(),
    ],
    resource_methods: &[],
    collection_methods: &[],
    resource_actions: NO_ACTIONS,
    default_sort: "id",
};

const fn input(id: &'static str, description: &'static str, fields: &'static [Field]) -> Schema {
    Schema {
        id,
        collection: None,
        description,
        fields,
        resource_methods: &[],
        collection_methods: &[],
        resource_actions: NO_ACTIONS,
        default_sort: "id",
    }
}

pub static VOLUME_SCHEDULE: Schema = input(
    "volumeSchedule",
    "a volume's scheduled snapshots and backups; a setting left out or null is unset",
    &[
        field("snapshotEvery", Ty::String, "an interval, e.g. 1h").create().update().nullable(),
        field("snapshotKeep", Ty::Int, "").create().update().nullable().range(1, KEEP_MAX),
        field("backupEvery", Ty::String, "an interval, e.g. 1d").create().update().nullable(),
        field("backupKeep", Ty::Int, "").create().update().nullable().range(1, KEEP_MAX),
        field("backupTarget", Ty::Reference("backupTarget"), "").create().update().nullable(),
        field("lastSnapshot", Ty::Date, "").nullable(),
        field("lastBackup", Ty::Date, "").nullable(),
    ],
);

pub static VOLUME_SNAPSHOT_INPUT: Schema = input(
    "volumeSnapshotInput",
    "",
    &[field("name", Ty::String, "a name for the snapshot; one is made up when left out")
        .create()
        .nullable()
        .chars(NAME_CHARS)
        .length(1, limit(MAX_NAME_LEN))
        .rule(name_rule)],
);

pub static REVERT_TO_SNAPSHOT_INPUT: Schema = input(
    "revertToSnapshotInput",
    "",
    &[field("snapshotId", Ty::Reference("snapshot"), "").create().required()],
);

pub static RESTORE_FROM_BACKUP_INPUT: Schema = input(
    "restoreFromBackupInput",
    "",
    &[field("backupId", Ty::Reference("backup"), "").create().required()],
);

pub static VOLUME_DEALLOCATE_INPUT: Schema = input(
    "volumeDeallocateInput",
    "",
    &[field("force", Ty::Boolean, "deallocate even without a backup of the latest data")
        .create()
        .default(Default::Bool(false))],
);

pub static VOLUME_RESTORE_INPUT: Schema = input(
    "volumeRestoreInput",
    "",
    &[field("name", Ty::String, "a new name, when the old one is taken")
        .create()
        .nullable()
        .chars(NAME_CHARS)
        .length(1, limit(MAX_NAME_LEN))
        .rule(name_rule)],
);

pub static SNAPSHOT_BACKUP_INPUT: Schema = input(
    "snapshotBackupInput",
    "",
    &[field("backupTargetId", Ty::Reference("backupTarget"), "the default target when left out")
        .create()
        .nullable()],
);

pub static BACKUP_RESTORE_INPUT: Schema = input(
    "backupRestoreInput",
    "",
    &[
        field("name", Ty::String, "the new volume's name; the backed-up volume's when left out")
            .create()
            .nullable()
            .chars(NAME_CHARS)
            .length(1, limit(MAX_NAME_LEN))
            .rule(name_rule),
        field("storagePoolId", Ty::Reference("storagePool"), "the default pool when left out")
            .create()
            .nullable(),
    ],
);
