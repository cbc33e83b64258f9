//! The metadata store: SQLite in WAL mode with `synchronous = FULL`, so a
//! change is on disk before it is acknowledged, and every change is one
//! transaction, so a crash leaves either the old record or the new one.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Mutex;

mod backups;

use rusqlite::{Connection, OptionalExtension, Row, params};

use crate::snapshot::{SnapState, Snapshot};
use crate::volume::{State, Transitioning, Volume};
use crate::{Error, Result};

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS volumes (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    name TEXT NOT NULL,
    description TEXT NOT NULL DEFAULT '',
    driver_opts TEXT NOT NULL DEFAULT '{}',
    pool TEXT NOT NULL,
    state TEXT NOT NULL,
    transitioning TEXT NOT NULL DEFAULT 'no',
    transitioning_message TEXT NOT NULL DEFAULT '',
    created_ms INTEGER NOT NULL,
    removed_ms INTEGER,
    size_bytes INTEGER,
    used_bytes INTEGER NOT NULL DEFAULT 0,
    host_path TEXT,
    fill_from TEXT,
    written_ms INTEGER NOT NULL DEFAULT 0,
    schedule TEXT NOT NULL DEFAULT '{}',
    archived_in INTEGER,
    cluster_key TEXT,
    cluster_home TEXT
);
-- A name belongs to at most one volume that Docker can see.
CREATE UNIQUE INDEX IF NOT EXISTS volumes_live_name
    ON volumes(name) WHERE state NOT IN ('removed', 'purged');
