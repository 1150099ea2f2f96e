//! The narrow boundary between the driver and the kernel.

use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::error::Error;
use crate::observed::{Observed, Touched};
use crate::op::Op;

/// Reads the driver-owned kernel state and executes operations. Implemented by
/// [`crate::LinuxKernel`] (rtnetlink, nf_tables netlink) and [`crate::FakeKernel`] (in memory, for tests).
pub trait Kernel: Send + Sync {
    /// Reads everything the driver owns: its namespace files and what they hold, its host links,
    /// its nft table.
    fn observe(&self) -> impl Future<Output = Result<Observed, Error>> + Send;

    /// Reads the `touched` parts of what [`Kernel::observe`] reads (the host namespace's part
    /// when `touched.host`, the namespace files named): what is outside them may be left
    /// empty. The default reads everything.
    fn observe_part(
        &self,
        touched: &Touched,
    ) -> impl Future<Output = Result<Observed, Error>> + Send {
        let _ = touched;
        self.observe()
    }

    /// Executes one operation. On failure, what the operation created is removed again.
    fn execute(&self, op: &Op) -> impl Future<Output = Result<(), Error>> + Send;

    /// Calls made so far.
    fn counters(&self) -> Counters;
}

/// How many kernel calls were made.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counters {
    /// Changes: netlink requests that add, set or delete, nf_tables batches, namespace
    /// creations/removals, sysctl writes.
    pub writes: u64,
    /// Dumps, lookups, nf_tables table reads, sysctl reads.
    pub reads: u64,
}

impl std::ops::Sub for Counters {
    type Output = Counters;

    fn sub(self, rhs: Counters) -> Counters {
        Counters {
            writes: self.writes - rhs.writes,
            reads: self.reads - rhs.reads,
        }
    }
}

/// Thread-safe counters for kernel implementations.
#[derive(Debug, Default)]
pub(crate) struct AtomicCounters {
    writes: AtomicU64,
    reads: AtomicU64,
}

impl AtomicCounters {
    pub(crate) fn write(&self) {
        self.writes.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn read(&self) {
        self.reads.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn get(&self) -> Counters {
        Counters {
            writes: self.writes.load(Ordering::Relaxed),
            reads: self.reads.load(Ordering::Relaxed),
        }
    }
}
