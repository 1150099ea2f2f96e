//! The load-balancing nftables table, `table ip mini_lb`: loaded and changed as nf_tables
//! netlink batches ([`netlink`]) and read back from a netlink dump ([`from_dump`]); also
//! rendered as the equivalent `nft -f` text (`*_script`, the reference the batches are tested
//! against and what to type by hand) and parsed from `nft -j list table` ([`parse_table`]).
//!
//! # Where balancing happens
//!
//! Service VIPs are balanced **in every task sandbox**, by a `mini_lb` table in the sandbox's own
//! namespace (what Docker did before 2018, with nftables instead of IPVS), not in one
//! load-balancer namespace per network per node (Docker since 2018). Reasons:
//!
//! - No extra hop and no SNAT: the client's connection is DNATed in its own `output` hook and
//!   leaves `eth0` addressed to the backend, so the backend sees the client's real IP and the
//!   reply returns straight to the client, whose conntrack entry un-NATs it. A shared LB
//!   namespace would have to SNAT (the backend would otherwise answer the client directly) to a
//!   per-node LB address that every node must allocate and advertise; the overlay gateway
//!   address cannot serve, every node's `br0` holds it.
//! - Nothing shared to fail or to clean: a sandbox's rules die with its namespace.
//! - The cost: a backend change is written once per local sandbox on that network (one
//!   nf_tables netlink transaction each on a socket kept open per namespace, well under a
//!   millisecond, see [`netlink`] and [`crate::nft_batch`]), and a new sandbox loads every VIP
//!   of its networks in one netlink batch. Docker moved to LB namespaces because IPVS
//!   programming per container was slow; here one entry is one small transaction, measured in
//!   BENCHMARKS.md.
//!
//! The routing mesh uses the same table layout twice: in the node's host namespace
//! ([`Flavour::Publish`]: `PUBLISHED` on any local address → `ingress_sbox`'s gateway-bridge
//! address, like Docker's `DOCKER-INGRESS`) and in `ingress_sbox` ([`Flavour::Ingress`]:
//! balanced over the tasks' ingress IPs at `TARGET`, masqueraded so replies come back through
//! `ingress_sbox`).
//!
//! # Layout
//!
//! One table per namespace. A base chain dispatches through a verdict map (`vips`, keyed by
//! destination address, or `ports`, keyed by `l4proto . dport`) to one *entry chain* per
//! key, named after it (`vip_10_0_1_5`, `tcp_8080`). An entry chain holds one rule,
//! `dnat to numgen inc mod N map { 0 : b0, … }` (round robin), or, with no backends, nothing:
//! a VIP without backends is then in the set `dead`, rejected by a filter chain (TCP reset,
//! else ICMP port unreachable); a published port without backends reaches `ingress_sbox`
//! itself, where nothing listens, so its kernel answers with a reset / port unreachable. `numgen … mod N` carries `N` in
//! the rule, so a backend change replaces that one entry chain's rule (`flush chain` + `add
//! rule`, one transaction): nothing else in the table is touched, and the map element is
//! left alone when it exists (adding a jump makes the kernel re-validate every chain the map
//! reaches). Adding or removing a key is `add/delete element` plus its chain.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::{self, Write as _};
use std::net::Ipv4Addr;

use serde_json::Value;

use crate::nft_read::{ElemData, TableDump, attr, str_attr, value_attr};
use crate::service::Protocol;

/// Name of the table, in every namespace that has one.
pub const TABLE: &str = "mini_lb";

/// What a table balances, and from which hook.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Flavour {
    /// Task sandbox: locally generated connections to a VIP (`output`, map `vips`).
    Vip,
    /// `ingress_sbox`: arriving connections by protocol and port (`prerouting`, map `ports`),
    /// masqueraded on the way out.
    Ingress,
    /// Host namespace: connections to any local address, arriving or local except loopback
    /// (`prerouting` and `output`, map `ports`), forwarded to `ingress_sbox`.
    Publish,
}

impl Flavour {
    fn base_chains(self) -> &'static [&'static str] {
        match self {
            Flavour::Vip => &["vip_out", "vip_reject"],
            Flavour::Ingress => &["ingress_pre", "ingress_post"],
            Flavour::Publish => &["publish_pre", "publish_out"],
        }
    }

    fn map(self) -> &'static str {
        match self {
            Flavour::Vip => "vips",
            Flavour::Ingress | Flavour::Publish => "ports",
        }
    }

    fn from_chains<'a>(names: impl Iterator<Item = &'a str>) -> Option<Flavour> {
        let names: BTreeSet<&str> = names.collect();
        [Flavour::Vip, Flavour::Ingress, Flavour::Publish]
            .into_iter()
            .find(|f| {
                names.len() == f.base_chains().len()
                    && f.base_chains().iter().all(|c| names.contains(c))
            })
    }
}

