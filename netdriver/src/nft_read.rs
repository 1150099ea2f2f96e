//! Reading an nf_tables table back over netlink (what `nft -j list table` shows, without
//! running `nft`): the table's comment, its chains, rules (with their expressions), sets and
//! set elements, each dumped with a `GET` request on an [`NftSocket`] of the table's namespace.
//!
//! Decoding stops at the attributes: what they mean is decided by the table's owner
//! ([`crate::lb::from_dump`], [`crate::filter::from_dump`], [`crate::nat`]).

use crate::nft_attrs::*;
use std::io;

use crate::nft_batch::{Attrs, GetType, NftSocket};

/// `NFTNL_UDATA_TABLE_COMMENT`: the TLV of a table's user data that holds its comment.
const UDATA_TABLE_COMMENT: u8 = 0;

/// The attributes of a message or of a nested attribute: (type without flags, value).
pub fn attrs(mut data: &[u8]) -> impl Iterator<Item = (u16, &[u8])> {
    std::iter::from_fn(move || {
        if data.len() < 4 {
            return None;
        }
        let len = usize::from(u16::from_ne_bytes([data[0], data[1]]));
        let ty = u16::from_ne_bytes([data[2], data[3]]) & 0x3fff;
        if len < 4 || len > data.len() {
            return None;
        }
        let value = &data[4..len];
        data = &data[((len + 3) & !3).min(data.len())..];
        Some((ty, value))
    })
}

/// The value of the first attribute of type `ty`.
pub fn attr(data: &[u8], ty: u16) -> Option<&[u8]> {
    attrs(data).find(|(t, _)| *t == ty).map(|(_, v)| v)
}

/// A NUL-terminated string attribute.
pub fn str_attr(data: &[u8], ty: u16) -> Option<String> {
    let v = attr(data, ty)?;
    let v = v.split(|b| *b == 0).next().unwrap_or(v);
    Some(String::from_utf8_lossy(v).into_owned())
}

/// A big-endian 32-bit attribute.
pub fn be32_attr(data: &[u8], ty: u16) -> Option<u32> {
    Some(u32::from_be_bytes(attr(data, ty)?.try_into().ok()?))
}

/// A big-endian 64-bit attribute.
pub fn be64_attr(data: &[u8], ty: u16) -> Option<u64> {
    Some(u64::from_be_bytes(attr(data, ty)?.try_into().ok()?))
}

/// The bytes of an `NFTA_DATA_VALUE` nested in attribute `ty`.
pub fn value_attr(data: &[u8], ty: u16) -> Option<&[u8]> {
    attr(attr(data, ty)?, NFTA_DATA_VALUE)
}

/// The user data of a table whose comment is `comment` (nft's TLV, so `nft list` shows it).
pub fn table_userdata(comment: &str) -> Vec<u8> {
    let mut v = Vec::with_capacity(comment.len() + 3);
    v.push(UDATA_TABLE_COMMENT);
    // A comment is at most 128 bytes (nft's limit), so its length fits.
    v.push(u8::try_from(comment.len() + 1).unwrap_or(u8::MAX));
    v.extend_from_slice(comment.as_bytes());
    v.push(0);
    v
}

/// The comment in a table's user data.
fn userdata_comment(mut data: &[u8]) -> Option<String> {
    while data.len() >= 2 {
        let (ty, len) = (data[0], usize::from(data[1]));
        let value = data.get(2..2 + len)?;
        if ty == UDATA_TABLE_COMMENT {
            let s = value.split(|b| *b == 0).next().unwrap_or(value);
            return Some(String::from_utf8_lossy(s).into_owned());
        }
        data = &data[2 + len..];
    }
    None
}

/// One expression of a rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Expr {
    /// `meta`, `cmp`, `lookup`, `nat`, …
    pub name: String,
    /// The attributes inside `NFTA_EXPR_DATA`, still encoded (read them with [`attr`] etc.).
    pub data: Vec<u8>,
}

impl Expr {
    /// A big-endian 32-bit attribute of the expression.
    pub fn be32(&self, ty: u16) -> Option<u32> {
        be32_attr(&self.data, ty)
    }
}

