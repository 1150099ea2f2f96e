//! The members-only filter: UDP to the gossip and data-path ports is accepted only from the
//! cluster's member addresses, in the node's own (host) namespace.
//!
//! One table owned entirely by mini, `table ip mini_filter`:
//!
//! ```text
//! table ip mini_filter {
//!     comment "mini: udp ports 4789,7946 from members only"
//!     set members { type ipv4_addr; elements = { 10.0.0.1, 10.0.0.2 } }
//!     chain input {
//!         type filter hook input priority -10; policy accept;
//!         udp dport { 4789, 7946 } ip saddr != @members counter drop
//!     }
//! }
//! ```
//!
//! The input hook runs before the UDP socket of `vxlan0` (which lives in the host namespace, see
//! [`crate::Op::CreateOverlay`]): an outsider's VXLAN datagrams are never decapsulated, and its
//! gossip datagrams never reach the gossip agent. The comment encodes the ports, so observation
//! tells whether the table in the kernel is the wanted one; membership changes add or delete
//! set elements (one nf_tables netlink transaction), they never rewrite the table.

use std::collections::BTreeSet;
use std::net::Ipv4Addr;

use crate::nft_batch::Batch;
use crate::nft_expr::{
    self as x, CMP_EQ, Hook, META_L4PROTO, NETWORK, REG_1, SET_ANONYMOUS, SET_CONSTANT, TRANSPORT,
    TYPE_INET_SERVICE, TYPE_IPADDR,
};
use crate::nft_read::{TableDump, be64_attr};
use crate::op::Op;

/// `NFPROTO_IPV4`: `table ip`.
const NFPROTO_IPV4: u8 = 2;
/// The anonymous set of the filtered ports (nft would name it `__set0`).
const PORTS_SET: &str = "__set_ports";

/// Name of the table (`table ip mini_filter`).
pub const TABLE: &str = "mini_filter";

/// The wanted filter: which ports, which sources.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MemberFilter {
    /// UDP ports reserved to members (the gossip port and the data-path port).
    pub ports: BTreeSet<u16>,
    /// Member addresses (every node of the cluster, this one included).
    pub members: BTreeSet<Ipv4Addr>,
}

/// The filter table as the kernel holds it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FilterTable {
    /// The table's comment (see [`comment`]).
    pub comment: String,
    /// Elements of the `members` set.
    pub members: BTreeSet<Ipv4Addr>,
    /// Packets the drop rule dropped so far.
    pub dropped: u64,
}

/// The comment of a table filtering `ports`.
pub fn comment(ports: &BTreeSet<u16>) -> String {
    let ports: Vec<String> = ports.iter().map(u16::to_string).collect();
    format!("mini: udp ports {} from members only", ports.join(","))
}

