//! Harness for tests that drive the real `mini` binary.
//!
//! # Layout
//! - [`cluster`]: N "hosts" as network namespaces on a private bridge, each
//!   running `mini daemon` (root only), removed without a trace on drop.
//! - [`binary`]: finds (building it once if needed) the `mini` binary.
//! - [`daemon`]: a `mini daemon` child process with its own state dir and
//!   socket, killed and cleaned up on drop.
//! - [`wait`]: waiting for a condition with a deadline, reporting what was
//!   last seen when it expires.

pub mod binary;
pub mod cluster;
pub mod daemon;
pub mod wait;

pub use cluster::{Cluster, Host, Resources};
pub use daemon::{Daemon, Output};
pub use wait::wait_for;