/// One rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rule {
    /// The chain it is in.
    pub chain: String,
    /// Its expressions, in order.
    pub exprs: Vec<Expr>,
}

/// One chain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Chain {
    /// Its name.
    pub name: String,
    /// True for a base chain (attached to a hook).
    pub base: bool,
}

/// What a set element maps to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ElemData {
    /// A value (`NFTA_DATA_VALUE`).
    Value(Vec<u8>),
    /// A verdict: its code (`NFT_GOTO` = -4, `NFT_JUMP` = -3, …) and chain.
    Verdict(i32, Option<String>),
}

/// One set element.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Elem {
    /// The key's bytes as the kernel stores them.
    pub key: Vec<u8>,
    /// What it maps to (maps only).
    pub data: Option<ElemData>,
}

/// One set (or map), named or anonymous, with its elements.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Set {
    /// Its name (`__map…`, `__set…` for anonymous ones).
    pub name: String,
    /// `NFTA_SET_FLAGS` (`NFT_SET_ANONYMOUS` = 1, `NFT_SET_MAP` = 8, …).
    pub flags: u32,
    /// `NFTA_SET_KEY_TYPE` and `NFTA_SET_KEY_LEN`: nft's datatype of a key, its bytes.
    pub key: (u32, u32),
    /// `NFTA_SET_DATA_TYPE` and `NFTA_SET_DATA_LEN`: the same of a map's data (0 for a
    /// plain set).
    pub data: (u32, u32),
    /// Its elements.
    pub elems: Vec<Elem>,
}

/// A whole table as read from the kernel.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TableDump {
    /// The table's comment, if it has one.
    pub comment: Option<String>,
    /// Its chains.
    pub chains: Vec<Chain>,
    /// Its rules, in chain order.
    pub rules: Vec<Rule>,
    /// Its sets.
    pub sets: Vec<Set>,
}

impl TableDump {
    /// The set named `name`.
    pub fn set(&self, name: &str) -> Option<&Set> {
        self.sets.iter().find(|s| s.name == name)
    }

    /// The rules of chain `chain`.
    pub fn rules_of<'a>(&'a self, chain: &'a str) -> impl Iterator<Item = &'a Rule> + 'a {
        self.rules.iter().filter(move |r| r.chain == chain)
    }
}

/// What to read of a table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Depth {
    /// The table's comment only.
    Comment,
    /// Everything.
    All,
}

