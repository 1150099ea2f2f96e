//! The agent of a mini node. Task execution arrives with issue #4; this crate holds the node-local identity for now.
pub mod runtime;
