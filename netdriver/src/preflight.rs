//! What the driver needs from the kernel, tried for real: each feature creates a throwaway
//! object inside a temporary network namespace (a thread's own, gone when the thread ends), so
//! a module that is built in, loaded, or loadable on demand all count as present.

use std::io;

use rtnetlink::{LinkBridge, LinkVeth, LinkVxlan};

use crate::nft_batch::{Batch, NftSocket};
use crate::nft_expr::{self as x, Hook};

/// A kernel feature the driver uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Feature {
    /// VXLAN devices (overlay networks).
    Vxlan,
    /// Bridges (overlay namespaces, the gateway bridge).
    Bridge,
    /// veth pairs (every sandbox interface).
    Veth,
    /// nf_tables with NAT (VIPs, the routing mesh, egress masquerade, the members filter).
    NfTables,
}

impl Feature {
    /// Every feature, in report order.
    pub const ALL: [Feature; 4] = [
        Feature::Vxlan,
        Feature::Bridge,
        Feature::Veth,
        Feature::NfTables,
    ];
}

/// Tries `features` in a temporary network namespace; the error of each one that failed.
pub fn probe(features: &[Feature]) -> Vec<(Feature, Result<(), String>)> {
    let features = features.to_vec();
    let fallback = features.clone();
    std::thread::spawn(move || -> Result<_, String> {
        nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNET)
            .map_err(|e| format!("cannot create a network namespace: {e}"))?;
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| e.to_string())?;
        Ok(rt.block_on(async move {
            let h = match rtnetlink::new_connection() {
                Ok((conn, h, _)) => {
                    tokio::spawn(conn);
                    Some(h)
                }
                Err(_) => None,
            };
            let mut out = Vec::new();
            for f in features {
                let r = match (f, &h) {
                    (Feature::NfTables, _) => nf_tables().map_err(|e| e.to_string()),
                    (_, None) => Err("no rtnetlink socket".to_string()),
                    (Feature::Vxlan, Some(h)) => h
                        .link()
                        .add(LinkVxlan::new("mchk_vx", 42).port(4789).build())
                        .execute()
                        .await
                        .map_err(|e| e.to_string()),
                    (Feature::Bridge, Some(h)) => h
                        .link()
                        .add(LinkBridge::new("mchk_br").build())
                        .execute()
                        .await
                        .map_err(|e| e.to_string()),
                    (Feature::Veth, Some(h)) => h
                        .link()
                        .add(LinkVeth::new("mchk_a", "mchk_b").build())
                        .execute()
                        .await
                        .map_err(|e| e.to_string()),
                };
                out.push((f, r));
            }
            out
        }))
    })
    .join()
    .unwrap_or_else(|_| Err("the probe thread panicked".to_string()))
    .unwrap_or_else(|e| fallback.into_iter().map(|f| (f, Err(e.clone()))).collect())
}

/// A table with a NAT base chain and a masquerade rule: nf_tables, its NAT chain type and
/// the expressions the driver's tables use most.
fn nf_tables() -> io::Result<()> {
    let mut b = Batch::new(2);
    x::new_table(&mut b, "mini_check", "mini: daemon --check");
    x::base_chain(&mut b, "mini_check", "post", "nat", Hook::Postrouting, 100);
    x::rule(&mut b, "mini_check", "post", |r| {
        r.ct_status_dnat().masquerade();
    });
    NftSocket::open()?.send(&b)
}
