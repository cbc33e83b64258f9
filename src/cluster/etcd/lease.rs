//! This host's lease (docs/cluster.md, "Fencing"): granted, renewed every
//! fifth of its TTL, and declared lost — so that the core fences — the
//! moment 6/10 of the TTL have passed since the last renewal that etcd
//! acknowledged was *sent*. etcd cannot expire the lease before the TTL
//! has passed since it received that renewal, which was after the send:
//! 4/10 of the TTL are left for fencing before another host may hold
//! what this one held.

use std::sync::Arc;
use std::time::{Duration, Instant};

use etcd_client::{Client, PutOptions};

use super::{Etcd, PREFIX, REQUEST_TIMEOUT, encoding, unreachable};
use crate::cluster::{Error, Health, Node, Result};
use crate::units::now_ms;

impl Etcd {
    /// Grants this host's lease and keeps it alive; when it may have
    /// expired, says `Lost` and starts over with a new lease: the old
    /// one's holdings are void, and a new id tells the core so.
    pub(super) async fn keep_lease(self: Arc<Self>) {
        let ttl = self.ttl;
        let safe = ttl * 6 / 10;
        let beat = ttl / 5;
        loop {
            // Counted from before the grant: the lease's TTL runs from
            // when etcd made it, which is after this.
            let asked = Instant::now();
            let (mut client, id) = match self.set_up_lease().await {
                Ok(held) => held,
                Err(e) => {
                    tracing::warn!(error = %e, "cluster: no lease in etcd; retrying");
                    self.lose();
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    continue;
                }
            };
            let mut safe_until = asked + safe;
            self.health.send_replace(Health::Up { safe_until, lease: id });
            tracing::info!(lease = id, node = %self.node, "cluster: lease granted");
            let mut stream = None;
            let mut beats = 0u32;
            let mut next_beat = Instant::now() + beat;
            loop {
                // Awake at the next renewal or at the safe time, whichever
                // comes first: never later than the safe time.
                tokio::time::sleep_until(next_beat.min(safe_until).into()).await;
                if Instant::now() >= safe_until {
                    break;
                }
                let sent = Instant::now();
                next_beat = sent + beat;
                // Bounded by the safe time too: a call stuck in a
                // partition must not keep this host writing.
                let round = async {
                    if stream.is_none() {
                        stream = Some(client.lease_keep_alive(id).await.map_err(unreachable)?);
                    }
                    let Some((keeper, responses)) = stream.as_mut() else { return Ok(-1) };
                    keeper.keep_alive().await.map_err(unreachable)?;
                    let resp = responses.message().await.map_err(unreachable)?;
                    Ok::<_, Error>(resp.map_or(-1, |r| r.ttl()))
                };
                let limit = next_beat.min(safe_until);
                let renewed = tokio::time::timeout_at(limit.into(), round).await.unwrap_or(Ok(-1));
                match renewed {
                    Ok(left) if left > 0 => {
                        safe_until = sent + safe;
                        self.health.send_replace(Health::Up { safe_until, lease: id });
                        beats += 1;
                        if beats.is_multiple_of(5) {
                            // The heartbeat `ballast cluster status` shows.
                            let put = self.put_node(&mut client, id);
                            let _ = tokio::time::timeout(beat, put).await;
                        }
                    }
                    // Expired or revoked in etcd: every holding is gone.
                    Ok(0) => break,
                    // A new stream next round: a late answer on this one
                    // would be taken for a renewal it is not.
                    _ => stream = None,
                }
            }
            tracing::warn!(lease = id, "cluster: lease lost; fencing this host's cluster mounts");
            self.lose();
            // Best effort: let the others take over now, not at expiry.
            let _ = tokio::time::timeout(Duration::from_secs(1), client.lease_revoke(id)).await;
        }
    }

    /// No lease now. From `Connecting` (never held one) it stays so.
    pub(super) fn lose(&self) {
        self.set_lease(0);
        self.health.send_if_modified(|h| {
            let changed = matches!(h, Health::Up { .. });
            if changed {
                *h = Health::Lost;
            }
            changed
        });
    }

    async fn set_up_lease(&self) -> Result<(Client, i64)> {
        tokio::time::timeout(REQUEST_TIMEOUT, self.grant())
            .await
            .map_err(|_| Error::Unreachable("granting a lease timed out".into()))?
    }

    async fn grant(&self) -> Result<(Client, i64)> {
        let mut client = self.connect().await?;
        let secs = i64::try_from(self.ttl.as_secs()).unwrap_or(i64::MAX);
        let id = client.lease_grant(secs, None).await.map_err(unreachable)?.id();
        self.put_node(&mut client, id).await?;
        self.set_lease(id);
        Ok((client, id))
    }

    async fn put_node(&self, client: &mut Client, lease: i64) -> Result<()> {
        let node =
            Node { node: self.node.clone(), started_ms: self.started_ms, heartbeat_ms: now_ms() };
        let value = serde_json::to_vec(&node).map_err(encoding)?;
        let key = format!("{PREFIX}nodes/{}", self.node);
        client
            .put(key, value, Some(PutOptions::new().with_lease(lease)))
            .await
            .map_err(unreachable)?;
        Ok(())
    }
}
