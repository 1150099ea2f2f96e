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
//! key, named after it (`vip_10_0_1_5`, `tcp_8080`). Each entry has a *backend map* of the
//! same name (chains and maps have separate names in nf_tables), slot → backend address, and
//! its chain holds one rule, `dnat to numgen inc mod N map @vip_10_0_1_5` (round robin over
//! the `N` slots), or, with no backends, nothing: a VIP without backends is then in the set
//! `dead`, rejected by a filter chain (TCP reset, else ICMP port unreachable); a published
//! port without backends reaches `ingress_sbox` itself, where nothing listens, so its kernel
//! answers with a reset / port unreachable.
//!
//! A backend change edits the entry in place, in one transaction, at a cost that does not
//! grow with the number of backends: a new backend is one element added at slot `N` and the
//! rule rewritten with `mod N+1`; a backend that leaves has its slot taken by the last
//! backend (two elements written) and the rule rewritten with `mod N-1` (see
//! [`LbEntry::change_to`]). Nothing else in the table is touched, and the verdict-map element
//! is left alone when it exists (adding a jump makes the kernel re-validate every chain the
//! map reaches). Adding or removing a key is `add/delete element` plus its chain and map.
//! (An anonymous `map { 0 : b0, … }` in the rule, as before, made every change rebuild and
//! free the whole map: O(N) per change in every local sandbox, most of the kernel's time with
//! 2,000 tasks on one network.)

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
    /// Backends, sorted (the planner sorts them); empty: refuse.
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

/// An entry as the kernel holds it: its backend map in slot order, and what it balances over.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LbEntry {
    /// The backends sorted, and the port: what planning compares with the wanted target.
    pub target: LbTarget,
    /// The backend map's slots in order: slot `i` is what `numgen inc mod N` picks on its
    /// `i`-th turn. Edited in place, so not sorted.
    pub slots: Vec<Ipv4Addr>,
}

/// How an entry's backend map and rule go from what they hold to the wanted target.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SlotChange {
    /// Make the entry from nothing: its chain and map are created if missing and emptied,
    /// then the map is filled with the wanted backends in their (sorted) order. For a new
    /// entry, or one whose chain or map is not what we write.
    Fill,
    /// Edit in place an entry that holds `from` slots, with a rule if `from > 0`.
    Edit {
        /// Slots the map holds now.
        from: u32,
        /// Slots written, in increasing order: replaced below `from`, added from it on.
        writes: Vec<(u32, Ipv4Addr)>,
        /// Slots held after; those from `to` up to `from` are deleted.
        to: u32,
        /// Rewrite the rule: its modulus (`to`) or its port changed.
        rule: bool,
    },
}

impl LbEntry {
    /// An entry holding `slots` (in that order) with `port`.
    pub fn new(slots: Vec<Ipv4Addr>, port: Option<u16>) -> LbEntry {
        let mut backends = slots.clone();
        backends.sort_unstable();
        LbEntry {
            target: LbTarget { backends, port },
            slots,
        }
    }

    /// The smallest in-place edit that makes this entry balance over `want` (its backends
    /// sorted and unique): a slot keeps its backend when that backend is still wanted and the
    /// slot is below the new count; the wanted backends not kept so fill the other slots in
    /// order. One backend added or removed is at most two slots written and one deleted, and
    /// one rule rewritten, whatever the number of backends.
    pub fn change_to(&self, want: &LbTarget) -> SlotChange {
        let n = want.backends.len();
        let mut used = vec![false; n];
        let mut free = Vec::new();
        for i in 0..n {
            let kept = self
                .slots
                .get(i)
                .and_then(|b| want.backends.binary_search(b).ok())
                .filter(|pos| !used[*pos]);
            match kept {
                Some(pos) => used[pos] = true,
                None => free.push(i as u32),
            }
        }
        let missing = want
            .backends
            .iter()
            .zip(&used)
            .filter(|(_, used)| !**used)
            .map(|(b, _)| *b);
        let from = self.slots.len() as u32;
        let to = n as u32;
        SlotChange::Edit {
            from,
            writes: free.into_iter().zip(missing).collect(),
            to,
            rule: from != to || self.target.port != want.port,
        }
    }

