//! The `backups` table: one row per backup this host knows of.

use rusqlite::{OptionalExtension, Row, params};

use super::Store;
use crate::backup_record::{Backup, BackupState, VolumeMeta};
use crate::{Error, Result};

pub(super) const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS backups (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    target TEXT NOT NULL,
    restic_id TEXT,
    name TEXT NOT NULL,
    volume_id INTEGER,
    snapshot_id INTEGER,
    meta TEXT NOT NULL,
    state TEXT NOT NULL,
    message TEXT NOT NULL DEFAULT '',
    created_ms INTEGER NOT NULL,
    size_bytes INTEGER NOT NULL DEFAULT 0,
    stored_bytes INTEGER NOT NULL DEFAULT 0
);
-- A restic snapshot is one backup, however often its target is listed.
CREATE UNIQUE INDEX IF NOT EXISTS backups_restic_id
    ON backups(target, restic_id) WHERE restic_id IS NOT NULL;
";

const SELECT: &str = "SELECT id, target, restic_id, name, volume_id, snapshot_id, meta, state,
    message, created_ms, size_bytes, stored_bytes FROM backups";

impl Store {
    pub fn insert_backup(&self, b: &Backup) -> Result<i64> {
        let conn = self.conn();
        conn.execute(
            "INSERT INTO backups (target, restic_id, name, volume_id, snapshot_id, meta, state,
                 message, created_ms, size_bytes, stored_bytes)
             VALUES (?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)",
            rusqlite::params_from_iter(row_params(b)),
        )?;
        Ok(conn.last_insert_rowid())
    }

    pub fn save_backup(&self, b: &Backup) -> Result<()> {
        self.conn().execute(
            "UPDATE backups SET target = ?2, restic_id = ?3, name = ?4, volume_id = ?5,
                 snapshot_id = ?6, meta = ?7, state = ?8, message = ?9, created_ms = ?10,
                 size_bytes = ?11, stored_bytes = ?12
             WHERE id = ?1",
            rusqlite::params_from_iter(row_params(b)),
        )?;
        Ok(())
    }

    /// Every backup not removed, oldest first.
    pub fn load_backups(&self) -> Result<Vec<Backup>> {
        let conn = self.conn();
        let mut stmt = conn.prepare(&format!("{SELECT} WHERE state != 'removed' ORDER BY id"))?;
        let rows = stmt.query_map([], read_backup)?;
        rows.map(|r| r?).collect()
    }

    /// The row of a restic snapshot in a target, whatever its state.
    pub fn backup_by_restic_id(&self, target: &str, restic_id: &str) -> Result<Option<Backup>> {
        let conn = self.conn();
        let found = conn
            .query_row(
                &format!("{SELECT} WHERE target = ?1 AND restic_id = ?2"),
                params![target, restic_id],
                read_backup,
            )
            .optional()?;
        found.transpose()
    }
}

/// Every column of a backup row, as `?1`…`?12` in [`SELECT`]'s order.
fn row_params(b: &Backup) -> Vec<Box<dyn rusqlite::ToSql + '_>> {
    vec![
        Box::new(b.id),
        Box::new(&b.target),
        Box::new(&b.restic_id),
        Box::new(&b.name),
        Box::new(b.volume_id),
        Box::new(b.snapshot_id),
        Box::new(meta_json(&b.meta)),
        Box::new(b.state.as_str()),
        Box::new(&b.message),
        Box::new(b.created_ms),
        // SQLite integers are i64: sizes are stored as their bits and read
        // back the same way, so every u64 round-trips.
        Box::new(b.size_bytes.cast_signed()),
        Box::new(b.stored_bytes.cast_signed()),
    ]
}

fn meta_json(meta: &VolumeMeta) -> String {
    serde_json::to_string(meta).expect("plain strings and numbers serialize")
}

fn read_backup(r: &Row<'_>) -> rusqlite::Result<Result<Backup>> {
    let meta: String = r.get(6)?;
    let state: String = r.get(7)?;
    let (size, stored): (i64, i64) = (r.get(10)?, r.get(11)?);
    let id: i64 = r.get(0)?;
    let bad =
        |what: &str| Error::Internal(format!("backup row {id}: {what} in the metadata store"));
    let Ok(meta) = serde_json::from_str::<VolumeMeta>(&meta) else {
        return Ok(Err(bad("unreadable volume description")));
    };
    let Some(state) = BackupState::parse(&state) else {
        return Ok(Err(bad(&format!("unknown state {state:?}"))));
    };
    Ok(Ok(Backup {
        id,
        target: r.get(1)?,
        restic_id: r.get(2)?,
        name: r.get(3)?,
        volume_id: r.get(4)?,
        snapshot_id: r.get(5)?,
        meta,
        state,
        message: r.get(8)?,
        created_ms: r.get(9)?,
        size_bytes: size.cast_unsigned(),
        stored_bytes: stored.cast_unsigned(),
    }))
}
