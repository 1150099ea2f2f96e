//! The per-entry changes of a `mini_lb` table as nf_tables netlink batches
//! ([`crate::nft_batch`]): message for message what [`super::set_entry_script`] and
//! [`super::del_entry_script`] make `nft` send, so `nft list table ip mini_lb` shows the same
//! table whichever path wrote it (and [`super::parse_table`] reads it back the same).
//!
//! A backend change is the hot path of service discovery: it happens in every local sandbox on
//! the service's network each time a task starts or stops anywhere in the cluster.

use crate::nft_attrs::*;
use std::net::Ipv4Addr;

use crate::nft_batch::{Attrs, Batch, MsgType, NLM_F_APPEND, NLM_F_CREATE};
use crate::nft_expr::{
    self as x, CMP_EQ, CMP_NEQ, DATA_VERDICT, Hook, META_L4PROTO, NETWORK, REG_VERDICT, REG32_01,
    SET_MAP, TRANSPORT, TYPE_INET_PROTO, TYPE_INET_SERVICE,
};

use super::{
    BACKEND_MAP_DATA, BACKEND_MAP_KEY, EntryParts, Flavour, LbKey, LbSpec, LbTarget, SlotChange,
    TABLE, TYPEOF_MODULUS,
};

/// The transaction that atomically replaces the whole table with `spec` (what
/// [`super::replace_script`] makes `nft` send).
pub fn replace(spec: &LbSpec) -> Batch {
    let mut b = batch();
    x::delete_table(&mut b, TABLE);
    base(&mut b, spec.flavour);
    for (k, t) in &spec.entries {
        set_entry(&mut b, spec.flavour, k, t, &SlotChange::Fill, true);
    }
    b
}

/// The transaction that deletes the table if it exists.
pub fn delete() -> Batch {
    let mut b = batch();
    x::delete_table(&mut b, TABLE);
    b
}

/// The table, its map (and set `dead`) and its base chains (see [`super::base_script`]).
fn base(b: &mut Batch, flavour: Flavour) {
    let comment = format!("mini: {flavour:?} load balancing").to_lowercase();
    x::new_table(b, TABLE, &comment);
    let ports_key = ((TYPE_INET_PROTO << 6) | TYPE_INET_SERVICE, 8);
    let verdict = Some((DATA_VERDICT, 0));
    let ports = |r: &mut x::Exprs<'_, '_>| {
        r.meta(META_L4PROTO, REG_1)
            .payload(TRANSPORT, 2, 2, REG32_01)
            .lookup(REG_1, "ports", Some(REG_VERDICT), false);
    };
    match flavour {
        Flavour::Vip => {
            x::new_set(b, TABLE, "vips", SET_MAP, (x::TYPE_IPADDR, 4), verdict);
            x::new_set(b, TABLE, "dead", 0, (x::TYPE_IPADDR, 4), None);
            x::base_chain(b, TABLE, "vip_out", "nat", Hook::Output, -100);
            x::rule(b, TABLE, "vip_out", |r| {
                r.payload(NETWORK, 16, 4, REG_1)
                    .lookup(REG_1, "vips", Some(REG_VERDICT), false);
            });
            x::base_chain(b, TABLE, "vip_reject", "filter", Hook::Output, 0);
            for tcp in [true, false] {
                x::rule(b, TABLE, "vip_reject", |r| {
                    r.payload(NETWORK, 16, 4, REG_1)
                        .lookup(REG_1, "dead", None, false);
                    if tcp {
                        r.meta(META_L4PROTO, REG_1).cmp(CMP_EQ, REG_1, &[6]);
                    }
                    r.reject(tcp);
                });
            }
        }
        Flavour::Ingress => {
            x::new_set(b, TABLE, "ports", SET_MAP, ports_key, verdict);
            x::base_chain(b, TABLE, "ingress_pre", "nat", Hook::Prerouting, -100);
            x::rule(b, TABLE, "ingress_pre", ports);
            x::base_chain(b, TABLE, "ingress_post", "nat", Hook::Postrouting, 100);
            x::rule(b, TABLE, "ingress_post", |r| {
                r.ct_status_dnat().masquerade();
            });
        }
        Flavour::Publish => {
            x::new_set(b, TABLE, "ports", SET_MAP, ports_key, verdict);
            x::base_chain(b, TABLE, "publish_pre", "nat", Hook::Prerouting, -100);
            x::rule(b, TABLE, "publish_pre", |r| {
                r.fib_daddr_local();
                ports(r);
            });
            x::base_chain(b, TABLE, "publish_out", "nat", Hook::Output, -100);
            let loopback = "127.0.0.0/8".parse().expect("a prefix");
            x::rule(b, TABLE, "publish_out", |r| {
                r.ip_prefix(16, loopback, CMP_NEQ).fib_daddr_local();
                ports(r);
            });
        }
    }
}

