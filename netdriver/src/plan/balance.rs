//! Planning of the `mini_lb` tables: which table each namespace should hold, and the
//! per-entry differences from what it holds.

use std::borrow::Cow;
use std::collections::{BTreeMap, HashSet};
use std::net::Ipv4Addr;

use crate::error::Error;
use crate::lb::{EntryParts, Flavour, LbKey, LbSpec, LbTable, LbTarget, SlotChange};
use crate::model::{Attachment, DesiredState, MacAddr, Sandbox};
use crate::names;
use crate::op::{NsRef, Op};
use crate::service::LoadBalancing;

/// Task id (and namespace file name) of the ingress sandbox.
pub const INGRESS_SBOX: &str = "ingress_sbox";

fn invalid(msg: String) -> Error {
    Error::Invalid(msg)
}

/// Backends sorted and unique; no port without backends (an entry without backends has no
/// rule, so the kernel holds no port for it either).
fn target(backends: &[Ipv4Addr], port: Option<u16>) -> LbTarget {
    let mut backends = backends.to_vec();
    backends.sort_unstable();
    backends.dedup();
    LbTarget {
        port: port.filter(|_| !backends.is_empty()),
        backends,
    }
}

/// The entries a namespace's table should hold, borrowed from the checked state when one
/// network supplies them all (a change is planned against every local sandbox: no copies).
pub(super) struct Want<'a> {
    flavour: Flavour,
    entries: Cow<'a, BTreeMap<LbKey, LbTarget>>,
}

impl Want<'_> {
    fn spec(&self) -> LbSpec {
        LbSpec {
            flavour: self.flavour,
            entries: self.entries.clone().into_owned(),
        }
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
    // Hashed: a plan checks every service of the node (1,000s) for each single change.
    let mut seen = HashSet::with_capacity(lb.services.len());
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
        let entries = match by_network.get_mut(&s.network_id) {
            Some(entries) => entries,
            None => by_network.entry(s.network_id.clone()).or_default(),
        };
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
    pub(super) fn sandbox_want(&self, ns: &str, sb: &Sandbox) -> Result<Option<Want<'_>>, Error> {
        if ns == INGRESS_SBOX
            && let Some((spec, _)) = &self.ingress
        {
            return Ok(Some(Want {
                flavour: spec.flavour,
                entries: Cow::Borrowed(&spec.entries),
            }));
        }
        let mut nets = sb
            .attachments
            .iter()
            .filter_map(|att| self.by_network.get(&att.network_id))
            .filter(|entries| !entries.is_empty());
        let entries = match (nets.next(), nets.next()) {
            (None, _) => return Ok(None),
            (Some(one), None) => Cow::Borrowed(one),
            (Some(first), Some(second)) => {
                let mut entries = first.clone();
                for (k, t) in second.iter().chain(nets.flatten()) {
                    if entries.insert(*k, t.clone()).is_some() {
                        return Err(invalid(format!(
                            "task {}: {k} exists on two of its networks",
                            sb.id
                        )));
                    }
                }
                Cow::Owned(entries)
            }
        };
        Ok(Some(Want {
            flavour: Flavour::Vip,
            entries,
        }))
    }

    /// The host namespace's table: published ports → `ingress_sbox`'s gateway address.
    pub(super) fn host_want(&self, sbox_gw: Option<Ipv4Addr>) -> Option<Want<'static>> {
        let (_, published) = self.ingress.as_ref()?;
        let to = sbox_gw?;
        Some(Want {
            flavour: Flavour::Publish,
            entries: Cow::Owned(
                published
                    .iter()
                    .map(|k| {
                        let t = LbTarget {
                            backends: vec![to],
                            port: None,
                        };
                        (*k, t)
                    })
                    .collect(),
            ),
        })
    }
}

/// The operations that take a namespace's `mini_lb` table from `have` to `want`.
pub(super) fn diff(ns: &NsRef, want: Option<&Want<'_>>, have: Option<&LbTable>, ops: &mut Vec<Op>) {
    let Some(want) = want else {
        if have.is_some() {
            ops.push(Op::DeleteLbTable { ns: ns.clone() });
        }
        return;
    };
    let replace = || Op::SetLbTable {
        ns: ns.clone(),
        spec: want.spec(),
    };
    let Some(have) = have else {
        ops.push(replace());
        return;
    };
    // Anything we did not write (other flavour, an element jumping elsewhere, a chain with a
    // foreign name) is repaired by one atomic replace.
    if have.flavour != Some(want.flavour) || have.foreign {
        ops.push(replace());
        return;
    }
    let flavour = want.flavour;
    // One merge of four sorted key sequences (wanted entries, elements, chains, backend
    // maps): a change is planned against every local sandbox's 1,000s of entries, so no
    // lookups per entry.
    let mut wants = want.entries.iter().peekable();
    let mut elements = have.elements.iter().peekable();
    let mut chains = have.chains.iter().peekable();
    let mut maps = have.maps.iter().peekable();
    let mut sets = Vec::new();
    loop {
        let next = [
            wants.peek().map(|(k, _)| **k),
            elements.peek().map(|k| **k),
            chains.peek().map(|(k, _)| **k),
            maps.peek().map(|k| **k),
        ];
        let Some(key) = next.into_iter().flatten().min() else {
            break;
        };
        let wanted = wants.next_if(|(k, _)| **k == key).map(|(_, t)| t);
        let element = elements.next_if(|k| **k == key).is_some();
        let chain = chains.next_if(|(k, _)| **k == key).map(|(_, e)| e.as_ref());
        let map = maps.next_if(|k| **k == key).is_some();
        let Some(t) = wanted else {
            ops.push(Op::DelLbEntry {
                ns: ns.clone(),
                flavour,
                key,
                parts: EntryParts {
                    element,
                    chain: chain.is_some(),
                    map,
                },
            });
            continue;
        };
        // An entry we wrote is edited in place (O(1) per backend change); anything else is
        // made again from nothing.
        let change = match chain.flatten() {
            Some(e) if e.target == *t && element => continue,
            Some(e) => e.change_to(t),
            None => SlotChange::Fill,
        };
        sets.push(Op::SetLbEntry {
            ns: ns.clone(),
            flavour,
            key,
            target: t.clone(),
            change,
            element: !element,
        });
    }
    ops.extend(sets);
}