CREATE TABLE IF NOT EXISTS snapshots (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    name TEXT NOT NULL,
    volume_id INTEGER NOT NULL REFERENCES volumes(id),
    state TEXT NOT NULL,
    message TEXT NOT NULL DEFAULT '',
    created_ms INTEGER NOT NULL,
    size_bytes INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS mounts (
    volume_id INTEGER NOT NULL REFERENCES volumes(id),
    mount_id TEXT NOT NULL,
    count INTEGER NOT NULL CHECK (count > 0),
    PRIMARY KEY (volume_id, mount_id)
);
";

/// The columns [`read_volume`] expects, in order.
const SELECT: &str = "SELECT id, name, description, driver_opts, pool, state, transitioning,
    transitioning_message, created_ms, removed_ms, size_bytes, used_bytes, host_path, fill_from,
    written_ms, schedule, archived_in, cluster_key, cluster_home FROM volumes";

/// Handle to the metadata database.
///
/// The connection sits behind a `std::sync::Mutex`: SQLite allows one
/// writer at a time anyway, every call is a short transaction, and callers
/// run it on a blocking thread, never while holding an async lock across
/// an await on the runtime's workers.
pub struct Store {
    conn: Mutex<Connection>,
}

impl Store {
    pub fn open(path: &Path) -> Result<Self> {
        let conn = Connection::open(path).map_err(|e| {
            Error::internal(format!("opening metadata store {}", path.display()), e)
        })?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "FULL")?;
        conn.pragma_update(None, "foreign_keys", "ON")?;
        conn.busy_timeout(std::time::Duration::from_secs(5))?;
        conn.execute_batch(SCHEMA)?;
        conn.execute_batch(backups::SCHEMA)?;
        migrate(&conn)?;
        Ok(Store { conn: Mutex::new(conn) })
    }

    fn conn(&self) -> std::sync::MutexGuard<'_, Connection> {
        // A panic while holding the lock cannot leave SQLite half-written
        // (the transaction rolls back), so a poisoned lock is still usable.
        self.conn.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Inserts a new volume (in state `creating`) and returns its id
    /// (never reused: AUTOINCREMENT).
    ///
    /// This one commit does not wait for the disk: the row only marks work
    /// to roll back after a crash, and the `save` that acknowledges the
    /// volume syncs the log, this row included (WAL commits are ordered).
    /// A process crash keeps the row either way; a power loss may drop it
    /// along with the unacknowledged create.
    pub fn insert(&self, v: &Volume) -> Result<i64> {
        let mut conn = self.conn();
        conn.pragma_update(None, "synchronous", "NORMAL")?;
        let res = insert_row(&mut conn, v);
        back_to_full(&conn);
        res
    }

    /// Writes every field and the mount multiset of an existing volume.
    pub fn save(&self, v: &Volume) -> Result<()> {
        save_row(&mut self.conn(), v)
    }

    /// [`Store::save`] without waiting for the disk: for mount counts,
    /// which must survive a crash of the daemon (the commit is in the
    /// log, in the kernel's cache) but not a power loss (after which no
    /// container holds a mount). A later synced commit makes it durable
    /// too: WAL commits are ordered.
    pub fn save_relaxed(&self, v: &Volume) -> Result<()> {
        let mut conn = self.conn();
        conn.pragma_update(None, "synchronous", "NORMAL")?;
        let res = save_row(&mut conn, v);
        back_to_full(&conn);
        res
    }

    /// Sets a volume's measured usage alone (a measurement made outside
    /// the volume's lock must not write back the rest of an older row).
    pub fn set_used_bytes(&self, id: i64, used: u64) -> Result<()> {
        let conn = self.conn();
        conn.pragma_update(None, "synchronous", "NORMAL")?;
        let res = conn
            .execute("UPDATE volumes SET used_bytes = ?1 WHERE id = ?2", (used.cast_signed(), id))
            .map(|_| ());
        back_to_full(&conn);
        res.map_err(Into::into)
    }

    /// Deletes a row that was never acknowledged (a rolled-back create).
    pub fn delete(&self, id: i64) -> Result<()> {
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        tx.execute("DELETE FROM mounts WHERE volume_id = ?1", [id])?;
        tx.execute("DELETE FROM volumes WHERE id = ?1", [id])?;
        tx.commit()?;
        Ok(())
    }

    /// Every volume not yet purged, with its mounts.
    pub fn load(&self) -> Result<Vec<Volume>> {
        let conn = self.conn();
        let mut mounts: BTreeMap<i64, BTreeMap<String, u32>> = BTreeMap::new();
        let mut stmt = conn.prepare("SELECT volume_id, mount_id, count FROM mounts")?;
        let rows = stmt.query_map([], |r| {
            Ok((r.get::<_, i64>(0)?, r.get::<_, String>(1)?, r.get::<_, u32>(2)?))
        })?;
        for row in rows {
            let (id, mount, count) = row?;
            mounts.entry(id).or_default().insert(mount, count);
        }
        let mut stmt = conn.prepare(&format!("{SELECT} WHERE state != 'purged' ORDER BY id"))?;
        let rows = stmt.query_map([], read_volume)?;
        let mut out = Vec::new();
        for row in rows {
            let mut v = row??;
            v.mounts = mounts.remove(&v.id).unwrap_or_default();
            out.push(v);
        }
        Ok(out)
    }

    /// Removed volumes whose removal is older than `cutoff_ms`.
    pub fn removed_before(&self, cutoff_ms: i64) -> Result<Vec<Volume>> {
        let conn = self.conn();
        let mut stmt = conn.prepare(&format!(
            "{SELECT} WHERE state = 'removed' AND removed_ms <= ?1 ORDER BY removed_ms"
        ))?;
        let rows = stmt.query_map([cutoff_ms], read_volume)?;
        rows.map(|r| r?).collect()
    }

    /// Removed volumes whose purge began and did not end (a crash).
    pub fn purges_cut_short(&self) -> Result<Vec<Volume>> {
        let conn = self.conn();
        let mut stmt = conn.prepare(&format!(
            "{SELECT} WHERE state = 'removed' AND transitioning = 'yes' ORDER BY id"
        ))?;
        let rows = stmt.query_map([], read_volume)?;
        rows.map(|r| r?).collect()
    }

    /// Volumes in one state (the trash, the tombstones), newest first.
    pub fn in_state(&self, state: State) -> Result<Vec<Volume>> {
        let conn = self.conn();
        let mut stmt = conn.prepare(&format!("{SELECT} WHERE state = ?1 ORDER BY id DESC"))?;
        let rows = stmt.query_map([state.as_str()], read_volume)?;
        rows.map(|r| r?).collect()
    }

    /// Inserts a snapshot and returns its id (never reused).
    pub fn insert_snapshot(&self, s: &Snapshot) -> Result<i64> {
        let conn = self.conn();
        conn.execute(
            "INSERT INTO snapshots (name, volume_id, state, message, created_ms, size_bytes)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            params![
                s.name,
                s.volume_id,
                s.state.as_str(),
                s.message,
                s.created_ms,
                s.size_bytes.cast_signed()
            ],
        )?;
        Ok(conn.last_insert_rowid())
    }

    pub fn save_snapshot(&self, s: &Snapshot) -> Result<()> {
        self.conn().execute(
            "UPDATE snapshots SET name = ?2, state = ?3, message = ?4, size_bytes = ?5 WHERE id = ?1",
            params![s.id, s.name, s.state.as_str(), s.message, s.size_bytes.cast_signed()],
        )?;
        Ok(())
    }

    /// Every snapshot not removed.
    pub fn load_snapshots(&self) -> Result<Vec<Snapshot>> {
        let conn = self.conn();
        let mut stmt = conn.prepare(
            "SELECT id, name, volume_id, state, message, created_ms, size_bytes
             FROM snapshots WHERE state != 'removed' ORDER BY id",
        )?;
        let rows = stmt.query_map([], |r| {
            let state: String = r.get(3)?;
            let size: i64 = r.get(6)?;
            Ok((
                state,
                Snapshot {
                    id: r.get(0)?,
                    name: r.get(1)?,
                    volume_id: r.get(2)?,
                    state: SnapState::Created,
                    message: r.get(4)?,
                    created_ms: r.get(5)?,
                    size_bytes: size.cast_unsigned(),
                },
            ))
        })?;
        rows.map(|r| {
            let (state, s) = r?;
            Ok(Snapshot { state: SnapState::parse(&state)?, ..s })
        })
        .collect()
    }

    /// One volume by row id, whatever its state.
    pub fn get(&self, id: i64) -> Result<Option<Volume>> {
        let conn = self.conn();
        let v = conn
            .query_row(&format!("{SELECT} WHERE id = ?1"), [id], read_volume)
            .optional()?
            .transpose()?;
        Ok(v)
    }
}

