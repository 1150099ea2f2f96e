//! Kernel networking of a mini node, built the way Docker's overlay driver builds it, but
//! declarative and leak-free.
//!
//! The worker hands a [`NetDriver`] the node's [`DesiredState`] (overlay networks with their
//! remote peers, task sandboxes with their attachments) and calls [`NetDriver::apply`]; the
//! driver compares it with what the kernel holds and executes only the differences. The objects
//! and their names follow DESIGN.md's data-plane table:
//!
//! | object | where | name |
//! |---|---|---|
//! | overlay namespace | `RUN/netns/1-<network id, 10 chars>` | `br0` (gateway IP, MTU 1450) + `vxlan0` (VNI, port, local VTEP, `proxy l2miss l3miss`, no learning, MTU 1450) |
//! | sandbox | `RUN/netns/<task id, 12 chars>` | `eth0…` on overlays (MTU 1450, MAC `02:42:<ip>`), last `ethN` on the gateway bridge (MTU 1500) with the default route |
//! | gateway bridge | host namespace | `mini_gwbridge` (172.18.0.1/16), isolated ports `mgw<task>`, `table ip mini_gwbridge` masquerading egress |
//! | peers | overlay namespace | `neigh <ip> lladdr <mac> dev vxlan0 nud permanent`, `fdb <mac> dev vxlan0 dst <vtep> self permanent` |
//! | service VIPs | each task sandbox on the VIP's network | `table ip mini_lb`: `ip daddr vmap @vips` → `dnat to numgen inc mod N map {…}`, or reject when no backend |
//! | ingress | `RUN/netns/ingress_sbox` (on `ingress` and `mini_gwbridge`) | `table ip mini_lb`: `l4proto . dport` → backends' ingress IPs at the target port, masquerade |
//! | published ports | host namespace | `table ip mini_lb`: `PUBLISHED` on local addresses → `ingress_sbox`'s gateway-bridge address |
//! | members-only filter | host namespace | `table ip mini_filter`: UDP to the gossip and data-path ports dropped unless from a member |
//!
//! # Layout
//!
//! - [`model`] — the desired state and the configuration (pure data).
//! - [`service`] — the desired load balancing: service VIPs, ingress, published ports.
//! - [`lb`] — the `mini_lb` nftables table that balances them, and where it lives (read its
//!   docs for why VIPs are balanced in each task sandbox).
//! - [`names`] — names and fixed settings of every object the driver owns.
//! - [`observed`] — what the kernel holds, as the planner sees it.
//! - [`op`] — the operations the planner emits and the kernel executes.
//! - [`plan`] — desired + observed → operations (pure).
//! - [`kernel`] — the [`Kernel`] trait, the narrow boundary to the OS.
//! - [`fake`] — [`FakeKernel`], an in-memory kernel that records and counts operations.
//! - [`linux`] — [`LinuxKernel`], the real one (rtnetlink, nf_tables netlink).
//! - [`netns`] — namespace files without forking (create, enter on a thread, remove).
//! - [`nat`] — the nftables ruleset of the gateway bridge.
//! - [`filter`] — the members-only filter of the gossip and data-path ports (host namespace).
//! - [`nft_batch`] — nf_tables transactions and dumps over netlink (the driver never runs `nft`).
//! - [`nft_expr`] — tables, chains, sets and rule expressions of whole-table loads.
//! - [`nft_read`] — a table read back over netlink (chains, rules, sets, elements).
//! - [`preflight`] — the kernel features the driver needs, tried in a throwaway namespace.
//! - [`driver`] — [`NetDriver`], which ties planning and a kernel together.
//! - [`error`] — [`Error`].

pub mod driver;
pub mod error;
pub mod fake;
pub mod filter;
pub mod kernel;
pub mod lb;
pub mod linux;
pub mod metrics;
pub mod model;
pub mod names;
pub mod nat;
pub mod netns;
mod nft_attrs;
pub mod nft_batch;
pub mod nft_expr;
pub mod nft_read;
pub mod observed;
pub mod op;
pub mod plan;
pub mod preflight;
pub mod service;

pub use driver::{ApplyReport, NetDriver, ObservedNetwork};
pub use error::Error;
pub use fake::FakeKernel;
pub use filter::MemberFilter;
pub use kernel::{Counters, Kernel};
pub use linux::LinuxKernel;
pub use metrics::Metrics;
pub use model::{
    Attachment, DesiredState, DriverConfig, GatewayBridgeConfig, MacAddr, OverlayNetwork, Peer,
    Sandbox,
};
pub use observed::{NsState, Observed};
pub use op::{NsRef, Op};
pub use service::{Ingress, LoadBalancing, Protocol, PublishedPort, ServiceLb};
