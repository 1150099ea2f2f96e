//! Building blocks of whole-table loads as nf_tables messages ([`crate::nft_batch`]): tables,
//! base chains, sets and the rule expressions the driver's tables use, encoded as `nft`
//! encodes the same text (so `nft list` prints what the `*_script` renderings say).

use crate::nft_attrs::*;
use ipnet::Ipv4Net;

use crate::nft_batch::{Attrs, Batch, MsgType, NLM_F_APPEND, NLM_F_CREATE};
use crate::nft_read::table_userdata;

/// `NF_ACCEPT`, `NF_DROP`.
const NF_ACCEPT: u32 = 1;
const NF_DROP: u32 = 0;

/// Netfilter hooks (`NF_INET_*`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Hook {
    /// `prerouting`.
    Prerouting = 0,
    /// `input`.
    Input = 1,
    /// `output`.
    Output = 3,
    /// `postrouting`.
    Postrouting = 4,
}

/// Set flags (`NFT_SET_*`).
pub const SET_ANONYMOUS: u32 = 0x1;
/// `NFT_SET_CONSTANT`.
pub const SET_CONSTANT: u32 = 0x2;
/// `NFT_SET_MAP`.
pub const SET_MAP: u32 = 0x8;

/// nft's datatypes (its own numbering, stored by the kernel for nft to print).
pub const TYPE_IPADDR: u32 = 7;
/// `inet_proto`.
pub const TYPE_INET_PROTO: u32 = 12;
/// `inet_service`.
pub const TYPE_INET_SERVICE: u32 = 13;
/// `NFT_DATA_VERDICT`: a verdict map's data type.
pub const DATA_VERDICT: u32 = 0xffff_ff00;

/// `NFT_REG_VERDICT`, `NFT_REG_1`, `NFT_REG32_01` (the second 4 bytes of `NFT_REG_1`).
pub const REG_VERDICT: u32 = 0;
/// `NFT_REG_1`.
pub const REG_1: u32 = 1;
/// `NFT_REG32_01`.
pub const REG32_01: u32 = 9;

/// `NFT_PAYLOAD_NETWORK_HEADER`, `NFT_PAYLOAD_TRANSPORT_HEADER`.
pub const NETWORK: u32 = 1;
/// `NFT_PAYLOAD_TRANSPORT_HEADER`.
pub const TRANSPORT: u32 = 2;
/// `NFT_META_OIFNAME`, `NFT_META_L4PROTO`.
pub const META_OIFNAME: u32 = 7;
/// `NFT_META_L4PROTO`.
pub const META_L4PROTO: u32 = 16;
/// `NFT_CMP_EQ`, `NFT_CMP_NEQ`.
pub const CMP_EQ: u32 = 0;
/// `NFT_CMP_NEQ`.
pub const CMP_NEQ: u32 = 1;

/// nft's set user data: key (and data) byte order, 1 host, 2 big endian
/// (`NFTNL_UDATA_SET_KEYBYTEORDER`, `…_DATABYTEORDER`).
pub(crate) fn set_userdata(key: u32, data: Option<u32>) -> Vec<u8> {
    let mut out = Vec::with_capacity(12);
    for (ty, value) in std::iter::once((0u8, key)).chain(data.map(|d| (1u8, d))) {
        out.push(ty);
        out.push(4);
        out.extend_from_slice(&value.to_ne_bytes());
    }
    out
}

/// `add table ip T; delete table ip T`: removes the table whether or not it exists.
pub fn delete_table(b: &mut Batch, table: &str) {
    b.push(MsgType::NewTable, NLM_F_CREATE, |a| {
        a.str(NFTA_TABLE_NAME, table);
    });
    b.push(MsgType::DelTable, 0, |a| {
        a.str(NFTA_TABLE_NAME, table);
    });
}

/// `table ip T { comment "…" }` (the table must not exist: see [`delete_table`]).
pub fn new_table(b: &mut Batch, table: &str, comment: &str) {
    b.push(MsgType::NewTable, NLM_F_CREATE, |a| {
        a.str(NFTA_TABLE_NAME, table)
            .bytes(NFTA_TABLE_USERDATA, &table_userdata(comment));
    });
}

/// `chain C { type TYPE hook HOOK priority PRIO; policy accept; }`.
pub fn base_chain(b: &mut Batch, table: &str, chain: &str, ty: &str, hook: Hook, prio: i32) {
    b.push(MsgType::NewChain, NLM_F_CREATE, |a| {
        a.str(NFTA_CHAIN_TABLE, table)
            .str(NFTA_CHAIN_NAME, chain)
            .nested(NFTA_CHAIN_HOOK, |a| {
                a.be32(NFTA_HOOK_HOOKNUM, hook as u32)
                    .be32(NFTA_HOOK_PRIORITY, prio as u32);
            })
            .be32(NFTA_CHAIN_POLICY, NF_ACCEPT)
            .str(NFTA_CHAIN_TYPE, ty);
    });
}