/// Reads table `name` of `family` (`NFPROTO_IPV4` = 2) through `socket`; `None` when there is
/// no such table. A table changed while it is read may come back inconsistent; the next
/// observation sees it settled.
pub fn read_table(
    socket: &NftSocket,
    family: u8,
    name: &str,
    depth: Depth,
) -> io::Result<Option<TableDump>> {
    let Some(tables) = socket.dump(GetType::Table, family, false, |a| {
        a.str(NFTA_TABLE_NAME, name);
    })?
    else {
        return Ok(None);
    };
    let mut dump = TableDump {
        comment: tables
            .first()
            .and_then(|t| attr(t, NFTA_TABLE_USERDATA))
            .and_then(userdata_comment),
        ..TableDump::default()
    };
    if depth == Depth::Comment {
        return Ok(Some(dump));
    }
    // Chains cannot be dumped per table: every chain of the family comes, filtered here.
    let on_table = |a: &mut Attrs<'_>| {
        a.str(NFTA_CHAIN_TABLE, name);
    };
    for c in socket
        .dump(GetType::Chain, family, true, on_table)?
        .unwrap_or_default()
    {
        if str_attr(&c, NFTA_CHAIN_TABLE).as_deref() != Some(name) {
            continue;
        }
        dump.chains.push(Chain {
            name: str_attr(&c, NFTA_CHAIN_NAME).unwrap_or_default(),
            base: attr(&c, NFTA_CHAIN_HOOK).is_some(),
        });
    }
    for r in socket
        .dump(GetType::Rule, family, true, |a| {
            a.str(NFTA_RULE_TABLE, name);
        })?
        .unwrap_or_default()
    {
        let exprs = attr(&r, NFTA_RULE_EXPRESSIONS)
            .map(|list| {
                attrs(list)
                    .filter(|(t, _)| *t == NFTA_LIST_ELEM)
                    .map(|(_, e)| Expr {
                        name: str_attr(e, NFTA_EXPR_NAME).unwrap_or_default(),
                        data: attr(e, NFTA_EXPR_DATA).unwrap_or_default().to_vec(),
                    })
                    .collect()
            })
            .unwrap_or_default();
        dump.rules.push(Rule {
            chain: str_attr(&r, NFTA_RULE_CHAIN).unwrap_or_default(),
            exprs,
        });
    }
    for s in socket
        .dump(GetType::Set, family, true, |a| {
            a.str(NFTA_SET_TABLE, name);
        })?
        .unwrap_or_default()
    {
        let set_name = str_attr(&s, NFTA_SET_NAME).unwrap_or_default();
        let mut elems = Vec::new();
        for m in socket
            .dump(GetType::SetElem, family, true, |a| {
                a.str(NFTA_SET_ELEM_LIST_TABLE, name)
                    .str(NFTA_SET_ELEM_LIST_SET, &set_name);
            })?
            .unwrap_or_default()
        {
            let Some(list) = attr(&m, NFTA_SET_ELEM_LIST_ELEMENTS) else {
                continue;
            };
            for (_, e) in attrs(list).filter(|(t, _)| *t == NFTA_LIST_ELEM) {
                elems.push(parse_elem(e));
            }
        }
        dump.sets.push(Set {
            name: set_name,
            flags: be32_attr(&s, NFTA_SET_FLAGS).unwrap_or(0),
            key: (
                be32_attr(&s, NFTA_SET_KEY_TYPE).unwrap_or(0),
                be32_attr(&s, NFTA_SET_KEY_LEN).unwrap_or(0),
            ),
            data: (
                be32_attr(&s, NFTA_SET_DATA_TYPE).unwrap_or(0),
                be32_attr(&s, NFTA_SET_DATA_LEN).unwrap_or(0),
            ),
            elems,
        });
    }
    Ok(Some(dump))
}

fn parse_elem(e: &[u8]) -> Elem {
    let key = value_attr(e, NFTA_SET_ELEM_KEY)
        .unwrap_or_default()
        .to_vec();
    let data = attr(e, NFTA_SET_ELEM_DATA).map(|d| {
        if let Some(v) = attr(d, NFTA_DATA_VERDICT) {
            ElemData::Verdict(
                be32_attr(v, NFTA_VERDICT_CODE).unwrap_or(0) as i32,
                str_attr(v, NFTA_VERDICT_CHAIN),
            )
        } else {
            ElemData::Value(attr(d, NFTA_DATA_VALUE).unwrap_or_default().to_vec())
        }
    });
    Elem { key, data }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn attributes_parse_back_nested_and_padded() {
        let mut buf = Vec::new();
        let mut a = Attrs::new(&mut buf);
        a.str(5, "mini_lb").be32(3, 8).nested(2, |a| {
            a.nested(NFTA_DATA_VERDICT, |a| {
                a.be32(NFTA_VERDICT_CODE, -4i32 as u32)
                    .str(NFTA_VERDICT_CHAIN, "vip_10_0_0_2");
            });
        });
        a.nested(NFTA_SET_ELEM_KEY, |a| {
            a.bytes(NFTA_DATA_VALUE, &[10, 0, 0, 2]);
        });
        assert_eq!(str_attr(&buf, 5).as_deref(), Some("mini_lb"));
        assert_eq!(be32_attr(&buf, 3), Some(8));
        assert_eq!(
            parse_elem(&buf),
            Elem {
                key: vec![10, 0, 0, 2],
                data: Some(ElemData::Verdict(-4, Some("vip_10_0_0_2".into()))),
            }
        );
        assert_eq!(attr(&buf, 9), None);
        assert_eq!(
            attrs(&buf[..3]).count(),
            0,
            "a truncated attribute is ignored"
        );
    }

    #[test]
    fn table_comments_round_trip_through_user_data() {
        let ud = table_userdata("mini: vip load balancing");
        assert_eq!(
            userdata_comment(&ud).as_deref(),
            Some("mini: vip load balancing")
        );
        assert_eq!(userdata_comment(&[]), None);
        assert_eq!(userdata_comment(&[0, 9, 1]), None, "truncated");
    }
}
