//! Harness for tests that drive the real `mini` binary.
//!
//! # Layout
//! - [`cluster`]: N "hosts" as network namespaces on a private bridge, each
//!   running `mini daemon` (root only), removed without a trace on drop.
//! - [`binary`]: finds (building it once if needed) the `mini` binary.
//! - [`cli`]: running the `mini` CLI against a daemon.
//! - [`wait`]: waiting for a condition with a deadline, reporting what was
//!   last seen when it expires.
//! - [`check`]: tools a test needs, task summaries for failure messages, files that hold a
//!   value that must not be on disk.
//! - [`bench`]: percentiles and summaries for the cluster benchmarks.
//! - [`image`]: a busybox image the tests install on hosts, and what runc
//!   tasks may leave behind.
//! - [`web`]: a task answering HTTP with its hostname, and the request for it.
//! - [`docker_lab`]: the same lab running Docker Swarm (one dockerd per host), for the
//!   side-by-side benchmark.
//! - [`registry`]: the test image (busybox) and a real local registry
//!   (Debian's `docker-registry`) outside a cluster, via `deploy/registry`.

pub mod api;
pub mod bench;
pub mod binary;
pub mod check;
pub mod cli;
pub mod cluster;
pub mod deploy_lab;
pub mod docker_lab;
pub mod image;
pub mod leftovers;
pub mod registry;
pub mod vxlan_peers;
pub mod wait;
pub mod web;

pub use cli::{Output, Spawned, spawn_mini};
pub use cluster::{Cluster, Host, Resources};
pub use wait::wait_for;