    /// This entry after `change` to `target` succeeded; `false` (and unchanged) when the
    /// change does not fit it (an edit of a different number of slots).
    fn apply(&mut self, change: &SlotChange, target: &LbTarget) -> bool {
        match change {
            SlotChange::Fill => self.slots = target.backends.clone(),
            SlotChange::Edit {
                from, writes, to, ..
            } => {
                if self.slots.len() != *from as usize {
                    return false;
                }
                self.slots.truncate(*to as usize);
                for &(i, b) in writes {
                    match self.slots.get_mut(i as usize) {
                        Some(slot) => *slot = b,
                        None => self.slots.push(b),
                    }
                }
            }
        }
        self.target = target.clone();
        true
    }
}

/// A `mini_lb` table as read from the kernel, indexed by key so that planning a change does
/// no string work per entry.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LbTable {
    /// Recognised from the base chains; `None` when they match no flavour.
    pub flavour: Option<Flavour>,
    /// Verdict-map elements that jump to their key's own entry chain.
    pub elements: BTreeSet<LbKey>,
    /// Entry chains (named after a key) → the entry, `None` when the chain's rule and the
    /// key's backend map are not what we write.
    pub chains: BTreeMap<LbKey, Option<LbEntry>>,
    /// Backend maps (named after a key, of our type) that exist.
    pub maps: BTreeSet<LbKey>,
    /// Something we do not write is there (an element jumping elsewhere, a chain or map whose
    /// name is no key's, a backend map of another type): the table is replaced, not patched.
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
                .map(|(k, t)| (*k, Some(LbEntry::new(t.backends.clone(), t.port))))
                .collect(),
            maps: spec.entries.keys().copied().collect(),
            foreign: false,
        }
    }

    /// What entry `key` balances over, when it is an entry we wrote.
    pub fn target(&self, key: &LbKey) -> Option<&LbTarget> {
        Some(&self.chains.get(key)?.as_ref()?.target)
    }

    /// The table after [`netlink::set_entry`] succeeded. `false` (and the entry unknown) when
    /// `change` is an edit of an entry that is not there as the edit expects: the kernel
    /// would have refused it.
    pub fn set_entry(
        &mut self,
        key: LbKey,
        target: &LbTarget,
        change: &SlotChange,
        element: bool,
    ) -> bool {
        if element {
            self.elements.insert(key);
        }
        self.maps.insert(key);
        let entry = self.chains.entry(key).or_insert(None);
        let fits = match (entry.as_mut(), change) {
            (Some(e), _) => e.apply(change, target),
            (None, SlotChange::Fill) => {
                *entry = Some(LbEntry::new(target.backends.clone(), target.port));
                true
            }
            (None, SlotChange::Edit { .. }) => false,
        };
        if !fits {
            *entry = None;
        }
        fits
    }

    /// The table after [`netlink::del_entry`] succeeded.
    pub fn del_entry(&mut self, key: &LbKey) {
        self.elements.remove(key);
        self.chains.remove(key);
        self.maps.remove(key);
    }
}

/// nft's `typeof` for the backend maps declares a modulus for display only; the rule's own
/// modulus is the number of backends and changes with them.
const TYPEOF_MODULUS: u32 = 65536;

fn entry_rule(key: &LbKey, port: Option<u16>, n: u32) -> String {
    let chain = key.chain();
    let proto = match key {
        LbKey::Port(p, _) if port.is_some() => format!("meta l4proto {p} "),
        _ => String::new(),
    };
    let port = port.map(|p| format!(":{p}")).unwrap_or_default();
    format!("{proto}dnat to numgen inc mod {n} map @{chain}{port}")
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

/// `{ 0 : 10.0.1.2, 1 : 10.0.1.3 }`.
fn slot_elements<'a>(slots: impl Iterator<Item = (u32, &'a Ipv4Addr)>) -> String {
    let list: Vec<String> = slots.map(|(i, b)| format!("{i} : {b}")).collect();
    format!("{{ {} }}", list.join(", "))
}