fn addr_list(addrs: impl IntoIterator<Item = Ipv4Addr>) -> String {
    addrs
        .into_iter()
        .map(|a| a.to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

/// A batch that atomically replaces the table (one `nft` batch is one transaction).
pub fn replace_script(filter: &MemberFilter) -> String {
    let ports: Vec<String> = filter.ports.iter().map(u16::to_string).collect();
    let elements = if filter.members.is_empty() {
        String::new()
    } else {
        format!(
            " elements = {{ {} }};",
            addr_list(filter.members.iter().copied())
        )
    };
    format!(
        "add table ip {TABLE}\n\
         delete table ip {TABLE}\n\
         table ip {TABLE} {{\n\
         \tcomment \"{comment}\"\n\
         \tset members {{ type ipv4_addr;{elements} }}\n\
         \tchain input {{\n\
         \t\ttype filter hook input priority -10; policy accept;\n\
         \t\tudp dport {{ {ports} }} ip saddr != @members counter drop\n\
         \t}}\n\
         }}\n",
        comment = comment(&filter.ports),
        ports = ports.join(", "),
    )
}

/// The transaction that atomically replaces the table (what [`replace_script`] makes `nft`
/// send).
pub fn replace_batch(filter: &MemberFilter) -> Batch {
    let mut b = Batch::new(NFPROTO_IPV4);
    x::delete_table(&mut b, TABLE);
    x::new_table(&mut b, TABLE, &comment(&filter.ports));
    let members = x::new_set(&mut b, TABLE, "members", 0, (TYPE_IPADDR, 4), None);
    let keys: Vec<[u8; 4]> = filter.members.iter().map(|a| a.octets()).collect();
    let keys: Vec<&[u8]> = keys.iter().map(|k| &k[..]).collect();
    x::set_keys(&mut b, TABLE, "members", Some(members), &keys, true);
    x::base_chain(&mut b, TABLE, "input", "filter", Hook::Input, -10);
    let ports = x::new_set(
        &mut b,
        TABLE,
        PORTS_SET,
        SET_ANONYMOUS | SET_CONSTANT,
        (TYPE_INET_SERVICE, 2),
        None,
    );
    let keys: Vec<[u8; 2]> = filter.ports.iter().map(|p| p.to_be_bytes()).collect();
    let keys: Vec<&[u8]> = keys.iter().map(|k| &k[..]).collect();
    x::set_keys(&mut b, TABLE, PORTS_SET, Some(ports), &keys, true);
    x::rule(&mut b, TABLE, "input", |r| {
        r.meta(META_L4PROTO, REG_1)
            .cmp(CMP_EQ, REG_1, &[17])
            .payload(TRANSPORT, 2, 2, REG_1)
            .lookup_id(REG_1, PORTS_SET, ports)
            .payload(NETWORK, 12, 4, REG_1)
            .lookup(REG_1, "members", None, true)
            .counter()
            .drop_verdict();
    });
    b
}

/// The transaction that adds and deletes members (what [`members_script`] makes `nft` send).
pub fn members_batch(add: &[Ipv4Addr], remove: &[Ipv4Addr]) -> Batch {
    let mut b = Batch::new(NFPROTO_IPV4);
    for (list, add) in [(add, true), (remove, false)] {
        let keys: Vec<[u8; 4]> = list.iter().map(|a| a.octets()).collect();
        let keys: Vec<&[u8]> = keys.iter().map(|k| &k[..]).collect();
        x::set_keys(&mut b, TABLE, "members", None, &keys, add);
    }
    b
}

/// The transaction that deletes the table if it exists.
pub fn delete_batch() -> Batch {
    let mut b = Batch::new(NFPROTO_IPV4);
    x::delete_table(&mut b, TABLE);
    b
}

/// Reads the table from its netlink dump ([`crate::nft_read::read_table`]): comment,
/// members, and the packets counted by the drop rule.
pub fn from_dump(d: &TableDump) -> FilterTable {
    FilterTable {
        comment: d.comment.clone().unwrap_or_default(),
        members: d
            .set("members")
            .into_iter()
            .flat_map(|s| &s.elems)
            .filter_map(|e| <[u8; 4]>::try_from(e.key.as_slice()).ok())
            .map(Ipv4Addr::from)
            .collect(),
        dropped: d
            .rules
            .iter()
            .flat_map(|r| &r.exprs)
            .filter(|e| e.name == "counter")
            // NFTA_COUNTER_PACKETS
            .filter_map(|e| be64_attr(&e.data, 2))
            .sum(),
    }
}

/// A batch (one transaction) that adds and deletes members.
pub fn members_script(add: &[Ipv4Addr], remove: &[Ipv4Addr]) -> String {
    let mut script = String::new();
    if !add.is_empty() {
        script += &format!(
            "add element ip {TABLE} members {{ {} }}\n",
            addr_list(add.iter().copied())
        );
    }
    if !remove.is_empty() {
        script += &format!(
            "delete element ip {TABLE} members {{ {} }}\n",
            addr_list(remove.iter().copied())
        );
    }
    script
}

/// A batch that deletes the table if it exists.
pub fn delete_script() -> String {
    format!("add table ip {TABLE}\ndelete table ip {TABLE}\n")
}

/// Reads the table from `nft -j list table ip mini_filter` output.
pub fn parse_json(listing: &str) -> Option<FilterTable> {
    let value: serde_json::Value = serde_json::from_str(listing).ok()?;
    let mut table = FilterTable::default();
    for item in value.get("nftables")?.as_array()? {
        if let Some(t) = item.get("table") {
            table.comment = t.get("comment")?.as_str()?.to_string();
        } else if let Some(set) = item.get("set") {
            if set.get("name").and_then(|n| n.as_str()) != Some("members") {
                continue;
            }
            for e in set
                .get("elem")
                .and_then(|e| e.as_array())
                .into_iter()
                .flatten()
            {
                if let Some(ip) = e.as_str().and_then(|s| s.parse().ok()) {
                    table.members.insert(ip);
                }
            }
        } else if let Some(rule) = item.get("rule") {
            for expr in rule
                .get("expr")
                .and_then(|e| e.as_array())
                .into_iter()
                .flatten()
            {
                if let Some(packets) = expr
                    .get("counter")
                    .and_then(|c| c.get("packets"))
                    .and_then(|p| p.as_u64())
                {
                    table.dropped += packets;
                }
            }
        }
    }
    Some(table)
}

/// The operations that bring the kernel's table (`observed`) to `wanted` (`None`: no filter).
pub fn plan(wanted: Option<&MemberFilter>, observed: Option<&FilterTable>, ops: &mut Vec<Op>) {
    match (wanted, observed) {
        (None, None) => {}
        (None, Some(_)) => ops.push(Op::DeleteFilter),
        (Some(want), Some(have)) if have.comment == comment(&want.ports) => {
            let add: Vec<Ipv4Addr> = want.members.difference(&have.members).copied().collect();
            let remove: Vec<Ipv4Addr> = have.members.difference(&want.members).copied().collect();
            if !add.is_empty() || !remove.is_empty() {
                ops.push(Op::SetFilterMembers { add, remove });
            }
        }
        (Some(want), _) => ops.push(Op::SetFilter {
            filter: want.clone(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(last: u8) -> Ipv4Addr {
        Ipv4Addr::new(10, 0, 0, last)
    }

    fn filter(members: &[u8]) -> MemberFilter {
        MemberFilter {
            ports: [4789, 7946].into(),
            members: members.iter().map(|&m| ip(m)).collect(),
        }
    }

    fn table(f: &MemberFilter) -> FilterTable {
        FilterTable {
            comment: comment(&f.ports),
            members: f.members.clone(),
            dropped: 0,
        }
    }

    fn planned(want: Option<&MemberFilter>, have: Option<&FilterTable>) -> Vec<Op> {
        let mut ops = Vec::new();
        plan(want, have, &mut ops);
        ops
    }

    #[test]
    fn a_missing_or_different_table_is_replaced_whole() {
        let want = filter(&[1, 2]);
        assert_eq!(
            planned(Some(&want), None),
            vec![Op::SetFilter {
                filter: want.clone()
            }]
        );
        let mut other_ports = table(&want);
        other_ports.comment = comment(&[4790, 7946].into());
        assert_eq!(
            planned(Some(&want), Some(&other_ports)),
            vec![Op::SetFilter {
                filter: want.clone()
            }]
        );
    }

    #[test]
    fn membership_changes_are_element_updates_and_nothing_when_equal() {
        let have = table(&filter(&[1, 2, 3]));
        assert_eq!(planned(Some(&filter(&[1, 2, 3])), Some(&have)), vec![]);
        assert_eq!(
            planned(Some(&filter(&[1, 3, 4])), Some(&have)),
            vec![Op::SetFilterMembers {
                add: vec![ip(4)],
                remove: vec![ip(2)],
            }]
        );
    }

    #[test]
    fn no_filter_wanted_deletes_the_table() {
        let have = table(&filter(&[1]));
        assert_eq!(planned(None, Some(&have)), vec![Op::DeleteFilter]);
        assert_eq!(planned(None, None), vec![]);
    }

    #[test]
    fn scripts_render_and_listings_parse_back() {
        let s = replace_script(&filter(&[1, 2]));
        assert!(s.contains("elements = { 10.0.0.1, 10.0.0.2 }"), "{s}");
        assert!(s.contains("udp dport { 4789, 7946 } ip saddr != @members counter drop"));
        assert!(replace_script(&filter(&[])).contains("set members { type ipv4_addr; }"));
        assert_eq!(
            members_script(&[ip(3)], &[ip(1), ip(2)]),
            "add element ip mini_filter members { 10.0.0.3 }\n\
             delete element ip mini_filter members { 10.0.0.1, 10.0.0.2 }\n"
        );
        let listing = r#"{"nftables": [{"metainfo": {"version": "1.0.6"}},
          {"table": {"family": "ip", "name": "mini_filter", "handle": 1,
                     "comment": "mini: udp ports 4789,7946 from members only"}},
          {"set": {"family": "ip", "name": "members", "table": "mini_filter", "type": "ipv4_addr",
                   "handle": 1, "elem": ["10.0.0.1", "10.0.0.2"]}},
          {"chain": {"family": "ip", "table": "mini_filter", "name": "input", "handle": 2}},
          {"rule": {"family": "ip", "table": "mini_filter", "chain": "input", "handle": 3,
                    "expr": [{"counter": {"packets": 12, "bytes": 900}}, {"drop": null}]}}]}"#;
        let parsed = parse_json(listing).unwrap();
        assert_eq!(parsed.comment, comment(&[4789, 7946].into()));
        assert_eq!(parsed.members, [ip(1), ip(2)].into());
        assert_eq!(parsed.dropped, 12);
        assert_eq!(parse_json("not json"), None);
    }
}