/// What a verdict-map element matches. Ordered VIPs first (by address), then ports (by
/// protocol, then number).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum LbKey {
    /// Destination address (a VIP), any port.
    Vip(Ipv4Addr),
    /// Protocol and destination port (a published port).
    Port(Protocol, u16),
}

impl Ord for LbKey {
    /// Compares one integer: planning looks keys up in maps of 1,000s per change, and the
    /// derived order compares addresses as byte arrays (a `memcmp` call each).
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.rank().cmp(&other.rank())
    }
}

impl PartialOrd for LbKey {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl LbKey {
    /// The order as one integer: an address below 2^32, a port above.
    fn rank(&self) -> u64 {
        match self {
            LbKey::Vip(ip) => u64::from(u32::from(*ip)),
            LbKey::Port(p, n) => 1 << 40 | u64::from(p.number()) << 16 | u64::from(*n),
        }
    }

    /// The entry chain's name.
    pub fn chain(&self) -> String {
        match self {
            LbKey::Vip(ip) => {
                let [a, b, c, d] = ip.octets();
                format!("vip_{a}_{b}_{c}_{d}")
            }
            LbKey::Port(p, n) => format!("{p}_{n}"),
        }
    }

    /// The key parsed back from an entry chain's name (exactly as [`LbKey::chain`] writes
    /// it: no leading zeros, no signs). Allocates nothing: planning calls it per entry.
    pub fn from_chain(name: &str) -> Option<LbKey> {
        if let Some(rest) = name.strip_prefix("vip_") {
            let mut parts = rest.split('_');
            let mut octets = [0u8; 4];
            for o in &mut octets {
                *o = u8::try_from(decimal(parts.next()?)?).ok()?;
            }
            return parts
                .next()
                .is_none()
                .then_some(LbKey::Vip(Ipv4Addr::from(octets)));
        }
        let (p, n) = name.split_once('_')?;
        let port = u16::try_from(decimal(n)?).ok()?;
        Some(LbKey::Port(p.parse().ok()?, port))
    }

    fn element(&self) -> String {
        match self {
            LbKey::Vip(ip) => ip.to_string(),
            LbKey::Port(p, n) => format!("{p} . {n}"),
        }
    }
}

/// A decimal number written canonically (digits only, no leading zero), as `format!` writes.
fn decimal(s: &str) -> Option<u32> {
    let canonical = !s.is_empty()
        && s.len() <= 9
        && s.bytes().all(|b| b.is_ascii_digit())
        && (s == "0" || !s.starts_with('0'));
    canonical.then(|| s.parse().ok()).flatten()
}

impl fmt::Display for LbKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LbKey::Vip(ip) => write!(f, "VIP {ip}"),
            LbKey::Port(p, n) => write!(f, "port {n}/{p}"),
        }
    }
}

/// Where an entry sends connections.
#[derive(Debug, Clone, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct LbTarget {
    /// Backends in round-robin order (the planner sorts them); empty: refuse.
    pub backends: Vec<Ipv4Addr>,
    /// New destination port; `None` keeps the packet's.
    pub port: Option<u16>,
}

/// The table a namespace should hold.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LbSpec {
    /// Hooks and map.
    pub flavour: Flavour,
    /// Entries by key.
    pub entries: BTreeMap<LbKey, LbTarget>,
}

/// A `mini_lb` table as read from the kernel, indexed by key so that planning a change does
/// no string work per entry.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LbTable {
    /// Recognised from the base chains; `None` when they match no flavour.
    pub flavour: Option<Flavour>,
    /// Verdict-map elements that jump to their key's own entry chain.
    pub elements: BTreeSet<LbKey>,
    /// Entry chains (named after a key) → their target, `None` when the content is not one we
    /// write.
    pub chains: BTreeMap<LbKey, Option<LbTarget>>,
    /// Something we do not write is there (an element jumping elsewhere, a chain whose name
    /// is no key's): the table is replaced, not patched.
    pub foreign: bool,
}