/// The steps of one entry change, in the order both renderings send them: the `nft` text of
/// [`set_entry_script`] and the netlink batch of [`netlink::set_entry`].
struct EntrySteps {
    /// Create the chain and the backend map if missing, and empty both.
    fill: bool,
    /// Flush the chain's rule (done by `fill` too).
    flush_rule: bool,
    /// Slots deleted from the backend map.
    deleted: Vec<u32>,
    /// Slots written after the deletions.
    written: Vec<(u32, Ipv4Addr)>,
    /// Add the rule, with this modulus (the number of backends).
    rule: Option<u32>,
}

impl SlotChange {
    /// The slots an edit deletes: the replaced ones, then those past the new end.
    fn deleted(from: u32, writes: &[(u32, Ipv4Addr)], to: u32) -> impl Iterator<Item = u32> {
        writes
            .iter()
            .map(|(i, _)| *i)
            .filter(move |i| *i < from)
            .chain(to..from)
    }

    /// What this change sends to make the entry balance over `t`.
    fn steps(&self, t: &LbTarget) -> EntrySteps {
        let n = t.backends.len() as u32;
        match self {
            SlotChange::Fill => EntrySteps {
                fill: true,
                flush_rule: false,
                deleted: Vec::new(),
                written: (0..).zip(t.backends.iter().copied()).collect(),
                rule: (n > 0).then_some(n),
            },
            SlotChange::Edit {
                from,
                writes,
                to,
                rule,
            } => EntrySteps {
                fill: false,
                flush_rule: *rule,
                deleted: SlotChange::deleted(*from, writes, *to).collect(),
                written: writes.clone(),
                rule: (*rule && n > 0).then_some(n),
            },
        }
    }
}

/// Lines that create or change one entry (see [`SlotChange`]), and its verdict-map element
/// when `element` (false: it exists already; adding a jump makes the kernel re-validate every
/// chain the map reaches).
fn entry_script(
    out: &mut String,
    flavour: Flavour,
    key: &LbKey,
    t: &LbTarget,
    change: &SlotChange,
    element: bool,
) {
    let chain = key.chain();
    let steps = change.steps(t);
    if steps.fill {
        let _ = writeln!(out, "add chain ip {TABLE} {chain}");
        let _ = writeln!(out, "flush chain ip {TABLE} {chain}");
        let _ = writeln!(
            out,
            "add map ip {TABLE} {chain} {{ typeof numgen inc mod {TYPEOF_MODULUS} : ip daddr; }}"
        );
        let _ = writeln!(out, "flush map ip {TABLE} {chain}");
    } else if steps.flush_rule {
        let _ = writeln!(out, "flush chain ip {TABLE} {chain}");
    }
    if !steps.deleted.is_empty() {
        let deleted: Vec<String> = steps.deleted.iter().map(u32::to_string).collect();
        let _ = writeln!(
            out,
            "delete element ip {TABLE} {chain} {{ {} }}",
            deleted.join(", ")
        );
    }
    if !steps.written.is_empty() {
        let slots = steps.written.iter().map(|(i, b)| (*i, b));
        let _ = writeln!(
            out,
            "add element ip {TABLE} {chain} {}",
            slot_elements(slots)
        );
    }
    if let Some(n) = steps.rule {
        let r = entry_rule(key, t.port, n);
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
        entry_script(&mut out, spec.flavour, k, t, &SlotChange::Fill, true);
    }
    out
}

