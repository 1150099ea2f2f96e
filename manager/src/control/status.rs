//! How manager errors reach the CLI: gRPC status codes with the message a
//! user should read.

use tonic::Status;

use crate::allocator::AllocError;
use crate::scheduler::ConstraintError;
use crate::store::{ApplyError, LookupError, WriteError};

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

impl From<ControlError> for Status {
    fn from(err: ControlError) -> Status {
        let message = err.to_string();
        match err {
            ControlError::Invalid(_) | ControlError::Alloc(_) | ControlError::Constraint(_) => {
                Status::invalid_argument(message)
            }
            ControlError::Lookup(_) => Status::not_found(message),
            ControlError::Conflict(_) => Status::already_exists(message),
            ControlError::Write(WriteError::Rejected(ApplyError::NameTaken { .. })) => {
                Status::already_exists(message)
            }
            ControlError::Write(WriteError::Rejected(_)) => Status::aborted(message),
            ControlError::Write(WriteError::Failed(_)) => Status::unavailable(message),
            ControlError::Precondition(_) => Status::failed_precondition(message),
            ControlError::Internal(_) => Status::internal(message),
            ControlError::Unreachable(_) => Status::unavailable(message),
            ControlError::Refused(_) => Status::failed_precondition(message),
            ControlError::NoQuorum(_) => Status::unavailable(message),
        }
    }
}
