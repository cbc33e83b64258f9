//! The registry's changes, each one etcd transaction whose condition
//! makes it exact. Each is safe to run again after a lost answer: a
//! record registered twice with one key is one record, a holder put twice
//! is one holder, what is gone already stays gone.

use etcd_client::{Compare, CompareOp, GetOptions, PutOptions, Txn, TxnOp, TxnOpResponse};

use super::{Etcd, Key, holders_prefix, parse_key, unreachable, volume_key};
use crate::cluster::{Error, Holder, Record, Result};
use crate::units::now_ms;

impl Etcd {
    pub(super) async fn register_once(&self, record: Record) -> Result<()> {
        let mut client = self.connect().await?;
        let key = volume_key(&record.name);
        let value = serde_json::to_vec(&record).map_err(unreachable)?;
        let txn = Txn::new()
            .when(vec![Compare::create_revision(key.as_str(), CompareOp::Equal, 0)])
            .and_then(vec![TxnOp::put(key.as_str(), value, None)])
            .or_else(vec![TxnOp::get(key.as_str(), None)]);
        let resp = client.txn(txn).await.map_err(unreachable)?;
        if resp.succeeded() {
            return Ok(());
        }
        let theirs = resp.op_responses().into_iter().find_map(|op| match op {
            TxnOpResponse::Get(got) => {
                got.kvs().first().and_then(|kv| serde_json::from_slice::<Record>(kv.value()).ok())
            }
            _ => None,
        });
        match theirs {
            Some(r) if r.key == record.key => Ok(()),
            Some(r) => Err(Error::Taken { name: record.name, home: r.home }),
            None => Err(Error::Moved { name: record.name }),
        }
    }

    pub(super) async fn unregister_once(&self, name: &str, key: &str) -> Result<()> {
        let mut client = self.connect().await?;
        let vkey = volume_key(name);
        let got = client.get(vkey.as_str(), None).await.map_err(unreachable)?;
        let Some(kv) = got.kvs().first() else { return Ok(()) };
        let record: Option<Record> = serde_json::from_slice(kv.value()).ok();
        if record.is_some_and(|r| r.key != key) {
            return Err(Error::Moved { name: name.to_string() });
        }
        let txn = Txn::new()
            .when(vec![
                Compare::mod_revision(vkey.as_str(), CompareOp::Equal, kv.mod_revision()),
                Compare::create_revision(holders_prefix(name), CompareOp::Equal, 0).with_prefix(),
            ])
            .and_then(vec![TxnOp::delete(vkey.as_str(), None)])
            .or_else(vec![TxnOp::get(holders_prefix(name), Some(GetOptions::new().with_prefix()))]);
        let resp = client.txn(txn).await.map_err(unreachable)?;
        if resp.succeeded() {
            return Ok(());
        }
        let holder = resp.op_responses().into_iter().find_map(|op| match op {
            TxnOpResponse::Get(got) => {
                got.kvs().first().and_then(|kv| serde_json::from_slice::<Holder>(kv.value()).ok())
            }
            _ => None,
        });
        match holder {
            Some(h) => Err(Error::Held { name: name.to_string(), node: h.node, mounts: h.mounts }),
            None => Err(Error::Moved { name: name.to_string() }),
        }
    }

    pub(super) async fn hold_once(&self, name: &str, mounts: u32, exclusive: bool) -> Result<()> {
        let mut client = self.connect().await?;
        let lease = self.current_lease()?;
        let me = format!("{}{}", holders_prefix(name), self.node);
        let value =
            serde_json::to_vec(&Holder { node: self.node.clone(), mounts, since_ms: now_ms() })
                .map_err(unreachable)?;
        let put = TxnOp::put(me.as_str(), value, Some(PutOptions::new().with_lease(lease)));
        let registered = Compare::create_revision(volume_key(name), CompareOp::Greater, 0);
        let mut when = vec![registered];
        if exclusive {
            // No holder at all, or only this host (a count that changed).
            when.push(
                Compare::create_revision(holders_prefix(name), CompareOp::Equal, 0).with_prefix(),
            );
        }
        let read = TxnOp::get(holders_prefix(name), Some(GetOptions::new().with_prefix()));
        let txn = Txn::new()
            .when(when)
            .and_then(vec![put.clone()])
            .or_else(vec![read, TxnOp::get(volume_key(name), None)]);
        let resp = client.txn(txn).await.map_err(unreachable)?;
        if resp.succeeded() {
            return Ok(());
        }
        let mut others = Vec::new();
        let mut mine = None;
        let mut registered = false;
        for op in resp.op_responses() {
            let TxnOpResponse::Get(got) = op else { continue };
            for kv in got.kvs() {
                match parse_key(kv.key()) {
                    Some(Key::Volume(_)) => registered = true,
                    Some(Key::Holder(_, node)) if node == self.node => {
                        mine = Some(kv.mod_revision())
                    }
                    Some(Key::Holder(..)) => {
                        others.extend(serde_json::from_slice::<Holder>(kv.value()).ok())
                    }
                    _ => {}
                }
            }
        }
        if !registered {
            return Err(Error::Unknown { name: name.to_string() });
        }
        if let Some(h) = others.into_iter().next() {
            return Err(Error::Held { name: name.to_string(), node: h.node, mounts: h.mounts });
        }
        // Only this host holds it: update its entry, if nobody came between.
        let Some(seen) = mine else { return Err(Error::Moved { name: name.to_string() }) };
        let txn = Txn::new()
            .when(vec![
                Compare::mod_revision(me.as_str(), CompareOp::Equal, seen),
                Compare::create_revision(volume_key(name), CompareOp::Greater, 0),
            ])
            .and_then(vec![put]);
        if client.txn(txn).await.map_err(unreachable)?.succeeded() {
            Ok(())
        } else {
            Err(Error::Moved { name: name.to_string() })
        }
    }

    pub(super) async fn release_once(&self, name: &str) -> Result<()> {
        let mut client = self.connect().await?;
        let me = format!("{}{}", holders_prefix(name), self.node);
        client.delete(me, None).await.map_err(unreachable)?;
        Ok(())
    }
}