impl LbTable {
    /// The table an [`LbSpec`] renders to (what a successful write leaves).
    pub fn from_spec(spec: &LbSpec) -> LbTable {
        LbTable {
            flavour: Some(spec.flavour),
            elements: spec.entries.keys().copied().collect(),
            chains: spec
                .entries
                .iter()
                .map(|(k, t)| (*k, Some(t.clone())))
                .collect(),
            foreign: false,
        }
    }
}

fn entry_rules(key: &LbKey, t: &LbTarget) -> Vec<String> {
    if t.backends.is_empty() {
        return Vec::new();
    }
    let map = t
        .backends
        .iter()
        .enumerate()
        .map(|(i, b)| format!("{i} : {b}"))
        .collect::<Vec<_>>()
        .join(", ");
    let proto = match key {
        LbKey::Port(p, _) if t.port.is_some() => format!("meta l4proto {p} "),
        _ => String::new(),
    };
    let port = t.port.map(|p| format!(":{p}")).unwrap_or_default();
    vec![format!(
        "{proto}dnat to numgen inc mod {} map {{ {map} }}{port}",
        t.backends.len()
    )]
}

fn base_script(flavour: Flavour) -> String {
    let comment = format!("mini: {flavour:?} load balancing").to_lowercase();
    let body = match flavour {
        Flavour::Vip => "\tmap vips { type ipv4_addr : verdict; }\n\
             \tset dead { type ipv4_addr; }\n\
             \tchain vip_out { type nat hook output priority -100; policy accept; \
             ip daddr vmap @vips; }\n\
             \tchain vip_reject { type filter hook output priority 0; policy accept; \
             ip daddr @dead meta l4proto tcp reject with tcp reset; ip daddr @dead reject; }\n"
            .to_string(),
        Flavour::Ingress => "\tmap ports { type inet_proto . inet_service : verdict; }\n\
             \tchain ingress_pre { type nat hook prerouting priority -100; policy accept; \
             meta l4proto . th dport vmap @ports; }\n\
             \tchain ingress_post { type nat hook postrouting priority 100; policy accept; \
             ct status dnat masquerade; }\n"
            .to_string(),
        Flavour::Publish => {
            let rule = "meta l4proto . th dport vmap @ports";
            format!(
                "\tmap ports {{ type inet_proto . inet_service : verdict; }}\n\
                 \tchain publish_pre {{ type nat hook prerouting priority -100; policy accept; \
                 fib daddr type local {rule}; }}\n\
                 \tchain publish_out {{ type nat hook output priority -100; policy accept; \
                 ip daddr != 127.0.0.0/8 fib daddr type local {rule}; }}\n"
            )
        }
    };
    format!("table ip {TABLE} {{\n\tcomment \"{comment}\"\n{body}}}\n")
}

/// Lines that create or replace one entry (chain, its rule, the map element unless it exists
/// already: adding a jump makes the kernel re-validate every chain the map reaches).
fn entry_script(out: &mut String, flavour: Flavour, key: &LbKey, t: &LbTarget, element: bool) {
    let chain = key.chain();
    let _ = writeln!(out, "add chain ip {TABLE} {chain}");
    let _ = writeln!(out, "flush chain ip {TABLE} {chain}");
    for r in entry_rules(key, t) {
        let _ = writeln!(out, "add rule ip {TABLE} {chain} {r}");
    }
    if element {
        let _ = writeln!(
            out,
            "add element ip {TABLE} {} {{ {} : goto {chain} }}",
            flavour.map(),
            key.element()
        );
    }
    dead_script(out, flavour, key, t.backends.is_empty());
}

/// VIPs without backends are in the set `dead`, which a filter chain rejects (a `reject` in
/// the nat chain is not evaluated for locally generated packets on this kernel). `add` then
/// `delete` removes an element whether or not it exists.
fn dead_script(out: &mut String, flavour: Flavour, key: &LbKey, dead: bool) {
    if flavour != Flavour::Vip {
        return;
    }
    let _ = writeln!(out, "add element ip {TABLE} dead {{ {} }}", key.element());
    if !dead {
        let _ = writeln!(
            out,
            "delete element ip {TABLE} dead {{ {} }}",
            key.element()
        );
    }
}

/// A batch that atomically replaces the whole table with `spec`.
pub fn replace_script(spec: &LbSpec) -> String {
    let mut out = format!("add table ip {TABLE}\ndelete table ip {TABLE}\n");
    out.push_str(&base_script(spec.flavour));
    for (k, t) in &spec.entries {
        entry_script(&mut out, spec.flavour, k, t, true);
    }
    out
}