/// `NFPROTO_IPV4`: `table ip`.
const NFPROTO_IPV4: u8 = 2;

/// `NFT_GOTO` (-4) as the kernel's big-endian u32.
const NFT_GOTO: u32 = -4i32 as u32;
/// nft's user data for a backend map declared `typeof numgen inc mod M : ip daddr`: key in
/// host byte order, data big endian, the two `typeof` expressions (numgen: type inc, modulus,
/// offset 0; payload: ip, daddr), data not an interval. Byte for byte what nft 1.0.6 sends,
/// so `nft list` prints the map the same whichever path made it.
fn backend_map_userdata() -> Vec<u8> {
    fn u32_tlv(out: &mut Vec<u8>, ty: u8, v: u32) {
        out.extend_from_slice(&[ty, 4]);
        out.extend_from_slice(&v.to_ne_bytes());
    }
    fn nested(out: &mut Vec<u8>, ty: u8, body: &[u8]) {
        out.extend_from_slice(&[ty, body.len() as u8]);
        out.extend_from_slice(body);
    }
    // NFTNL_UDATA_SET_TYPEOF_EXPR, NFTNL_UDATA_SET_TYPEOF_DATA
    let typeof_expr = |expr: u32, data: &[u8]| {
        let mut t = Vec::new();
        u32_tlv(&mut t, 0, expr);
        nested(&mut t, 1, data);
        t
    };
    let mut numgen = Vec::new();
    for (ty, v) in [(0, 0), (1, TYPEOF_MODULUS), (2, 0)] {
        u32_tlv(&mut numgen, ty, v);
    }
    // payload: protocol description `ip` (12), its field `daddr` (12)
    let mut daddr = Vec::new();
    u32_tlv(&mut daddr, 0, 12);
    u32_tlv(&mut daddr, 1, 12);
    // Key in host byte order, data big endian.
    let mut out = x::set_userdata(1, Some(2));
    // NFTNL_UDATA_SET_KEY_TYPEOF: EXPR_NUMGEN (23); NFTNL_UDATA_SET_DATA_TYPEOF: EXPR_PAYLOAD (7)
    nested(&mut out, 3, &typeof_expr(23, &numgen));
    nested(&mut out, 4, &typeof_expr(7, &daddr));
    // NFTNL_UDATA_SET_DATA_INTERVAL
    u32_tlv(&mut out, 6, 0);
    out
}

/// `NFT_REG_1`, `NFT_REG_2`: the 16-byte registers nft uses for these rules.
const REG_1: u32 = 1;
const REG_2: u32 = 2;
/// `NFT_NG_INCREMENTAL`, `NFT_NAT_DNAT`,
/// `NF_NAT_RANGE_PROTO_SPECIFIED`.
const NG_INCREMENTAL: u32 = 0;
const NAT_DNAT: u32 = 1;
const NAT_RANGE_PROTO_SPECIFIED: u32 = 2;

/// The verdict-map key as the kernel stores it: an address, or `inet_proto . inet_service`
/// (each field padded to 4 bytes).
fn key_bytes(key: &LbKey) -> Vec<u8> {
    match key {
        LbKey::Vip(ip) => ip.octets().to_vec(),
        LbKey::Port(p, n) => {
            let [hi, lo] = n.to_be_bytes();
            vec![p.number(), 0, 0, 0, hi, lo, 0, 0]
        }
    }
}

/// An empty transaction on `table ip` tables; [`set_entry`] and [`del_entry`] add to it, so
/// several entries of one namespace change in one transaction.
pub fn batch() -> Batch {
    Batch::new(NFPROTO_IPV4)
}