/// A set (or map, with `data` = (type, length)) of keys of nft type `key_type` and `key_len`
/// bytes, big endian; returns its batch id.
pub fn new_set(
    b: &mut Batch,
    table: &str,
    name: &str,
    flags: u32,
    key: (u32, u32),
    data: Option<(u32, u32)>,
) -> u32 {
    let userdata = set_userdata(2, data.filter(|(t, _)| *t != DATA_VERDICT).map(|_| 2));
    new_set_with_userdata(b, table, name, flags, key, data, &userdata)
}

/// [`new_set`] with nft's user data given (a `typeof` declaration, another byte order).
pub fn new_set_with_userdata(
    b: &mut Batch,
    table: &str,
    name: &str,
    flags: u32,
    (key_type, key_len): (u32, u32),
    data: Option<(u32, u32)>,
    userdata: &[u8],
) -> u32 {
    let id = b.set_id();
    b.push(MsgType::NewSet, NLM_F_CREATE, |a| {
        a.str(NFTA_SET_TABLE, table)
            .str(NFTA_SET_NAME, name)
            .be32(NFTA_SET_FLAGS, flags)
            .be32(NFTA_SET_KEY_TYPE, key_type)
            .be32(NFTA_SET_KEY_LEN, key_len);
        if let Some((ty, len)) = data {
            a.be32(NFTA_SET_DATA_TYPE, ty).be32(NFTA_SET_DATA_LEN, len);
        }
        a.be32(NFTA_SET_ID, id).bytes(NFTA_SET_USERDATA, userdata);
    });
    id
}

/// Adds (`add`) or deletes the keys `keys` of set `set` (`id`: its batch id when the set is
/// created in the same batch).
pub fn set_keys(b: &mut Batch, table: &str, set: &str, id: Option<u32>, keys: &[&[u8]], add: bool) {
    if keys.is_empty() {
        return;
    }
    let (ty, flags) = if add {
        (MsgType::NewSetElem, NLM_F_CREATE)
    } else {
        (MsgType::DelSetElem, 0)
    };
    b.push(ty, flags, |a| {
        a.str(NFTA_SET_ELEM_LIST_TABLE, table)
            .str(NFTA_SET_ELEM_LIST_SET, set);
        if let Some(id) = id {
            a.be32(NFTA_SET_ELEM_LIST_SET_ID, id);
        }
        a.nested(NFTA_SET_ELEM_LIST_ELEMENTS, |a| {
            for k in keys {
                a.nested(NFTA_LIST_ELEM, |a| {
                    a.nested(NFTA_SET_ELEM_KEY, |a| {
                        a.bytes(NFTA_DATA_VALUE, k);
                    });
                });
            }
        });
    });
}

/// Appends a rule to `chain`; `exprs` writes its expressions.
pub fn rule(b: &mut Batch, table: &str, chain: &str, exprs: impl FnOnce(&mut Exprs<'_, '_>)) {
    b.push(MsgType::NewRule, NLM_F_CREATE | NLM_F_APPEND, |a| {
        a.str(NFTA_RULE_TABLE, table)
            .str(NFTA_RULE_CHAIN, chain)
            .nested(NFTA_RULE_EXPRESSIONS, |a| exprs(&mut Exprs { a }));
    });
}

/// Writes the expressions of one rule.
#[derive(Debug)]
pub struct Exprs<'a, 'b> {
    a: &'a mut Attrs<'b>,
}

