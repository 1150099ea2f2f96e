//! Records as foca custom broadcasts: one item per (network, endpoint); a newer version
//! invalidates an older one still in flight.

use std::sync::Arc;

use super::error::GossipError;
use super::identity::NodeIdentity;
use super::record::{EndpointRecord, now_micros};
use super::state::{Shared, Verdict};

/// The key foca keeps for each broadcast in flight.
#[derive(Debug)]
pub(crate) struct RecordKey {
    network_id: String,
    endpoint_id: String,
    precedence: (u64, bool, String),
}

impl foca::Invalidates for RecordKey {
    fn invalidates(&self, other: &Self) -> bool {
        self.network_id == other.network_id
            && self.endpoint_id == other.endpoint_id
            && self.precedence > other.precedence
    }
}

/// foca's [`BroadcastHandler`](foca::BroadcastHandler): decodes each record, offers it to the
/// shared table and asks foca to relay it only when it was news.
pub(crate) struct RecordHandler {
    pub(crate) shared: Arc<Shared>,
}

impl foca::BroadcastHandler<NodeIdentity> for RecordHandler {
    type Key = RecordKey;
    type Error = GossipError;

    fn receive_item(
        &mut self,
        data: &[u8],
        sender: Option<&NodeIdentity>,
    ) -> Result<Option<RecordKey>, GossipError> {
        // A bad item is dropped alone: items are length-prefixed, so the rest of the packet
        // is still readable.
        let record = match EndpointRecord::decode(data) {
            Ok(r) => r,
            Err(e) => {
                tracing::debug!(from = ?sender, error = %e, "dropped undecodable record broadcast");
                return Ok(None);
            }
        };
        let key = RecordKey {
            network_id: record.network_id.clone(),
            endpoint_id: record.endpoint_id.clone(),
            precedence: (record.version, record.deleted, record.node_id.clone()),
        };
        let shared = &self.shared;
        // A copy of a record held already (gossip delivers each several times) changes nothing:
        // no signature check.
        if sender.is_some() && shared.lock().changes_nothing(&record) {
            return Ok(None);
        }
        if sender.is_some()
            && let Err(why) = shared.check_owner(&record)
        {
            tracing::debug!(from = ?sender, record = ?key, why, "refused record broadcast");
            return Ok(None);
        }
        let mut state = shared.lock();
        let verdict = match sender {
            None => state.accept_local(record),
            Some(_) => state.accept_remote(
                &shared.local_node,
                record,
                now_micros(),
                shared.tombstone_ttl,
            ),
        };
        match verdict {
            Verdict::News => Ok(Some(key)),
            Verdict::Known => Ok(None),
            Verdict::Refused(why) => {
                tracing::debug!(from = ?sender, record = ?key, why, "refused record broadcast");
                Ok(None)
            }
        }
    }
}
