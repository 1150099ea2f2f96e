//! Planning of the `mini_lb` tables: which table each namespace should hold, and the
//! per-entry differences from what it holds.

use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;

use crate::error::Error;
use crate::lb::{Flavour, LbKey, LbSpec, LbTable, LbTarget};
use crate::model::{Attachment, DesiredState, MacAddr, Sandbox};
use crate::names;
use crate::op::{NsRef, Op};
use crate::service::LoadBalancing;

/// Task id (and namespace file name) of the ingress sandbox.
pub const INGRESS_SBOX: &str = "ingress_sbox";

fn invalid(msg: String) -> Error {
    Error::Invalid(msg)
}

fn target(backends: &[Ipv4Addr], port: Option<u16>) -> LbTarget {
    let set: BTreeSet<Ipv4Addr> = backends.iter().copied().collect();
    LbTarget {
        backends: set.into_iter().collect(),
        port,
    }
}

/// The checked load-balancing state.
pub(super) struct Balance {
    /// VIP entries by network id.
    by_network: BTreeMap<String, BTreeMap<LbKey, LbTarget>>,
    /// The ingress sandbox's table and the published ports (host table), when ingress is on.
    ingress: Option<(LbSpec, Vec<LbKey>)>,
}

/// Checks `lb` against `desired` and returns the sandbox the ingress needs (to be planned like
/// a task sandbox) with the indexed state.
pub(super) fn validate(
    desired: &DesiredState,
    lb: &LoadBalancing,
) -> Result<(Option<Sandbox>, Balance), Error> {
    let subnet_of = |id: &str| {
        desired
            .networks
            .iter()
            .find(|n| n.id == id)
            .map(|n| n.subnet)
    };
    let mut by_network: BTreeMap<String, BTreeMap<LbKey, LbTarget>> = BTreeMap::new();
    let mut seen = BTreeSet::new();
    for s in &lb.services {
        let subnet = subnet_of(&s.network_id).ok_or_else(|| {
            invalid(format!(
                "service {} has a VIP on unknown network {}",
                s.service_id, s.network_id
            ))
        })?;
        if !seen.insert((s.service_id.as_str(), s.network_id.as_str())) {
            return Err(invalid(format!(
                "service {} is listed twice on network {}",
                s.service_id, s.network_id
            )));
        }
        if !subnet.contains(&s.vip) {
            return Err(invalid(format!(
                "service {}: VIP {} is outside {} of network {}",
                s.service_id, s.vip, subnet, s.network_id
            )));
        }
        let entries = by_network.entry(s.network_id.clone()).or_default();
        if entries
            .insert(LbKey::Vip(s.vip), target(&s.backends, None))
            .is_some()
        {
            return Err(invalid(format!(
                "VIP {} of service {} on network {} is used by another service",
                s.vip, s.service_id, s.network_id
            )));
        }
    }
    let Some(ing) = &lb.ingress else {
        return Ok((
            None,
            Balance {
                by_network,
                ingress: None,
            },
        ));
    };
    if subnet_of(&ing.network_id).is_none() {
        return Err(invalid(format!(
            "ingress is on unknown network {}",
            ing.network_id
        )));
    }
    if desired
        .sandboxes
        .iter()
        .any(|s| names::sandbox_ns(&s.id) == INGRESS_SBOX)
    {
        return Err(invalid(format!(
            "a task sandbox is named {INGRESS_SBOX} while ingress is on"
        )));
    }
    let mut entries = BTreeMap::new();
    for p in &ing.ports {
        let key = LbKey::Port(p.protocol, p.published);
        if entries
            .insert(key, target(&p.backends, Some(p.target)))
            .is_some()
        {
            return Err(invalid(format!("{key} is published twice")));
        }
    }
    let published = entries.keys().copied().collect();
    let sbox = Sandbox {
        id: INGRESS_SBOX.into(),
        attachments: vec![Attachment {
            network_id: ing.network_id.clone(),
            addr: ing.addr,
            mac: MacAddr::for_ip(ing.addr.addr()),
        }],
    };
    let spec = LbSpec {
        flavour: Flavour::Ingress,
        entries,
    };
    Ok((
        Some(sbox),
        Balance {
            by_network,
            ingress: Some((spec, published)),
        },
    ))
}

impl Balance {
    /// The table a sandbox namespace should hold (`None`: no table).
    pub(super) fn sandbox_spec(&self, ns: &str, sb: &Sandbox) -> Result<Option<LbSpec>, Error> {
        if ns == INGRESS_SBOX && self.ingress.is_some() {
            return Ok(self.ingress.as_ref().map(|(s, _)| s.clone()));
        }
        let mut entries = BTreeMap::new();
        for att in &sb.attachments {
            for (k, t) in self.by_network.get(&att.network_id).into_iter().flatten() {
                if entries.insert(*k, t.clone()).is_some() {
                    return Err(invalid(format!(
                        "task {}: {k} exists on two of its networks",
                        sb.id
                    )));
                }
            }
        }
        Ok((!entries.is_empty()).then_some(LbSpec {
            flavour: Flavour::Vip,
            entries,
        }))
    }

    /// The host namespace's table: published ports → `ingress_sbox`'s gateway address.
    pub(super) fn host_spec(&self, sbox_gw: Option<Ipv4Addr>) -> Option<LbSpec> {
        let (_, published) = self.ingress.as_ref()?;
        let to = sbox_gw?;
        Some(LbSpec {
            flavour: Flavour::Publish,
            entries: published
                .iter()
                .map(|k| {
                    let t = LbTarget {
                        backends: vec![to],
                        port: None,
                    };
                    (*k, t)
                })
                .collect(),
        })
    }
}

/// The operations that take a namespace's `mini_lb` table from `have` to `want`.
pub(super) fn diff(ns: &NsRef, want: Option<&LbSpec>, have: Option<&LbTable>, ops: &mut Vec<Op>) {
    let Some(want) = want else {
        if have.is_some() {
            ops.push(Op::DeleteLbTable { ns: ns.clone() });
        }
        return;
    };
    let replace = || Op::SetLbTable {
        ns: ns.clone(),
        spec: want.clone(),
    };
    let Some(have) = have else {
        ops.push(replace());
        return;
    };
    // Anything we did not write (other flavour, an element jumping elsewhere, a chain with a
    // foreign name) is repaired by one atomic replace.
    let sound = have.flavour == Some(want.flavour)
        && have.elements.iter().all(|(k, c)| *c == k.chain())
        && have.chains.keys().all(|c| LbKey::from_chain(c).is_some());
    if !sound {
        ops.push(replace());
        return;
    }
    let flavour = want.flavour;
    let mut dels: BTreeMap<LbKey, (bool, bool)> = BTreeMap::new();
    for k in have
        .elements
        .keys()
        .filter(|k| !want.entries.contains_key(k))
    {
        dels.entry(*k).or_default().0 = true;
    }
    for c in have.chains.keys() {
        if let Some(k) = LbKey::from_chain(c).filter(|k| !want.entries.contains_key(k)) {
            dels.entry(k).or_default().1 = true;
        }
    }
    for (key, (element, chain)) in dels {
        ops.push(Op::DelLbEntry {
            ns: ns.clone(),
            flavour,
            key,
            element,
            chain,
        });
    }
    for (key, t) in &want.entries {
        let ok = have.elements.contains_key(key)
            && have.chains.get(&key.chain()).and_then(Option::as_ref) == Some(t);
        if !ok {
            ops.push(Op::SetLbEntry {
                ns: ns.clone(),
                flavour,
                key: *key,
                target: t.clone(),
            });
        }
    }
}
