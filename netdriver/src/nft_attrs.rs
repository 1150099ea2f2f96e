//! nf_tables netlink attribute numbers, from `<linux/netfilter/nf_tables.h>`: one table for the
//! encoder ([`crate::nft_expr`], [`crate::lb::netlink`]) and the reader ([`crate::nft_read`]).

/// `NFTA_CHAIN_HOOK`.
pub(crate) const NFTA_CHAIN_HOOK: u16 = 4;
/// `NFTA_CHAIN_NAME`.
pub(crate) const NFTA_CHAIN_NAME: u16 = 3;
/// `NFTA_CHAIN_POLICY`.
pub(crate) const NFTA_CHAIN_POLICY: u16 = 5;
/// `NFTA_CHAIN_TABLE`.
pub(crate) const NFTA_CHAIN_TABLE: u16 = 1;
/// `NFTA_CHAIN_TYPE`.
pub(crate) const NFTA_CHAIN_TYPE: u16 = 7;
/// `NFTA_DATA_VALUE`.
pub(crate) const NFTA_DATA_VALUE: u16 = 1;
/// `NFTA_DATA_VERDICT`.
pub(crate) const NFTA_DATA_VERDICT: u16 = 2;
/// `NFTA_EXPR_DATA`.
pub(crate) const NFTA_EXPR_DATA: u16 = 2;
/// `NFTA_EXPR_NAME`.
pub(crate) const NFTA_EXPR_NAME: u16 = 1;
/// `NFTA_HOOK_HOOKNUM`.
pub(crate) const NFTA_HOOK_HOOKNUM: u16 = 1;
/// `NFTA_HOOK_PRIORITY`.
pub(crate) const NFTA_HOOK_PRIORITY: u16 = 2;
/// `NFTA_LIST_ELEM`.
pub(crate) const NFTA_LIST_ELEM: u16 = 1;
/// `NFTA_RULE_CHAIN`.
pub(crate) const NFTA_RULE_CHAIN: u16 = 2;
/// `NFTA_RULE_EXPRESSIONS`.
pub(crate) const NFTA_RULE_EXPRESSIONS: u16 = 4;
/// `NFTA_RULE_TABLE`.
pub(crate) const NFTA_RULE_TABLE: u16 = 1;
/// `NFTA_SET_DATA_LEN`.
pub(crate) const NFTA_SET_DATA_LEN: u16 = 7;
/// `NFTA_SET_DATA_TYPE`.
pub(crate) const NFTA_SET_DATA_TYPE: u16 = 6;
/// `NFTA_SET_ELEM_DATA`.
pub(crate) const NFTA_SET_ELEM_DATA: u16 = 2;
/// `NFTA_SET_ELEM_KEY`.
pub(crate) const NFTA_SET_ELEM_KEY: u16 = 1;
/// `NFTA_SET_ELEM_LIST_ELEMENTS`.
pub(crate) const NFTA_SET_ELEM_LIST_ELEMENTS: u16 = 3;
/// `NFTA_SET_ELEM_LIST_SET`.
pub(crate) const NFTA_SET_ELEM_LIST_SET: u16 = 2;
/// `NFTA_SET_ELEM_LIST_SET_ID`.
pub(crate) const NFTA_SET_ELEM_LIST_SET_ID: u16 = 4;
/// `NFTA_SET_ELEM_LIST_TABLE`.
pub(crate) const NFTA_SET_ELEM_LIST_TABLE: u16 = 1;
/// `NFTA_SET_FLAGS`.
pub(crate) const NFTA_SET_FLAGS: u16 = 3;
/// `NFTA_SET_ID`.
pub(crate) const NFTA_SET_ID: u16 = 10;
/// `NFTA_SET_KEY_LEN`.
pub(crate) const NFTA_SET_KEY_LEN: u16 = 5;
/// `NFTA_SET_KEY_TYPE`.
pub(crate) const NFTA_SET_KEY_TYPE: u16 = 4;
/// `NFTA_SET_NAME`.
pub(crate) const NFTA_SET_NAME: u16 = 2;
/// `NFTA_SET_TABLE`.
pub(crate) const NFTA_SET_TABLE: u16 = 1;
/// `NFTA_SET_USERDATA`.
pub(crate) const NFTA_SET_USERDATA: u16 = 13;
/// `NFTA_TABLE_NAME`.
pub(crate) const NFTA_TABLE_NAME: u16 = 1;
/// `NFTA_TABLE_USERDATA`.
pub(crate) const NFTA_TABLE_USERDATA: u16 = 6;
/// `NFTA_VERDICT_CHAIN`.
pub(crate) const NFTA_VERDICT_CHAIN: u16 = 2;
/// `NFTA_VERDICT_CODE`.
pub(crate) const NFTA_VERDICT_CODE: u16 = 1;
