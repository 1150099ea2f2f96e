//! How manager errors reach the CLI: gRPC status codes with the message a
//! user should read.

use tonic::Status;

pub use crate::error::ControlError;
use crate::store::{ApplyError, WriteError};

impl From<ControlError> for Status {
    fn from(err: ControlError) -> Status {
        let message = err.to_string();
        match err {
            ControlError::Invalid(_) | ControlError::Alloc(_) | ControlError::Constraint(_) => {
                Status::invalid_argument(message)
            }
            ControlError::Lookup(_) => Status::not_found(message),
            ControlError::Conflict(_) => Status::already_exists(message),
            ControlError::Write(WriteError::Rejected(
                ApplyError::NameTaken { .. } | ApplyError::PortTaken { .. },
            )) => Status::already_exists(message),
            ControlError::Write(WriteError::Rejected(ApplyError::InUse { .. })) => {
                Status::failed_precondition(message)
            }
            ControlError::Write(WriteError::Rejected(_)) => Status::aborted(message),
            ControlError::Write(WriteError::Failed(_)) => Status::unavailable(message),
            ControlError::OutOfSequence { .. } => Status::aborted(message),
            ControlError::Precondition(_) => Status::failed_precondition(message),
            ControlError::Internal(_) => Status::internal(message),
            ControlError::Unreachable(_) => Status::unavailable(message),
            ControlError::Refused(_) => Status::failed_precondition(message),
            ControlError::NoQuorum(_) => Status::unavailable(message),
        }
    }
}