/// A batch that creates or replaces one entry (the table exists with `flavour`); `element`:
/// add its map element (false when it exists already). The driver sends the same change as
/// [`netlink::set_entry`]; this `nft` rendering is the reference the netlink path is tested
/// against (`netdriver/tests/lb_netlink.rs`), and what to type to do it by hand.
pub fn set_entry_script(flavour: Flavour, key: &LbKey, t: &LbTarget, element: bool) -> String {
    let mut out = String::new();
    entry_script(&mut out, flavour, key, t, element);
    out
}

/// A batch that removes one entry: its map element and/or its chain, as they exist. The
/// `nft` rendering of [`netlink::del_entry`] (see [`set_entry_script`]).
pub fn del_entry_script(flavour: Flavour, key: &LbKey, element: bool, chain: bool) -> String {
    let mut out = String::new();
    if element {
        let _ = writeln!(
            out,
            "delete element ip {TABLE} {} {{ {} }}",
            flavour.map(),
            key.element()
        );
    }
    if chain {
        let _ = writeln!(out, "delete chain ip {TABLE} {}", key.chain());
    }
    dead_script(&mut out, flavour, key, false);
    out
}

/// A batch that deletes the table if it exists.
pub fn delete_script() -> String {
    format!("add table ip {TABLE}\ndelete table ip {TABLE}\n")
}

fn parse_key(v: &Value) -> Option<LbKey> {
    if let Some(s) = v.as_str() {
        return s.parse().ok().map(LbKey::Vip);
    }
    let c = v.get("concat")?.as_array()?;
    let p: Protocol = c.first()?.as_str()?.parse().ok()?;
    let n = u16::try_from(c.get(1)?.as_u64()?).ok()?;
    Some(LbKey::Port(p, n))
}

/// The target of an entry chain's rules, if they are exactly what [`entry_rules`] writes.
fn parse_rules(rules: &[&Value]) -> Option<LbTarget> {
    if rules.is_empty() {
        return Some(LbTarget::default());
    }
    let [rule] = rules else { return None };
    let dnat = rule["expr"]
        .as_array()?
        .iter()
        .find_map(|x| x.get("dnat"))?;
    let map = dnat.get("addr")?.get("map")?;
    let mode = map.get("key")?.get("numgen")?;
    let pairs = map.get("data")?.get("set")?.as_array()?;
    let mut backends = BTreeMap::new();
    for p in pairs {
        let i = p.get(0)?.as_u64()?;
        let ip: Ipv4Addr = p.get(1)?.as_str()?.parse().ok()?;
        backends.insert(i, ip);
    }
    let n = backends.len() as u64;
    if mode.get("mode")?.as_str()? != "inc"
        || mode.get("mod")?.as_u64()? != n
        || backends.keys().copied().ne(0..n)
    {
        return None;
    }
    let port = match dnat.get("port") {
        Some(p) => Some(u16::try_from(p.as_u64()?).ok()?),
        None => None,
    };
    Some(LbTarget {
        backends: backends.into_values().collect(),
        port,
    })
}

/// Parses `nft -j list table ip mini_lb`.
pub fn parse_table(json: &str) -> Option<LbTable> {
    let v: Value = serde_json::from_str(json).ok()?;
    let items = v.get("nftables")?.as_array()?;
    let mut chains: BTreeSet<&str> = BTreeSet::new();
    let mut base: Vec<&str> = Vec::new();
    let mut rules: BTreeMap<&str, Vec<&Value>> = BTreeMap::new();
    let mut table = LbTable::default();
    for it in items {
        if let Some(c) = it.get("chain") {
            let name = c.get("name")?.as_str()?;
            if c.get("hook").is_some() {
                base.push(name);
            } else {
                chains.insert(name);
            }
        } else if let Some(r) = it.get("rule") {
            rules.entry(r.get("chain")?.as_str()?).or_default().push(r);
        } else if let Some(m) = it.get("map") {
            for e in m
                .get("elem")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                let key = parse_key(e.get(0)?);
                let target = e.get(1)?.get("goto").and_then(|g| g.get("target"));
                match (key, target.and_then(Value::as_str)) {
                    (Some(k), Some(t)) if LbKey::from_chain(t) == Some(k) => {
                        table.elements.insert(k);
                    }
                    _ => table.foreign = true,
                }
            }
        }
    }
    table.flavour = Flavour::from_chains(base.iter().copied());
    for c in chains {
        let Some(key) = LbKey::from_chain(c) else {
            table.foreign = true;
            continue;
        };
        let r = rules.get(c).map(Vec::as_slice).unwrap_or_default();
        table.chains.insert(key, parse_rules(r));
    }
    Some(table)
}