/// Adds to `b` the messages that create or change one entry (the table exists with
/// `flavour`) as `change` says, with its verdict-map element when `element` (false: it exists
/// already); see [`super::set_entry_script`].
pub fn set_entry(
    b: &mut Batch,
    flavour: Flavour,
    key: &LbKey,
    t: &LbTarget,
    change: &SlotChange,
    element: bool,
) {
    let chain = key.chain();
    let steps = change.steps(t);
    let mut set_id = None;
    if steps.fill {
        b.push(MsgType::NewChain, NLM_F_CREATE, |a| {
            a.str(NFTA_CHAIN_TABLE, TABLE).str(NFTA_CHAIN_NAME, &chain);
        });
        flush_chain(b, &chain);
        set_id = Some(backend_map(b, &chain));
        // No element list: flush the map.
        b.push(MsgType::DelSetElem, 0, |a| {
            a.str(NFTA_SET_ELEM_LIST_TABLE, TABLE)
                .str(NFTA_SET_ELEM_LIST_SET, &chain);
        });
    } else if steps.flush_rule {
        flush_chain(b, &chain);
    }
    // numgen writes a host-endian u32; the map's keys are stored the same way.
    if !steps.deleted.is_empty() {
        let keys: Vec<[u8; 4]> = steps.deleted.iter().map(|i| i.to_ne_bytes()).collect();
        let elems: Vec<(&[u8], Option<Data<'_>>)> = keys.iter().map(|k| (&k[..], None)).collect();
        b.push(MsgType::DelSetElem, 0, |a| elements(a, &chain, &elems));
    }
    if !steps.written.is_empty() {
        let keys: Vec<[u8; 4]> = steps.written.iter().map(|(i, _)| i.to_ne_bytes()).collect();
        let elems: Vec<(&[u8], Option<Data<'_>>)> = keys
            .iter()
            .zip(&steps.written)
            .map(|(k, (_, ip))| (&k[..], Some(Data::Addr(*ip))))
            .collect();
        b.push(MsgType::NewSetElem, NLM_F_CREATE, |a| {
            elements(a, &chain, &elems);
        });
    }
    if let Some(n) = steps.rule {
        dnat_rule(b, &chain, key, t.port, n, set_id);
    }
    let k = key_bytes(key);
    if element {
        b.push(MsgType::NewSetElem, NLM_F_CREATE, |a| {
            elements(a, flavour.map(), &[(&k, Some(Data::Goto(&chain)))]);
        });
    }
    dead(b, flavour, &k, t.backends.is_empty());
}

/// Adds to `b` the messages that remove one entry: its verdict-map element, chain and backend
/// map, as they exist; see [`super::del_entry_script`].
pub fn del_entry(b: &mut Batch, flavour: Flavour, key: &LbKey, parts: EntryParts) {
    let k = key_bytes(key);
    let name = key.chain();
    if parts.element {
        b.push(MsgType::DelSetElem, 0, |a| {
            elements(a, flavour.map(), &[(&k, None)]);
        });
    }
    if parts.chain {
        flush_chain(b, &name);
        b.push(MsgType::DelChain, 0, |a| {
            a.str(NFTA_CHAIN_TABLE, TABLE).str(NFTA_CHAIN_NAME, &name);
        });
    }
    if parts.map {
        b.push(MsgType::DelSet, 0, |a| {
            a.str(NFTA_SET_TABLE, TABLE).str(NFTA_SET_NAME, &name);
        });
    }
    dead(b, flavour, &k, false);
}

/// The entry's backend map, `name`, created unless it exists (`typeof numgen inc mod M : ip
/// daddr`: slot → address); returns its id in this batch.
fn backend_map(b: &mut Batch, name: &str) -> u32 {
    let (key, data) = (BACKEND_MAP_KEY, Some(BACKEND_MAP_DATA));
    x::new_set_with_userdata(b, TABLE, name, SET_MAP, key, data, &backend_map_userdata())
}

fn flush_chain(b: &mut Batch, chain: &str) {
    b.push(MsgType::DelRule, 0, |a| {
        a.str(NFTA_RULE_TABLE, TABLE).str(NFTA_RULE_CHAIN, chain);
    });
}

/// VIPs without backends are in the set `dead`; adding then deleting removes an element
/// whether or not it exists (as [`super::dead_script`]).
fn dead(b: &mut Batch, flavour: Flavour, key: &[u8], dead: bool) {
    if flavour != Flavour::Vip {
        return;
    }
    b.push(MsgType::NewSetElem, NLM_F_CREATE, |a| {
        elements(a, "dead", &[(key, None)]);
    });
    if !dead {
        b.push(MsgType::DelSetElem, 0, |a| {
            elements(a, "dead", &[(key, None)]);
        });
    }
}

/// What a map element maps to.
enum Data<'a> {
    Goto(&'a str),
    Addr(Ipv4Addr),
}

/// The attributes of a set-element message on the named set `set`.
fn elements(a: &mut Attrs<'_>, set: &str, elems: &[(&[u8], Option<Data<'_>>)]) {
    a.str(NFTA_SET_ELEM_LIST_TABLE, TABLE)
        .str(NFTA_SET_ELEM_LIST_SET, set);
    element_list(a, elems);
}

