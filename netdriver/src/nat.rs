//! The nftables ruleset of the gateway bridge: loaded as one nf_tables netlink batch
//! ([`replace_batch`]), also rendered as the equivalent `nft -f` text ([`replace_script`], what
//! to type by hand and what the batch is tested against).
//!
//! One table per driver, `table ip <bridge name>`, owned entirely by mini: masquerade of the
//! gateway subnet leaving through any other interface. Sandbox-to-sandbox traffic across the
//! bridge is blocked by bridge port isolation (set on every port), not by rules, so it holds
//! without `br_netfilter`.

use ipnet::Ipv4Net;

use crate::nft_batch::Batch;
use crate::nft_expr::{self as x, CMP_EQ, CMP_NEQ, Hook, META_OIFNAME, REG_1};

/// `NFPROTO_IPV4`: `table ip`.
const NFPROTO_IPV4: u8 = 2;

/// The table's comment: it records the parameters so that observation can tell whether the
/// table in the kernel is the one the configuration wants.
pub fn comment(name: &str, subnet: Ipv4Net) -> String {
    format!("mini: masquerade {subnet} leaving {name}")
}

/// A batch that atomically replaces the table (one `nft` batch is one transaction).
pub fn replace_script(name: &str, subnet: Ipv4Net) -> String {
    let comment = comment(name, subnet);
    format!(
        "add table ip {name}\n\
         delete table ip {name}\n\
         table ip {name} {{\n\
         \tcomment \"{comment}\"\n\
         \tchain postrouting {{\n\
         \t\ttype nat hook postrouting priority srcnat; policy accept;\n\
         \t\tip saddr {subnet} oifname != \"{name}\" masquerade\n\
         \t}}\n\
         }}\n"
    )
}

/// The transaction that atomically replaces the table (what [`replace_script`] makes `nft`
/// send).
pub fn replace_batch(name: &str, subnet: Ipv4Net) -> Batch {
    let mut b = Batch::new(NFPROTO_IPV4);
    x::delete_table(&mut b, name);
    x::new_table(&mut b, name, &comment(name, subnet));
    x::base_chain(&mut b, name, "postrouting", "nat", Hook::Postrouting, 100);
    let mut ifname = [0u8; 16];
    let n = name.len().min(15);
    ifname[..n].copy_from_slice(&name.as_bytes()[..n]);
    x::rule(&mut b, name, "postrouting", |r| {
        r.ip_prefix(12, subnet, CMP_EQ)
            .meta(META_OIFNAME, REG_1)
            .cmp(CMP_NEQ, REG_1, &ifname)
            .masquerade();
    });
    b
}

/// The transaction that deletes the table if it exists.
pub fn delete_batch(name: &str) -> Batch {
    let mut b = Batch::new(NFPROTO_IPV4);
    x::delete_table(&mut b, name);
    b
}

/// A batch that deletes the table if it exists.
pub fn delete_script(name: &str) -> String {
    format!("add table ip {name}\ndelete table ip {name}\n")
}

/// Extracts the comment from `nft list table` output.
pub fn parse_comment(listing: &str) -> Option<String> {
    listing.lines().find_map(|l| {
        let rest = l.trim().strip_prefix("comment \"")?;
        Some(rest.strip_suffix('"').unwrap_or(rest).to_string())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn script_carries_comment_that_parses_back() {
        let subnet: Ipv4Net = "172.18.0.0/16".parse().unwrap();
        let s = replace_script("mini_gwbridge", subnet);
        assert!(s.contains("oifname != \"mini_gwbridge\" masquerade"));
        let listing = "table ip mini_gwbridge {\n\tcomment \"mini: masquerade 172.18.0.0/16 leaving mini_gwbridge\"\n}";
        assert_eq!(
            parse_comment(listing).as_deref(),
            Some(comment("mini_gwbridge", subnet).as_str())
        );
    }
}