/// Restores durable commits after a relaxed one. The relaxed commit has
/// happened either way, so a failure here is logged, not returned: the
/// caller must not undo what is recorded.
fn back_to_full(conn: &Connection) {
    if let Err(e) = conn.pragma_update(None, "synchronous", "FULL") {
        tracing::error!(error = %e, "metadata store: cannot restore synchronous=FULL");
    }
}

fn save_row(conn: &mut Connection, v: &Volume) -> Result<()> {
    let tx = conn.transaction()?;
    let n = tx.execute(
        "UPDATE volumes SET name = ?2, description = ?3, driver_opts = ?4, pool = ?5, state = ?6,
            transitioning = ?7, transitioning_message = ?8, removed_ms = ?10, size_bytes = ?11,
            used_bytes = ?12, host_path = ?13, fill_from = ?14, written_ms = ?15,
            schedule = ?16, archived_in = ?17, cluster_key = ?18, cluster_home = ?19
         WHERE id = ?1",
        rusqlite::params_from_iter(row_params(v)),
    )?;
    if n != 1 {
        return Err(Error::Internal(format!(
            "volume {} vanished from the metadata store",
            v.public_id()
        )));
    }
    tx.execute("DELETE FROM mounts WHERE volume_id = ?1", [v.id])?;
    write_mounts(&tx, v.id, &v.mounts)?;
    tx.commit()?;
    Ok(())
}

fn insert_row(conn: &mut Connection, v: &Volume) -> Result<i64> {
    let tx = conn.transaction()?;
    let res = tx.execute(
        "INSERT INTO volumes (name, description, driver_opts, pool, state, transitioning,
            transitioning_message, created_ms, removed_ms, size_bytes, used_bytes, host_path,
            fill_from, written_ms, schedule, archived_in, cluster_key, cluster_home)
         VALUES (?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18, ?19)",
        rusqlite::params_from_iter(row_params(v)),
    );
    match res {
        Err(rusqlite::Error::SqliteFailure(e, _))
            if e.code == rusqlite::ErrorCode::ConstraintViolation =>
        {
            return Err(Error::Conflict(format!("volume name {:?} is already taken", v.name)));
        }
        other => other?,
    };
    let id = tx.last_insert_rowid();
    write_mounts(&tx, id, &v.mounts)?;
    tx.commit()?;
    Ok(id)
}

