//! The registry's changes, each one etcd transaction whose condition
//! makes it exact. Each is safe to run again after a lost answer: a
//! record registered twice with one key is one record, a holder put twice
//! is one holder, what is gone already stays gone.
//!
//! `keys/NAME` holds the cluster key of the volume registered as NAME, so
//! that a holding compares it: a host whose watch lags never holds a new
//! volume of a name while it means the old one.

use etcd_client::{Compare, CompareOp, GetOptions, PutOptions, Txn, TxnOp, TxnOpResponse};

use super::{
    Etcd, Key, encoding, holders_prefix, key_key, move_key, parse_key, unreachable, volume_key,
};
use crate::cluster::{Error, Holder, Record, Result, Ticket};
use crate::units::now_ms;

/// The first value a transaction's `or_else` reads under `key`'s range.
fn first_read(resp: &etcd_client::TxnResponse) -> Vec<etcd_client::KeyValue> {
    let mut out = Vec::new();
    for op in resp.op_responses() {
        if let TxnOpResponse::Get(got) = op {
            out.extend(got.kvs().iter().cloned());
        }
    }
    out
}

/// The holder stored at `kv`; one that cannot be read still holds (its
/// node is in its key), with no count.
fn holder_at(kv: &etcd_client::KeyValue) -> Option<Holder> {
    let Some(Key::Holder(_, node)) = parse_key(kv.key()) else { return None };
    Some(serde_json::from_slice(kv.value()).unwrap_or(Holder { node, mounts: 0, since_ms: 0 }))
}

impl Etcd {
    pub(super) async fn register_once(&self, record: Record) -> Result<()> {
        let mut client = self.connect().await?;
        let key = volume_key(&record.name);
        let value = serde_json::to_vec(&record).map_err(encoding)?;
        let txn = Txn::new()
            .when(vec![Compare::create_revision(key.as_str(), CompareOp::Equal, 0)])
            .and_then(vec![
                TxnOp::put(key.as_str(), value, None),
                TxnOp::put(key_key(&record.name), record.key.as_str(), None),
            ])
            .or_else(vec![TxnOp::get(key.as_str(), None)]);
        let resp = client.txn(txn).await.map_err(unreachable)?;
        if resp.succeeded() {
            return Ok(());
        }
        let theirs = first_read(&resp)
            .first()
            .and_then(|kv| serde_json::from_slice::<Record>(kv.value()).ok());
        match theirs {
            // An earlier try of this same call got through.
            Some(r) if r.key == record.key => Ok(()),
            Some(r) => Err(Error::Taken { name: record.name, home: r.home }),
            None => Err(Error::Taken { name: record.name, home: "an unknown host".into() }),
        }
    }

    /// `true` when this call removed the record, `false` when it was gone.
    pub(super) async fn unregister_once(&self, name: &str, key: &str) -> Result<bool> {
        let mut client = self.connect().await?;
        let txn = Txn::new()
            .when(vec![
                Compare::value(key_key(name), CompareOp::Equal, key),
                Compare::create_revision(holders_prefix(name), CompareOp::Equal, 0).with_prefix(),
            ])
            .and_then(vec![
                TxnOp::delete(volume_key(name), None),
                TxnOp::delete(key_key(name), None),
            ])
            .or_else(vec![
                TxnOp::get(key_key(name), None),
                TxnOp::get(holders_prefix(name), Some(GetOptions::new().with_prefix())),
            ]);
        let resp = client.txn(txn).await.map_err(unreachable)?;
        if resp.succeeded() {
            return Ok(true);
        }
        let read = first_read(&resp);
        let current = read.iter().find(|kv| kv.key() == key_key(name).as_bytes());
        match current {
            None => Ok(false),
            Some(kv) if kv.value() != key.as_bytes() => Err(Error::Moved { name: name.into() }),
            Some(_) => match read.iter().find_map(holder_at) {
                Some(h) => Err(Error::Held { name: name.into(), node: h.node, mounts: h.mounts }),
                None => Err(Error::Moved { name: name.into() }),
            },
        }
    }

