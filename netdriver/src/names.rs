//! Names and fixed settings of every kernel object the driver owns (DESIGN.md's data-plane table).

/// MTU of overlay interfaces (`br0`, `vxlan0`, overlay veths): 1500 minus VXLAN's 50 bytes.
pub const OVERLAY_MTU: u32 = 1450;
/// MTU of the gateway bridge and the sandbox interfaces on it.
pub const GATEWAY_MTU: u32 = 1500;
/// Bridge of an overlay namespace.
pub const BRIDGE: &str = "br0";
/// VXLAN device of an overlay namespace.
pub const VXLAN: &str = "vxlan0";
/// Loopback.
pub const LOOPBACK: &str = "lo";
/// Prefix of the host ends of gateway veths, in the host namespace (`mgw<task id, 12 chars>`).
pub const GATEWAY_PORT_PREFIX: &str = "mgw";
/// Prefix of the host ends of overlay veths, in an overlay namespace (`veth<task id, 11 chars>`).
pub const OVERLAY_PORT_PREFIX: &str = "veth";
/// Link group of every link the driver creates ("mini" in ASCII): a namespace's links are
/// deleted in one batched `RTM_DELLINK` (one RCU grace period instead of one per link), and
/// `ip link show group 1835626089` lists them.
pub const LINK_GROUP: u32 = 0x6d69_6e69;
/// Prefix of overlay namespace names (Docker's `1-`).
pub const OVERLAY_NS_PREFIX: &str = "1-";

fn prefix(s: &str, n: usize) -> &str {
    match s.char_indices().nth(n) {
        Some((i, _)) => &s[..i],
        None => s,
    }
}

/// Namespace file name of an overlay network: `1-<network id, first 10 chars>`.
pub fn overlay_ns(network_id: &str) -> String {
    format!("{OVERLAY_NS_PREFIX}{}", prefix(network_id, 10))
}

/// Namespace file name of a task sandbox: the task id's first 12 characters.
pub fn sandbox_ns(task_id: &str) -> String {
    prefix(task_id, 12).to_string()
}

/// True when a namespace file name is an overlay namespace's.
pub fn is_overlay_ns(name: &str) -> bool {
    name.starts_with(OVERLAY_NS_PREFIX)
}

/// Host end (in the overlay namespace) of a sandbox's veth on that overlay.
pub fn overlay_port(sandbox_ns: &str) -> String {
    format!("{OVERLAY_PORT_PREFIX}{}", prefix(sandbox_ns, 11))
}

/// Host end (in the host namespace) of a sandbox's veth on the gateway bridge.
pub fn gateway_port(sandbox_ns: &str) -> String {
    format!("{GATEWAY_PORT_PREFIX}{}", prefix(sandbox_ns, 12))
}

/// Interface name inside a sandbox: `eth<index>`.
pub fn sandbox_if(index: usize) -> String {
    format!("eth{index}")
}

/// True for ids that are safe as file and interface names: ASCII letters, digits, `_`, `-`, `.`,
/// not starting with `.`.
pub fn is_safe_id(id: &str) -> bool {
    !id.is_empty()
        && !id.starts_with('.')
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-' || c == '.')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_docker() {
        assert_eq!(overlay_ns("jv8c30bcmnza0123"), "1-jv8c30bcmn");
        assert_eq!(sandbox_ns("zazcrztrp8noilfyignita3tf"), "zazcrztrp8no");
        assert_eq!(sandbox_ns("ingress_sbox"), "ingress_sbox");
        assert_eq!(overlay_port("zazcrztrp8no"), "vethzazcrztrp8n");
        assert_eq!(gateway_port("zazcrztrp8no"), "mgwzazcrztrp8no");
        assert!(gateway_port("zazcrztrp8no").len() <= 15);
        assert!(overlay_port("zazcrztrp8no").len() <= 15);
        assert!(is_safe_id("abc-1_2.x"));
        assert!(!is_safe_id("../etc"));
        assert!(!is_safe_id(""));
    }
}
