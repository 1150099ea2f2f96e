//! mini manager

pub mod allocator;
pub mod orchestrator;
pub mod scheduler;