    pub(super) async fn hold_once(
        &self,
        name: &str,
        key: &str,
        mounts: u32,
        exclusive: bool,
    ) -> Result<Ticket> {
        let mut client = self.connect().await?;
        let lease = self.current_lease()?;
        let me = format!("{}{}", holders_prefix(name), self.node);
        let value =
            serde_json::to_vec(&Holder { node: self.node.clone(), mounts, since_ms: now_ms() })
                .map_err(encoding)?;
        let put = TxnOp::put(me.as_str(), value, Some(PutOptions::new().with_lease(lease)));
        let this_volume = Compare::value(key_key(name), CompareOp::Equal, key);
        let mut when = vec![this_volume.clone()];
        if exclusive {
            // No holder at all, or only this host (a count that changed).
            when.push(
                Compare::create_revision(holders_prefix(name), CompareOp::Equal, 0).with_prefix(),
            );
        }
        let txn = Txn::new().when(when).and_then(vec![put.clone()]).or_else(vec![
            TxnOp::get(key_key(name), None),
            TxnOp::get(holders_prefix(name), Some(GetOptions::new().with_prefix())),
        ]);
        let resp = client.txn(txn).await.map_err(unreachable)?;
        let revision = |r: &etcd_client::TxnResponse| r.header().map_or(0, |h| h.revision());
        if resp.succeeded() {
            return Ok(Ticket { lease, revision: revision(&resp) });
        }
        let read = first_read(&resp);
        match read.iter().find(|kv| kv.key() == key_key(name).as_bytes()) {
            None => return Err(Error::Unknown { name: name.into() }),
            Some(kv) if kv.value() != key.as_bytes() => {
                return Err(Error::Moved { name: name.into() });
            }
            Some(_) => {}
        }
        let holders: Vec<Holder> = read.iter().filter_map(holder_at).collect();
        if let Some(h) = holders.iter().find(|h| h.node != self.node) {
            let (node, mounts) = (h.node.clone(), h.mounts);
            return Err(Error::Held { name: name.into(), node, mounts });
        }
        // Only this host holds it: update its entry, if nobody came between.
        let Some(seen) =
            read.iter().find(|kv| kv.key() == me.as_bytes()).map(|kv| kv.mod_revision())
        else {
            return Err(Error::Moved { name: name.into() });
        };
        let txn = Txn::new()
            .when(vec![Compare::mod_revision(me.as_str(), CompareOp::Equal, seen), this_volume])
            .and_then(vec![put]);
        let resp = client.txn(txn).await.map_err(unreachable)?;
        if resp.succeeded() {
            Ok(Ticket { lease, revision: revision(&resp) })
        } else {
            Err(Error::Moved { name: name.into() })
        }
    }

    pub(super) async fn release_once(&self, name: &str) -> Result<()> {
        let mut client = self.connect().await?;
        let me = format!("{}{}", holders_prefix(name), self.node);
        client.delete(me, None).await.map_err(unreachable)?;
        Ok(())
    }

    /// Put under this host's lease, for the volume with `key` only. A
    /// request already there from another host is replaced: the last to
    /// ask is where the volume goes (each waits for it to arrive).
    pub(super) async fn request_move_once(&self, name: &str, key: &str) -> Result<()> {
        let mut client = self.connect().await?;
        let lease = self.current_lease()?;
        let txn = Txn::new()
            .when(vec![Compare::value(key_key(name), CompareOp::Equal, key)])
            .and_then(vec![TxnOp::put(
                move_key(name),
                self.node.as_str(),
                Some(PutOptions::new().with_lease(lease)),
            )])
            .or_else(vec![TxnOp::get(key_key(name), None)]);
        let resp = client.txn(txn).await.map_err(unreachable)?;
        if resp.succeeded() {
            return Ok(());
        }
        match first_read(&resp).first() {
            None => Err(Error::Unknown { name: name.into() }),
            Some(_) => Err(Error::Moved { name: name.into() }),
        }
    }

    pub(super) async fn cancel_move_once(&self, name: &str) -> Result<()> {
        let mut client = self.connect().await?;
        let txn = Txn::new()
            .when(vec![Compare::value(move_key(name), CompareOp::Equal, self.node.as_str())])
            .and_then(vec![TxnOp::delete(move_key(name), None)]);
        client.txn(txn).await.map_err(unreachable)?;
        Ok(())
    }

    /// Safe to run again: a try after one whose answer was lost finds the
    /// record as this call would make it, and succeeds. Two round trips:
    /// the read makes the write exact (the record it replaces is the one
    /// that named this host its home).
    pub(super) async fn hand_over_once(&self, record: Record) -> Result<()> {
        let mut client = self.connect().await?;
        let name = record.name.clone();
        let got = client.get(volume_key(&name), None).await.map_err(unreachable)?;
        let Some(kv) = got.kvs().first() else { return Err(Error::Unknown { name }) };
        let now: Option<Record> = serde_json::from_slice(kv.value()).ok();
        match now {
            Some(r) if r.key != record.key => return Err(Error::Moved { name }),
            // An earlier try of this same call got through.
            Some(r) if r.home == record.home && r.archive == record.archive => return Ok(()),
            // Only the home hands over.
            Some(r) if r.home == self.node => {}
            _ => return Err(Error::Moved { name }),
        }
        let seen = kv.mod_revision();
        let value = serde_json::to_vec(&record).map_err(encoding)?;
        let txn = Txn::new()
            .when(vec![
                Compare::mod_revision(volume_key(&name), CompareOp::Equal, seen),
                Compare::value(key_key(&name), CompareOp::Equal, record.key.as_str()),
                Compare::value(move_key(&name), CompareOp::Equal, record.home.as_str()),
            ])
            .and_then(vec![
                TxnOp::put(volume_key(&name), value, None),
                TxnOp::delete(move_key(&name), None),
            ])
            .or_else(vec![TxnOp::get(volume_key(&name), None)]);
        let resp = client.txn(txn).await.map_err(unreachable)?;
        if resp.succeeded() {
            return Ok(());
        }
        // The record unchanged: what went is the request.
        match first_read(&resp).first() {
            Some(kv) if kv.mod_revision() == seen => {
                Err(Error::CalledOff { name, to: record.home })
            }
            _ => Err(Error::Moved { name }),
        }
    }
}
