//! The registry as every host sees it: one full read, then one watch over
//! `/ballast/v1/` from the revision after it, resumed where it left off
//! after a broken connection, and a full read again when etcd compacted
//! the revisions it missed. Holders are kept in memory here; records go
//! to the core as [`Change`]s.
//!
//! Values are anyone's with access to etcd: a record is used only when
//! its name is the key's, a valid volume name, and its key, pool and home
//! are well formed; one that is not is reported as unreadable, never as
//! absent (absence could make a host close a volume).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use etcd_client::{EventType, GetOptions, WatchOptions};
use tokio::sync::mpsc;

use super::{Etcd, Key, PREFIX, parse_key, unreachable};
use crate::cluster::{Change, Error, Holder, Record, Result};

/// Largest answer taken from etcd at once (the full read is paged).
const PAGE: i64 = 1000;

impl Etcd {
    pub(super) async fn watch_registry(self: Arc<Self>, changes: mpsc::Sender<Change>) {
        let mut next: Option<i64> = None;
        loop {
            let result = self.watch_once(&changes, &mut next).await;
            if changes.is_closed() {
                return;
            }
            if let Err(e) = result {
                tracing::warn!(error = %e, "cluster: registry watch interrupted; resuming");
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        }
    }

    /// Everything under the prefix at one revision, page by page.
    async fn read_all(&self) -> Result<(i64, Vec<etcd_client::KeyValue>)> {
        let mut client = self.connect().await?;
        let mut from = PREFIX.as_bytes().to_vec();
        let end = prefix_end(PREFIX.as_bytes());
        let mut revision = 0;
        let mut all = Vec::new();
        loop {
            let mut options = GetOptions::new().with_range(end.clone()).with_limit(PAGE);
            if revision > 0 {
                options = options.with_revision(revision);
            }
            let mut page = client.get(from.clone(), Some(options)).await.map_err(unreachable)?;
            if revision == 0 {
                revision = page.header().map_or(0, |h| h.revision());
            }
            let more = page.more();
            let kvs = page.take_kvs();
            let Some(last) = kvs.last() else { break };
            from = last.key().to_vec();
            from.push(0);
            all.extend(kvs);
            if !more {
                break;
            }
        }
        Ok((revision, all))
    }

    async fn watch_once(
        &self,
        changes: &mpsc::Sender<Change>,
        next: &mut Option<i64>,
    ) -> Result<()> {
        let start = match *next {
            Some(rev) => rev,
            None => {
                let (rev, all) = self.read_all().await?;
                let mut records = Vec::new();
                let mut unreadable = Vec::new();
                let mut moves = Vec::new();
                let mut holders: HashMap<String, Vec<Holder>> = HashMap::new();
                for kv in &all {
                    match parse_key(kv.key()) {
                        Some(Key::Volume(name)) => match readable(&name, kv.value()) {
                            Some(r) => records.push(r),
                            None => unreadable.push(name),
                        },
                        Some(Key::Holder(name, node)) => {
                            if let Some(h) = holder(&node, kv.value()) {
                                holders.entry(name).or_default().push(h);
                            }
                        }
                        Some(Key::Move(name)) => moves.extend(asker(&name, kv.value())),
                        _ => {}
                    }
                }
                let known: Vec<String> = {
                    let mut mine = self.holders.lock().unwrap_or_else(|p| p.into_inner());
                    let old = mine.keys().cloned().collect();
                    *mine = holders.clone();
                    old
                };
                send(changes, Change::All { records, unreadable, moves }).await?;
                for name in known.into_iter().filter(|n| !holders.contains_key(n)) {
                    let gone = Change::Holders { name, holders: Vec::new(), revision: rev };
                    send(changes, gone).await?;
                }
                for (name, holders) in holders {
                    send(changes, Change::Holders { name, holders, revision: rev }).await?;
                }
                rev + 1
            }
        };
        let mut client = self.connect().await?;
        let options = WatchOptions::new().with_prefix().with_start_revision(start).with_prev_key();
        let mut stream = client.watch(PREFIX, Some(options)).await.map_err(unreachable)?;
        while let Some(resp) = stream.message().await.map_err(unreachable)? {
            if resp.canceled() {
                if resp.compact_revision() > 0 {
                    // The revisions missed are gone: read everything anew.
                    *next = None;
                }
                let why = format!("watch cancelled: {}", resp.cancel_reason());
                return Err(Error::Unreachable(why));
            }
            for event in resp.events() {
                let Some(kv) = event.kv() else { continue };
                let revision = kv.mod_revision();
                *next = Some(revision + 1);
                let put = event.event_type() == EventType::Put;
                match parse_key(kv.key()) {
                    Some(Key::Volume(name)) if put => {
                        if let Some(r) = readable(&name, kv.value()) {
                            send(changes, Change::Put(r)).await?;
                        } else {
                            tracing::warn!(volume = %name, "cluster: an unreadable record in etcd; ignored");
                        }
                    }
                    Some(Key::Volume(name)) => {
                        let prev = event.prev_kv().and_then(|p| readable(&name, p.value()));
                        let key = prev.map(|r| r.key).unwrap_or_default();
                        send(changes, Change::Deleted { name, key }).await?;
                    }
                    Some(Key::Move(name)) if put => {
                        if let Some((name, to)) = asker(&name, kv.value()) {
                            send(changes, Change::Move { name, to }).await?;
                        }
                    }
                    Some(Key::Holder(name, node)) => {
                        let holders = {
                            let mut all = self.holders.lock().unwrap_or_else(|p| p.into_inner());
                            let list = all.entry(name.clone()).or_default();
                            list.retain(|h| h.node != node);
                            if put && let Some(h) = holder(&node, kv.value()) {
                                list.push(h);
                            }
                            list.sort_by(|a, b| a.node.cmp(&b.node));
                            let list = list.clone();
                            if list.is_empty() {
                                all.remove(&name);
                            }
                            list
                        };
                        send(changes, Change::Holders { name, holders, revision }).await?;
                    }
                    _ => {}
                }
            }
            if let Some(h) = resp.header() {
                *next = Some(next.unwrap_or(0).max(h.revision() + 1));
            }
        }
        Err(Error::Unreachable("watch stream ended".into()))
    }
}

/// The record stored under `volumes/NAME`, if it is well formed and
/// NAME's.
fn readable(name: &str, value: &[u8]) -> Option<Record> {
    let r: Record = serde_json::from_slice(value).ok()?;
    let valid = |n: &str| crate::volume::validate_name(n).is_ok();
    let key_ok = r.key.len() == 16 && r.key.bytes().all(|b| b.is_ascii_hexdigit());
    let archive_ok = r.archive.as_ref().is_none_or(|a| {
        valid(&a.target)
            && a.snapshot.len() == 64
            && a.snapshot.bytes().all(|b| b.is_ascii_hexdigit())
    });
    let fields_ok = valid(&r.pool) && valid(&r.home) && archive_ok;
    (r.name == name && valid(name) && key_ok && fields_ok).then_some(r)
}

/// The volume and the host that asks for it, from `moves/NAME`, when
/// both are well-formed names.
fn asker(name: &str, value: &[u8]) -> Option<(String, String)> {
    let to = std::str::from_utf8(value).ok()?;
    let valid = |n: &str| crate::volume::validate_name(n).is_ok();
    (valid(name) && valid(to)).then(|| (name.to_string(), to.to_string()))
}

/// The holder stored under `holders/NAME/NODE`, if it is NODE's.
fn holder(node: &str, value: &[u8]) -> Option<Holder> {
    serde_json::from_slice::<Holder>(value).ok().filter(|h| h.node == node)
}

/// The first key after every key that starts with `prefix`.
fn prefix_end(prefix: &[u8]) -> Vec<u8> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return end;
        }
    }
    vec![0]
}

async fn send(changes: &mpsc::Sender<Change>, change: Change) -> Result<()> {
    changes.send(change).await.map_err(|_| Error::Unreachable("the daemon is stopping".into()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(name: &str, key: &str) -> Vec<u8> {
        serde_json::to_vec(&serde_json::json!({
            "name": name, "key": key, "pool": "shared", "opts": {}, "description": "",
            "size_bytes": null, "home": "node-a", "created_ms": 0
        }))
        .unwrap()
    }

    #[test]
    fn only_well_formed_records_of_their_own_key_are_read() {
        assert!(readable("db", &record("db", "0123456789abcdef")).is_some());
        assert!(readable("db", &record("other", "0123456789abcdef")).is_none(), "name ≠ key");
        assert!(readable("db", &record("db", "../../etc")).is_none(), "a path as key");
        assert!(readable("-x", &record("-x", "0123456789abcdef")).is_none(), "bad name");
        assert!(readable("db", b"{not json").is_none());
    }

    #[test]
    fn the_prefix_end_is_the_first_key_after_the_prefix() {
        assert_eq!(prefix_end(b"/ballast/v1/"), b"/ballast/v10".to_vec());
        assert_eq!(prefix_end(b"a\xff"), b"b".to_vec());
    }
}