/// A batch that creates or changes one entry (the table exists with `flavour`) as `change`
/// says, and adds its verdict-map element when `element`. The driver sends the same change
/// as [`netlink::set_entry`]; this `nft` rendering is the reference the netlink path is
/// tested against (`netdriver/tests/lb_netlink.rs`), and what to type to do it by hand.
pub fn set_entry_script(
    flavour: Flavour,
    key: &LbKey,
    t: &LbTarget,
    change: &SlotChange,
    element: bool,
) -> String {
    let mut out = String::new();
    entry_script(&mut out, flavour, key, t, change, element);
    out
}

/// What of an entry exists, to be deleted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EntryParts {
    /// Its verdict-map element.
    pub element: bool,
    /// Its chain.
    pub chain: bool,
    /// Its backend map.
    pub map: bool,
}

/// A batch that removes one entry: its verdict-map element, chain and backend map, as they
/// exist. The `nft` rendering of [`netlink::del_entry`] (see [`set_entry_script`]).
pub fn del_entry_script(flavour: Flavour, key: &LbKey, parts: EntryParts) -> String {
    let mut out = String::new();
    if parts.element {
        let _ = writeln!(
            out,
            "delete element ip {TABLE} {} {{ {} }}",
            flavour.map(),
            key.element()
        );
    }
    if parts.chain {
        let _ = writeln!(out, "delete chain ip {TABLE} {}", key.chain());
    }
    if parts.map {
        let _ = writeln!(out, "delete map ip {TABLE} {}", key.chain());
    }
    dead_script(&mut out, flavour, key, false);
    out
}

/// A batch that deletes the table if it exists.
pub fn delete_script() -> String {
    format!("add table ip {TABLE}\ndelete table ip {TABLE}\n")
}

/// An entry chain's rules, as far as planning cares.
enum Rules {
    /// No rule: an entry without backends.
    None,
    /// The one rule we write: `dnat to numgen inc mod {modulus} map @{map}[:port]`.
    Dnat {
        modulus: u64,
        map: String,
        port: Option<u16>,
    },
    /// Anything else.
    Other,
}

impl Rules {
    /// A chain's rules: none, the one we write (recognised by `dnat`), or anything else.
    fn of<R>(rules: &[R], dnat: impl Fn(&R) -> Option<Rules>) -> Rules {
        match rules {
            [] => Rules::None,
            [rule] => dnat(rule).unwrap_or(Rules::Other),
            _ => Rules::Other,
        }
    }
}

/// What a map of the table is, by its name: `vips`/`ports` jump to entry chains, a map named
/// after a key holds that entry's backends.
enum MapKind {
    Verdict,
    Backends(LbKey),
    Foreign,
}

fn map_kind(name: &str) -> MapKind {
    match name {
        "vips" | "ports" => MapKind::Verdict,
        _ => LbKey::from_chain(name).map_or(MapKind::Foreign, MapKind::Backends),
    }
}

/// A backend map's slots when its keys are exactly `0..N` and every element parsed.
fn slots(elems: impl Iterator<Item = Option<(u64, Ipv4Addr)>>) -> Option<Vec<Ipv4Addr>> {
    let mut by_slot = BTreeMap::new();
    for e in elems {
        let (i, b) = e?;
        by_slot.insert(i, b);
    }
    let n = by_slot.len() as u64;
    by_slot
        .keys()
        .copied()
        .eq(0..n)
        .then(|| by_slot.into_values().collect())
}

/// What a table is made of, gathered in whatever order the listing gives it.
#[derive(Default)]
struct Parts {
    table: LbTable,
    base: Vec<String>,
    /// Entry chains by name, with their rules.
    chains: Vec<(String, Rules)>,
    /// Backend maps of our type: their slots, `None` when their content is not ours.
    slots: BTreeMap<LbKey, Option<Vec<Ipv4Addr>>>,
}

