//! Harness for driving the real `mini` binary in tests.
