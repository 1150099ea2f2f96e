//! Refusals logged at WARN without letting a flood of them flood the log.

use std::net::SocketAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Lines per window; the rest are counted and summed up in the next line.
const PER_WINDOW: u32 = 10;
const WINDOW: Duration = Duration::from_secs(10);

/// A WARN log of refused peers, at most [`PER_WINDOW`] lines per 10 seconds.
#[derive(Debug)]
pub struct RateLimitedLog {
    state: Mutex<(Instant, u32, u64)>,
}

impl Default for RateLimitedLog {
    fn default() -> Self {
        Self::new()
    }
}

impl RateLimitedLog {
    /// An empty log.
    pub fn new() -> Self {
        RateLimitedLog {
            state: Mutex::new((Instant::now(), 0, 0)),
        }
    }

    /// Logs that `peer` was refused for `reason`, unless too many lines went out lately.
    pub fn warn(&self, peer: SocketAddr, reason: &str) {
        let suppressed = {
            let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
            let (start, lines, dropped) = &mut *state;
            if start.elapsed() >= WINDOW {
                let dropped_before = *dropped;
                *start = Instant::now();
                *lines = 1;
                *dropped = 0;
                Some(dropped_before)
            } else if *lines >= PER_WINDOW {
                *dropped += 1;
                None
            } else {
                *lines += 1;
                Some(0)
            }
        };
        match suppressed {
            Some(0) => tracing::warn!(%peer, reason, "refused a peer on the node listener"),
            Some(n) => tracing::warn!(
                %peer,
                reason,
                suppressed = n,
                "refused a peer on the node listener (and {n} more refusals not logged)"
            ),
            None => {}
        }
    }
}
