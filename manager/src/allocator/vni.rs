//! VXLAN network identifiers.

use mini_proto::v1::Network;

use super::AllocError;

/// The VNI of the ingress network, as in Docker Swarm.
pub const INGRESS_VNI: u32 = 4096;

/// The first VNI of user networks: the first one gets 4097 as in the walkthrough.
pub const FIRST_USER_VNI: u32 = 4097;

/// The largest VNI VXLAN can carry (24 bits).
pub const MAX_VNI: u32 = (1 << 24) - 1;

/// Picks the VNI of a new network.
///
/// The ingress network gets [`INGRESS_VNI`]. Any other network gets the lowest
/// VNI at or above `max(4097, next_vni)` that no network in `existing` uses,
/// wrapping around to 4097 past [`MAX_VNI`]. The caller stores the result + 1
/// into `Cluster.next_vni`, so the VNI of a removed network is not reused at
/// once (a node may still have its VXLAN device).
pub fn pick_vni(ingress: bool, next_vni: u32, existing: &[Network]) -> Result<u32, AllocError> {
    let used = |vni: u32| existing.iter().any(|n| n.vni == vni);
    if ingress {
        if let Some(other) = existing.iter().find(|n| n.vni == INGRESS_VNI) {
            return Err(AllocError::IngressExists {
                network: other
                    .spec
                    .as_ref()
                    .map(|s| s.name.clone())
                    .unwrap_or_default(),
            });
        }
        return Ok(INGRESS_VNI);
    }
    let start = next_vni.clamp(FIRST_USER_VNI, MAX_VNI);
    (start..=MAX_VNI)
        .chain(FIRST_USER_VNI..start)
        .find(|&vni| !used(vni))
        .ok_or(AllocError::VniExhausted {
            first: FIRST_USER_VNI,
            last: MAX_VNI,
        })
}
