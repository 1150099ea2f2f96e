//! The error of a manager operation as the control API reports it. Defined below the control
//! layer (it is re-exported as `control::ControlError`) so the manager, the dispatcher and the
//! HA code can return it without depending on the control API.

use crate::allocator::AllocError;
use crate::scheduler::ConstraintError;
use crate::store::{LookupError, WriteError};

/// An error of a control API call.
#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    /// The user asked for something invalid.
    #[error("{0}")]
    Invalid(String),
    /// The named object does not exist.
    #[error(transparent)]
    Lookup(#[from] LookupError),
    /// Allocation refused the request (bad subnet, overlap, pool exhausted).
    #[error(transparent)]
    Alloc(#[from] AllocError),
    /// A constraint does not parse.
    #[error(transparent)]
    Constraint(#[from] ConstraintError),
    /// The store refused or could not commit the write.
    #[error(transparent)]
    Write(#[from] WriteError),
    /// The request conflicts with the current state (name taken, in use).
    #[error("{0}")]
    Conflict(String),
    /// An update decided from a version of the object that is no longer current (Docker's
    /// "update out of sequence"): read it again and decide again.
    #[error(
        "update out of sequence: {kind} {name} changed since it was read (version {given} is now {current}); read it and update again"
    )]
    OutOfSequence {
        /// "service" or "node".
        kind: &'static str,
        /// The name or id the caller gave.
        name: String,
        /// The version the caller read.
        given: u64,
        /// The stored version.
        current: u64,
    },
    /// The daemon is not (yet) a manager, or already is one.
    #[error("{0}")]
    Precondition(String),
    /// Something failed on this daemon.
    #[error("{0}")]
    Internal(String),
    /// Another node cannot be reached.
    #[error("{0}")]
    Unreachable(String),
    /// Another node refused the request (its message).
    #[error("{0}")]
    Refused(String),
    /// No quorum of managers could be reached in time.
    #[error(transparent)]
    NoQuorum(#[from] crate::ha::NoQuorum),
}