fn write_mounts(
    tx: &rusqlite::Transaction<'_>,
    id: i64,
    mounts: &BTreeMap<String, u32>,
) -> Result<()> {
    let mut stmt =
        tx.prepare_cached("INSERT INTO mounts (volume_id, mount_id, count) VALUES (?1, ?2, ?3)")?;
    for (mount, count) in mounts {
        stmt.execute(params![id, mount, count])?;
    }
    Ok(())
}

/// Brings a store written by an older version up to date. Each step is
/// idempotent, so a crash half-way is harmless.
fn migrate(conn: &Connection) -> Result<()> {
    if conn.prepare("SELECT host_path FROM volumes LIMIT 0").is_err() {
        conn.execute_batch("ALTER TABLE volumes ADD COLUMN host_path TEXT")?;
    }
    if conn.prepare("SELECT fill_from FROM volumes LIMIT 0").is_err() {
        conn.execute_batch("ALTER TABLE volumes ADD COLUMN fill_from TEXT")?;
    }
    if conn.prepare("SELECT archived_in FROM volumes LIMIT 0").is_err() {
        conn.execute_batch("ALTER TABLE volumes ADD COLUMN archived_in INTEGER")?;
    }
    if conn.prepare("SELECT schedule FROM volumes LIMIT 0").is_err() {
        conn.execute_batch("ALTER TABLE volumes ADD COLUMN schedule TEXT NOT NULL DEFAULT '{}'")?;
    }
    if conn.prepare("SELECT written_ms FROM volumes LIMIT 0").is_err() {
        conn.execute_batch("ALTER TABLE volumes ADD COLUMN written_ms INTEGER NOT NULL DEFAULT 0")?;
    }
    if conn.prepare("SELECT cluster_key FROM volumes LIMIT 0").is_err() {
        conn.execute_batch(
            "ALTER TABLE volumes ADD COLUMN cluster_key TEXT;
             ALTER TABLE volumes ADD COLUMN cluster_home TEXT;",
        )?;
    }
    Ok(())
}

/// Every column of a volume row, as `?1`…`?19` in column order.
fn row_params(v: &Volume) -> Vec<Box<dyn rusqlite::ToSql + '_>> {
    vec![
        Box::new(v.id),
        Box::new(&v.name),
        Box::new(&v.description),
        Box::new(opts_json(&v.driver_opts)),
        Box::new(&v.pool),
        Box::new(v.state.as_str()),
        Box::new(v.transitioning.as_str()),
        Box::new(&v.transitioning_message),
        Box::new(v.created_ms),
        Box::new(v.removed_ms),
        // SQLite integers are i64: sizes are stored as their bits (read back
        // with `cast_unsigned`), so every u64 round-trips.
        Box::new(v.size_bytes.map(u64::cast_signed)),
        Box::new(v.used_bytes.cast_signed()),
        Box::new(v.host_path.as_ref().map(|p| p.to_string_lossy().into_owned())),
        Box::new(&v.fill_from),
        Box::new(v.written_ms),
        Box::new(serde_json::to_string(&v.schedule).unwrap_or_else(|_| "{}".into())),
        Box::new(v.archived_in),
        Box::new(v.cluster.as_ref().map(|m| m.key.clone())),
        Box::new(v.cluster.as_ref().map(|m| m.home.clone())),
    ]
}

fn opts_json(opts: &BTreeMap<String, String>) -> String {
    serde_json::to_string(opts).unwrap_or_else(|_| "{}".to_string())
}