fn element_list(a: &mut Attrs<'_>, elems: &[(&[u8], Option<Data<'_>>)]) {
    a.nested(NFTA_SET_ELEM_LIST_ELEMENTS, |a| {
        for (key, data) in elems {
            a.nested(NFTA_LIST_ELEM, |a| {
                a.nested(NFTA_SET_ELEM_KEY, |a| {
                    a.bytes(NFTA_DATA_VALUE, key);
                });
                match data {
                    None => {}
                    Some(Data::Addr(ip)) => {
                        a.nested(NFTA_SET_ELEM_DATA, |a| {
                            a.bytes(NFTA_DATA_VALUE, &ip.octets());
                        });
                    }
                    Some(Data::Goto(chain)) => {
                        a.nested(NFTA_SET_ELEM_DATA, |a| {
                            a.nested(NFTA_DATA_VERDICT, |a| {
                                a.be32(NFTA_VERDICT_CODE, NFT_GOTO)
                                    .str(NFTA_VERDICT_CHAIN, chain);
                            });
                        });
                    }
                }
            });
        }
    });
}

/// `[meta l4proto P] dnat to numgen inc mod N map @chain[:port]`, the rule that looks the
/// backend up in the entry's map (`set_id`: the map is made in this batch).
fn dnat_rule(
    b: &mut Batch,
    chain: &str,
    key: &LbKey,
    port: Option<u16>,
    n: u32,
    set_id: Option<u32>,
) {
    let proto = match key {
        LbKey::Port(p, _) if port.is_some() => Some(p.number()),
        _ => None,
    };
    b.push(MsgType::NewRule, NLM_F_CREATE | NLM_F_APPEND, |a| {
        a.str(NFTA_RULE_TABLE, TABLE)
            .str(NFTA_RULE_CHAIN, chain)
            .nested(NFTA_RULE_EXPRESSIONS, |a| {
                if let Some(proto) = proto {
                    // NFTA_META_KEY, NFTA_META_DREG
                    expr(a, "meta", |a| {
                        a.be32(2, META_L4PROTO).be32(1, REG_1);
                    });
                    // NFTA_CMP_SREG, NFTA_CMP_OP, NFTA_CMP_DATA
                    expr(a, "cmp", |a| {
                        a.be32(1, REG_1).be32(2, CMP_EQ).nested(3, |a| {
                            a.bytes(NFTA_DATA_VALUE, &[proto]);
                        });
                    });
                }
                // NFTA_NG_DREG, NFTA_NG_MODULUS, NFTA_NG_TYPE, NFTA_NG_OFFSET
                expr(a, "numgen", |a| {
                    a.be32(1, REG_1)
                        .be32(2, n)
                        .be32(3, NG_INCREMENTAL)
                        .be32(4, 0);
                });
                // NFTA_LOOKUP_SREG, NFTA_LOOKUP_DREG, NFTA_LOOKUP_SET, NFTA_LOOKUP_SET_ID
                expr(a, "lookup", |a| {
                    a.be32(2, REG_1).be32(3, REG_1).str(1, chain);
                    if let Some(id) = set_id {
                        a.be32(4, id);
                    }
                });
                if let Some(port) = port {
                    // NFTA_IMMEDIATE_DREG, NFTA_IMMEDIATE_DATA
                    expr(a, "immediate", |a| {
                        a.be32(1, REG_2).nested(2, |a| {
                            a.bytes(NFTA_DATA_VALUE, &port.to_be_bytes());
                        });
                    });
                }
                // NFTA_NAT_TYPE, NFTA_NAT_FAMILY, NFTA_NAT_REG_ADDR_MIN, then
                // NFTA_NAT_REG_PROTO_MIN and NFTA_NAT_FLAGS
                expr(a, "nat", |a| {
                    a.be32(1, NAT_DNAT)
                        .be32(2, u32::from(NFPROTO_IPV4))
                        .be32(3, REG_1);
                    if port.is_some() {
                        a.be32(5, REG_2).be32(7, NAT_RANGE_PROTO_SPECIFIED);
                    }
                });
            });
    });
}

/// One expression of a rule: `NFTA_LIST_ELEM { NFTA_EXPR_NAME, NFTA_EXPR_DATA { … } }`.
fn expr(a: &mut Attrs<'_>, name: &str, data: impl FnOnce(&mut Attrs<'_>)) {
    a.nested(NFTA_LIST_ELEM, |a| {
        a.str(NFTA_EXPR_NAME, name).nested(NFTA_EXPR_DATA, data);
    });
}
