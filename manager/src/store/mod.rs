//! The manager's store: the tables of desired and observed cluster state.
//!
//! The store does not know about Raft. Writers build a [`StoreBatch`] (every id,
//! timestamp and allocation decided beforehand) and hand it to a [`Proposer`];
//! the Raft log (or, in tests, [`LocalProposer`]) feeds committed batches to
//! [`Store::apply`], which is deterministic: the same batches in the same order
//! give the same tables on every manager. Readers take a consistent view with
//! [`Store::view`] and follow changes with [`Store::watch`].
//!
//! [`StoreBatch`]: mini_proto::v1::StoreBatch

mod apply;
mod error;
mod event;
mod handle;
mod machine;
mod proposer;
mod recent;
mod tables;
mod task_table;
mod write;

pub use error::{ApplyError, ObjectKind};
pub use event::{Change, StoreEvent};
pub use handle::Store;
pub use machine::StoreMachine;
pub use proposer::{LocalProposer, ProposeFailed, Proposer, WriteError};
pub use tables::{LookupError, Tables};
pub use task_table::{TaskIndex, TaskTable};
pub use write::{
    Contention, STALE_RETRIES, create_action, read_check_write, read_check_write_queued,
    update_action,
};

#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_races;