impl Parts {
    /// One element of a verdict map: ours when it jumps to its own key's chain.
    fn verdict(&mut self, key: Option<LbKey>, goto: Option<&str>) {
        match (key, goto) {
            (Some(k), Some(t)) if LbKey::from_chain(t) == Some(k) => {
                self.table.elements.insert(k);
            }
            _ => self.table.foreign = true,
        }
    }

    fn finish(mut self) -> LbTable {
        self.table.flavour = Flavour::from_chains(self.base.iter().map(String::as_str));
        self.table.maps = self.slots.keys().copied().collect();
        for (name, rules) in self.chains {
            let Some(key) = LbKey::from_chain(&name) else {
                self.table.foreign = true;
                continue;
            };
            let slots = self.slots.get(&key).and_then(Option::as_ref);
            let entry = match (rules, slots) {
                (Rules::None, Some(s)) if s.is_empty() => Some(LbEntry::new(Vec::new(), None)),
                (Rules::Dnat { modulus, map, port }, Some(s))
                    if map == name && !s.is_empty() && modulus == s.len() as u64 =>
                {
                    Some(LbEntry::new(s.clone(), port))
                }
                _ => None,
            };
            self.table.chains.insert(key, entry);
        }
        self.table
    }
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

/// An entry chain's rules in `nft -j` form.
fn parse_rules(rules: &[&Value]) -> Rules {
    let dnat = |rule: &Value| -> Option<Rules> {
        let dnat = rule["expr"]
            .as_array()?
            .iter()
            .find_map(|x| x.get("dnat"))?;
        let map = dnat.get("addr")?.get("map")?;
        let numgen = map.get("key")?.get("numgen")?;
        if numgen.get("mode")?.as_str()? != "inc" || numgen.get("offset")?.as_u64()? != 0 {
            return None;
        }
        let port = match dnat.get("port") {
            Some(p) => Some(u16::try_from(p.as_u64()?).ok()?),
            None => None,
        };
        Some(Rules::Dnat {
            modulus: numgen.get("mod")?.as_u64()?,
            map: map.get("data")?.as_str()?.strip_prefix('@')?.to_string(),
            port,
        })
    };
    Rules::of(rules, |rule: &&Value| dnat(rule))
}

/// Parses `nft -j list table ip mini_lb`.
pub fn parse_table(json: &str) -> Option<LbTable> {
    let v: Value = serde_json::from_str(json).ok()?;
    let items = v.get("nftables")?.as_array()?;
    let mut chains: Vec<&str> = Vec::new();
    let mut rules: BTreeMap<&str, Vec<&Value>> = BTreeMap::new();
    let mut parts = Parts::default();
    for it in items {
        if let Some(c) = it.get("chain") {
            let name = c.get("name")?.as_str()?;
            if c.get("hook").is_some() {
                parts.base.push(name.to_string());
            } else {
                chains.push(name);
            }
        } else if let Some(r) = it.get("rule") {
            rules.entry(r.get("chain")?.as_str()?).or_default().push(r);
        } else if let Some(m) = it.get("map") {
            let elems = m.get("elem").and_then(Value::as_array);
            let elems = elems.into_iter().flatten();
            match map_kind(m.get("name")?.as_str()?) {
                MapKind::Verdict => {
                    for e in elems {
                        let goto = e.get(1)?.get("goto").and_then(|g| g.get("target"));
                        parts.verdict(parse_key(e.get(0)?), goto.and_then(Value::as_str));
                    }
                }
                MapKind::Backends(key)
                    if m.get("type")?.as_str()? == "integer"
                        && m.get("map")?.as_str()? == "ipv4_addr" =>
                {
                    let slots =
                        slots(elems.map(|e| {
                            Some((e.get(0)?.as_u64()?, e.get(1)?.as_str()?.parse().ok()?))
                        }));
                    parts.slots.insert(key, slots);
                }
                MapKind::Backends(_) | MapKind::Foreign => parts.table.foreign = true,
            }
        }
    }
    for c in chains {
        let r = rules.get(c).map(Vec::as_slice).unwrap_or_default();
        parts.chains.push((c.to_string(), parse_rules(r)));
    }
    Some(parts.finish())
}

/// `NFT_GOTO`.
const NFT_GOTO: i32 = -4;
/// `NFT_SET_ANONYMOUS`, `NFT_SET_MAP`.
const SET_ANONYMOUS: u32 = 0x1;
const SET_MAP: u32 = 0x8;
/// A backend map's key and data as the kernel reports them: nft's `integer` (numgen's
/// output) and `ipv4_addr`, 4 bytes each.
const BACKEND_MAP_KEY: (u32, u32) = (4, 4);
const BACKEND_MAP_DATA: (u32, u32) = (7, 4);

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

/// An entry chain's rules as the kernel dumps them: the one we write is a `nat` (dnat) taking
/// its address from a `numgen inc` lookup in a named map, and its port from an `immediate`.
fn dump_rules(d: &TableDump, chain: &str) -> Rules {
    let rules: Vec<_> = d.rules_of(chain).collect();
    let dnat = |rule: &crate::nft_read::Rule| -> Option<Rules> {
        let find = |name: &str| rule.exprs.iter().find(|e| e.name == name);
        let nat = find("nat")?;
        // NFTA_NAT_TYPE = NFT_NAT_DNAT
        if nat.be32(1)? != 1 {
            return None;
        }
        let numgen = find("numgen")?;
        // NFTA_NG_MODULUS, NFTA_NG_TYPE = NFT_NG_INCREMENTAL, NFTA_NG_OFFSET
        if numgen.be32(3)? != 0 || numgen.be32(4).unwrap_or(0) != 0 {
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
        Some(Rules::Dnat {
            modulus: u64::from(numgen.be32(2)?),
            // NFTA_LOOKUP_SET
            map: str_attr(&find("lookup")?.data, 1)?,
            port,
        })
    };
    Rules::of(&rules, |rule: &&crate::nft_read::Rule| dnat(rule))
}

/// Reads the table from its netlink dump ([`crate::nft_read::read_table`]): what
/// [`parse_table`] reads from `nft -j list table ip mini_lb`. Anonymous sets belong to a rule
/// (none of ours has one: such a rule is not recognised); plain sets (`dead`) are state the
/// planner rewrites with each entry.
pub fn from_dump(d: &TableDump) -> LbTable {
    let mut parts = Parts::default();
    for c in &d.chains {
        if c.base {
            parts.base.push(c.name.clone());
        } else {
            parts.chains.push((c.name.clone(), dump_rules(d, &c.name)));
        }
    }
    for s in d
        .sets
        .iter()
        .filter(|s| s.flags & SET_MAP != 0 && s.flags & SET_ANONYMOUS == 0)
    {
        match map_kind(&s.name) {
            MapKind::Verdict => {
                for e in &s.elems {
                    let goto = match &e.data {
                        Some(ElemData::Verdict(NFT_GOTO, Some(c))) => Some(c.as_str()),
                        _ => None,
                    };
                    parts.verdict(key_from_bytes(&e.key), goto);
                }
            }
            MapKind::Backends(key)
                if s.flags == SET_MAP && s.key == BACKEND_MAP_KEY && s.data == BACKEND_MAP_DATA =>
            {
                let slots = slots(s.elems.iter().map(|e| {
                    let i = u32::from_ne_bytes(e.key.as_slice().try_into().ok()?);
                    let Some(ElemData::Value(v)) = &e.data else {
                        return None;
                    };
                    let ip: [u8; 4] = v.as_slice().try_into().ok()?;
                    Some((u64::from(i), Ipv4Addr::from(ip)))
                }));
                parts.slots.insert(key, slots);
            }
            MapKind::Backends(_) | MapKind::Foreign => parts.table.foreign = true,
        }
    }
    parts.finish()
}

pub mod netlink;

#[cfg(test)]
mod tests;