/// Reads a row; the inner `Result` carries our own decoding errors so that
/// a corrupt field names itself instead of failing as a SQLite error.
fn read_volume(r: &Row<'_>) -> rusqlite::Result<Result<Volume>> {
    let opts: String = r.get(3)?;
    let state: String = r.get(5)?;
    let transitioning: String = r.get(6)?;
    let size: Option<i64> = r.get(10)?;
    let used: i64 = r.get(11)?;
    let host_path: Option<String> = r.get(12)?;
    let fill_from: Option<String> = r.get(13)?;
    let written_ms: i64 = r.get(14)?;
    let schedule: String = r.get(15)?;
    let archived_in: Option<i64> = r.get(16)?;
    let cluster_key: Option<String> = r.get(17)?;
    let cluster_home: Option<String> = r.get(18)?;
    let base = Volume {
        id: r.get(0)?,
        name: r.get(1)?,
        description: r.get(2)?,
        driver_opts: BTreeMap::new(),
        pool: r.get(4)?,
        state: State::Inactive,
        transitioning: Transitioning::parse(&transitioning),
        transitioning_message: r.get(7)?,
        created_ms: r.get(8)?,
        removed_ms: r.get(9)?,
        size_bytes: size.map(i64::cast_unsigned),
        used_bytes: used.cast_unsigned(),
        mounts: BTreeMap::new(),
        host_path: host_path.map(std::path::PathBuf::from),
        fill_from,
        written_ms,
        schedule: Default::default(),
        archived_in,
        cluster: cluster_key
            .map(|key| crate::volume::Membership { key, home: cluster_home.unwrap_or_default() }),
    };
    Ok((|| {
        let driver_opts = serde_json::from_str(&opts).map_err(|e| {
            Error::internal(format!("driverOpts of volume {}", base.public_id()), e)
        })?;
        let schedule = serde_json::from_str(&schedule)
            .map_err(|e| Error::internal(format!("schedule of volume {}", base.public_id()), e))?;
        Ok(Volume { driver_opts, schedule, state: State::parse(&state)?, ..base })
    })())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vol(name: &str) -> Volume {
        Volume {
            id: 0,
            name: name.into(),
            description: "d".into(),
            driver_opts: [("mode".to_string(), "0700".to_string())].into(),
            pool: "default".into(),
            state: State::Inactive,
            transitioning: Transitioning::No,
            transitioning_message: String::new(),
            created_ms: 1_700_000_000_000,
            removed_ms: None,
            size_bytes: Some(1 << 30),
            used_bytes: 0,
            mounts: BTreeMap::new(),
            host_path: None,
            fill_from: None,
            written_ms: 0,
            schedule: Default::default(),
            archived_in: None,
            cluster: None,
        }
    }

    #[test]
    fn round_trips_volumes_and_mount_counts_across_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("m.db");
        let id = {
            let store = Store::open(&path).unwrap();
            let mut v = vol("db");
            v.id = store.insert(&v).unwrap();
            v.mounts.insert("abc".into(), 2);
            v.state = State::Active;
            store.save(&v).unwrap();
            v.id
        };
        let store = Store::open(&path).unwrap();
        let all = store.load().unwrap();
        assert_eq!(all.len(), 1);
        assert_eq!(all[0].id, id);
        assert_eq!(all[0].state, State::Active);
        assert_eq!(all[0].mounts.get("abc"), Some(&2));
        assert_eq!(all[0].driver_opts.get("mode").map(String::as_str), Some("0700"));
    }

    #[test]
    fn live_names_are_unique_but_removed_ones_free_the_name() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("m.db")).unwrap();
        let mut a = vol("db");
        a.id = store.insert(&a).unwrap();
        assert!(matches!(store.insert(&vol("db")), Err(Error::Conflict(_))));
        a.state = State::Removed;
        store.save(&a).unwrap();
        let b = store.insert(&vol("db")).unwrap();
        assert!(b > a.id, "ids are never reused");
    }

    #[test]
    fn deleted_ids_are_not_reused() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("m.db")).unwrap();
        let a = store.insert(&vol("a")).unwrap();
        store.delete(a).unwrap();
        assert!(store.insert(&vol("a")).unwrap() > a);
        assert!(store.get(a).unwrap().is_none());
    }
}