impl Exprs<'_, '_> {
    /// One expression: `NFTA_LIST_ELEM { NFTA_EXPR_NAME, NFTA_EXPR_DATA { … } }`.
    pub fn expr(&mut self, name: &str, data: impl FnOnce(&mut Attrs<'_>)) -> &mut Self {
        self.a.nested(NFTA_LIST_ELEM, |a| {
            a.str(NFTA_EXPR_NAME, name).nested(NFTA_EXPR_DATA, data);
        });
        self
    }

    /// `payload load LEN @ BASE + OFFSET => REG`.
    pub fn payload(&mut self, base: u32, offset: u32, len: u32, reg: u32) -> &mut Self {
        self.expr("payload", |a| {
            a.be32(1, reg).be32(2, base).be32(3, offset).be32(4, len);
        })
    }

    /// `meta load KEY => REG`.
    pub fn meta(&mut self, key: u32, reg: u32) -> &mut Self {
        self.expr("meta", |a| {
            a.be32(2, key).be32(1, reg);
        })
    }

    /// `cmp OP REG DATA`.
    pub fn cmp(&mut self, op: u32, reg: u32, data: &[u8]) -> &mut Self {
        self.expr("cmp", |a| {
            a.be32(1, reg).be32(2, op).nested(3, |a| {
                a.bytes(NFTA_DATA_VALUE, data);
            });
        })
    }

    /// `bitwise REG = (REG & MASK) ^ 0`.
    pub fn and(&mut self, reg: u32, mask: &[u8]) -> &mut Self {
        let zero = vec![0u8; mask.len()];
        self.expr("bitwise", |a| {
            a.be32(1, reg)
                .be32(2, reg)
                .be32(3, mask.len() as u32)
                .nested(4, |a| {
                    a.bytes(NFTA_DATA_VALUE, mask);
                })
                .nested(5, |a| {
                    a.bytes(NFTA_DATA_VALUE, &zero);
                });
        })
    }

    /// The address in the IPv4 header at `offset` (12 source, 16 destination) compared with
    /// `net` (`op`: [`CMP_EQ`] or [`CMP_NEQ`]), as nft writes `ip saddr 10.0.0.0/8`: whole
    /// bytes of a byte-aligned prefix, else the address masked.
    pub fn ip_prefix(&mut self, offset: u32, net: Ipv4Net, op: u32) -> &mut Self {
        let bits = u32::from(net.prefix_len());
        let addr = net.network().octets();
        if bits == 0 {
            // Every address: nothing to compare (nft writes nothing for 0.0.0.0/0 either).
            self
        } else if bits % 8 == 0 {
            let n = bits / 8;
            self.payload(NETWORK, offset, n, REG_1)
                .cmp(op, REG_1, &addr[..n as usize])
        } else {
            self.payload(NETWORK, offset, 4, REG_1)
                .and(REG_1, &net.netmask().octets())
                .cmp(op, REG_1, &addr)
        }
    }

    /// `lookup REG set NAME [dreg DREG] [flags]` (`dreg` `Some(0)`: a verdict map).
    pub fn lookup(&mut self, reg: u32, set: &str, dreg: Option<u32>, invert: bool) -> &mut Self {
        self.expr("lookup", |a| {
            a.be32(2, reg);
            if let Some(d) = dreg {
                a.be32(3, d);
            }
            a.str(1, set);
            if invert {
                // NFT_LOOKUP_F_INV
                a.be32(5, 1);
            }
        })
    }

    /// `lookup REG set NAME` of a set created in the same batch with id `id`.
    pub fn lookup_id(&mut self, reg: u32, set: &str, id: u32) -> &mut Self {
        self.expr("lookup", |a| {
            a.be32(2, reg).str(1, set).be32(4, id);
        })
    }

    /// `counter`.
    pub fn counter(&mut self) -> &mut Self {
        self.expr("counter", |a| {
            a.bytes(1, &0u64.to_be_bytes())
                .bytes(2, &0u64.to_be_bytes());
        })
    }

    /// `drop`.
    pub fn drop_verdict(&mut self) -> &mut Self {
        self.expr("immediate", |a| {
            a.be32(1, REG_VERDICT).nested(2, |a| {
                a.nested(NFTA_DATA_VERDICT, |a| {
                    a.be32(NFTA_VERDICT_CODE, NF_DROP);
                });
            });
        })
    }

    /// `reject with tcp reset` (`tcp`) or `reject` (ICMP port unreachable).
    pub fn reject(&mut self, tcp: bool) -> &mut Self {
        self.expr("reject", |a| {
            if tcp {
                // NFT_REJECT_TCP_RST
                a.be32(1, 1);
            } else {
                // NFT_REJECT_ICMP_UNREACH, ICMP_PORT_UNREACH
                a.be32(1, 0).bytes(2, &[3]);
            }
        })
    }

    /// `ct status dnat` (non-zero `ct status & dnat`).
    pub fn ct_status_dnat(&mut self) -> &mut Self {
        // NFTA_CT_DREG, NFTA_CT_KEY = NFT_CT_STATUS; IPS_DST_NAT, host byte order.
        self.expr("ct", |a| {
            a.be32(1, REG_1).be32(2, 2);
        })
        .and(REG_1, &0x20u32.to_ne_bytes())
        .cmp(CMP_NEQ, REG_1, &[0; 4])
    }

    /// `fib daddr type local`.
    pub fn fib_daddr_local(&mut self) -> &mut Self {
        // NFTA_FIB_DREG, NFTA_FIB_RESULT = NFT_FIB_RESULT_ADDRTYPE, NFTA_FIB_FLAGS =
        // NFTA_FIB_F_DADDR; RTN_LOCAL, host byte order.
        self.expr("fib", |a| {
            a.be32(1, REG_1).be32(2, 3).be32(3, 2);
        })
        .cmp(CMP_EQ, REG_1, &2u32.to_ne_bytes())
    }

    /// `masquerade`.
    pub fn masquerade(&mut self) -> &mut Self {
        self.expr("masq", |_| {})
    }
}
