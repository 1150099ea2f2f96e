//! Kernel networking of a mini node (being built).
