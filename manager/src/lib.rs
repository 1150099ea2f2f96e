//! mini manager
