//! The driver's error type.

use std::io;

/// What went wrong, naming the object and the kernel call.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The desired state is inconsistent (unknown network, duplicate names, …).
    #[error("invalid desired state: {0}")]
    Invalid(String),
    /// A netlink request failed.
    #[error("netlink {call} on {object} failed: {source}")]
    Netlink {
        /// The object, e.g. `link vxlan0 in 1-jv8c30bcmn`.
        object: String,
        /// The request, e.g. `RTM_NEWLINK`.
        call: &'static str,
        /// The kernel's answer.
        #[source]
        source: rtnetlink::Error,
    },
    /// A system call or file operation failed.
    #[error("{call} on {object} failed: {source}")]
    Os {
        /// The object, e.g. a namespace file.
        object: String,
        /// The call, e.g. `mount(MS_BIND)`.
        call: &'static str,
        /// The OS error.
        #[source]
        source: io::Error,
    },
    /// The kernel refused an nf_tables batch or dump (no `nft` is run: the name is the
    /// familiar one).
    #[error("nft {action} in {namespace} failed: {detail}")]
    Nft {
        /// What was attempted, e.g. `replace table ip mini_gwbridge`.
        action: String,
        /// The namespace it ran in.
        namespace: String,
        /// The kernel's answer.
        detail: String,
    },
    /// An object expected to exist was not found.
    #[error("{object} not found")]
    Missing {
        /// The object.
        object: String,
    },
    /// The kernel never answered a request (an answer lost, e.g. dropped from a full netlink
    /// socket): the step is given up instead of holding every later converge behind it.
    #[error("no answer from the kernel within {after:?}")]
    Unanswered {
        /// How long the driver waited.
        after: std::time::Duration,
    },
    /// One step of a plan failed; what the step had created was rolled back.
    #[error("step `{op}` failed: {source}")]
    Step {
        /// The operation, as displayed.
        op: String,
        /// Why.
        #[source]
        source: Box<Error>,
    },
}

impl Error {
    pub(crate) fn os(object: impl Into<String>, call: &'static str, source: io::Error) -> Self {
        Error::Os {
            object: object.into(),
            call,
            source,
        }
    }

    pub(crate) fn netlink(
        object: impl Into<String>,
        call: &'static str,
        source: rtnetlink::Error,
    ) -> Self {
        Error::Netlink {
            object: object.into(),
            call,
            source,
        }
    }
}