/// `NFT_GOTO`.
const NFT_GOTO: i32 = -4;
/// `NFT_SET_ANONYMOUS`, `NFT_SET_MAP`.
const SET_ANONYMOUS: u32 = 0x1;
const SET_MAP: u32 = 0x8;

/// A verdict-map key from its bytes in the kernel (see `netlink::key_bytes`).
fn key_from_bytes(b: &[u8]) -> Option<LbKey> {
    match b.len() {
        4 => Some(LbKey::Vip(Ipv4Addr::new(b[0], b[1], b[2], b[3]))),
        8 => {
            let p = match b[0] {
                6 => Protocol::Tcp,
                17 => Protocol::Udp,
                _ => return None,
            };
            Some(LbKey::Port(p, u16::from_be_bytes([b[4], b[5]])))
        }
        _ => None,
    }
}

/// The target of an entry chain's rules, if they are exactly what [`entry_rules`] writes:
/// one rule whose `nat` (dnat) takes its address from a `numgen inc mod N` lookup in an
/// anonymous map holding exactly the keys `0..N`, and its port from an `immediate`.
fn dump_rules(d: &TableDump, chain: &str) -> Option<LbTarget> {
    let rules: Vec<_> = d.rules_of(chain).collect();
    if rules.is_empty() {
        return Some(LbTarget::default());
    }
    let [rule] = rules.as_slice() else {
        return None;
    };
    let find = |name: &str| rule.exprs.iter().find(|e| e.name == name);
    let nat = find("nat")?;
    // NFTA_NAT_TYPE = NFT_NAT_DNAT
    if nat.be32(1)? != 1 {
        return None;
    }
    let numgen = find("numgen")?;
    // NFTA_NG_MODULUS, NFTA_NG_TYPE = NFT_NG_INCREMENTAL, NFTA_NG_OFFSET
    let n = numgen.be32(2)?;
    if numgen.be32(3)? != 0 || numgen.be32(4).unwrap_or(0) != 0 {
        return None;
    }
    // NFTA_LOOKUP_SET
    let map = d.set(&str_attr(&find("lookup")?.data, 1)?)?;
    if map.flags & SET_MAP == 0 {
        return None;
    }
    let mut backends = BTreeMap::new();
    for e in &map.elems {
        let i = u32::from_ne_bytes(e.key.as_slice().try_into().ok()?);
        let Some(ElemData::Value(v)) = &e.data else {
            return None;
        };
        let ip: [u8; 4] = v.as_slice().try_into().ok()?;
        backends.insert(i, Ipv4Addr::from(ip));
    }
    if backends.keys().copied().ne(0..n) {
        return None;
    }
    // NFTA_NAT_REG_PROTO_MIN: the port comes from a register an `immediate` loaded.
    let port = match attr(&nat.data, 5) {
        None => None,
        Some(_) => {
            // NFTA_IMMEDIATE_DATA
            let v = value_attr(&find("immediate")?.data, 2)?;
            Some(u16::from_be_bytes(v.try_into().ok()?))
        }
    };
    Some(LbTarget {
        backends: backends.into_values().collect(),
        port,
    })
}

/// Reads the table from its netlink dump ([`crate::nft_read::read_table`]): what
/// [`parse_table`] reads from `nft -j list table ip mini_lb`.
pub fn from_dump(d: &TableDump) -> LbTable {
    let mut table = LbTable {
        flavour: Flavour::from_chains(d.chains.iter().filter(|c| c.base).map(|c| c.name.as_str())),
        ..LbTable::default()
    };
    for s in d
        .sets
        .iter()
        .filter(|s| s.flags & SET_MAP != 0 && s.flags & SET_ANONYMOUS == 0)
    {
        for e in &s.elems {
            let key = key_from_bytes(&e.key);
            let target = match &e.data {
                Some(ElemData::Verdict(NFT_GOTO, Some(c))) => Some(c.as_str()),
                _ => None,
            };
            match (key, target) {
                (Some(k), Some(t)) if LbKey::from_chain(t) == Some(k) => {
                    table.elements.insert(k);
                }
                _ => table.foreign = true,
            }
        }
    }
    for c in d.chains.iter().filter(|c| !c.base) {
        let Some(key) = LbKey::from_chain(&c.name) else {
            table.foreign = true;
            continue;
        };
        table.chains.insert(key, dump_rules(d, &c.name));
    }
    table
}

pub mod netlink;

#[cfg(test)]
mod tests;
