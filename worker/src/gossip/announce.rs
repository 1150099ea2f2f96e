//! Periodic announces to members, scheduled so that every member answers about one per period.
//!
//! An announce is answered with the receiver's member list, which fills a packet (1,416 bytes
//! at 50 members): most of a node's idle gossip. foca's own periodic announce goes to a random
//! member, so how many a node answers in a period is left to chance: at 50 members a 10 s
//! window of an idle lab read up to 10.0 kbit/s on one node that happened to be picked four or
//! five times, twice its usual 5 kbit/s.
//!
//! Here the periods are numbered from the wall clock (epoch `e` = seconds since 1970 / period),
//! and in period `e` the node at place `i` of the members sorted by address (itself included,
//! `n` in all) announces to the one at place `i + 1 + e mod (n - 1)`, at a random moment of the
//! period. For one period that sends each member exactly one announce and none to itself, as
//! long as the nodes agree on the members and their clocks (a node that joined just now, or a
//! clock seconds off, only makes a few announces land as foca's random ones would); over
//! `n - 1` periods each node announces to every other one, so divergent membership views still
//! heal.

use std::net::SocketAddr;
use std::time::Duration;

use rand10::{Rng, RngExt};

/// When a node announces: once per period of the wall clock, at a random moment of it.
#[derive(Debug)]
pub(crate) struct AnnounceSchedule {
    period: Duration,
    /// The period whose announce is being waited for, and when in it it is due.
    current: Option<(u64, Duration)>,
    /// The last period announced in.
    sent: Option<u64>,
}

impl AnnounceSchedule {
    /// A schedule with one announce per `period` (at least 1 ms).
    pub(crate) fn new(period: Duration) -> Self {
        AnnounceSchedule {
            period: period.max(Duration::from_millis(1)),
            current: None,
            sent: None,
        }
    }

    /// The period whose announce is due at `since_unix` (time since 1970), once per period;
    /// `None` when it is not due yet or was sent. A period whose moment fell after the last
    /// call in it (the caller polls, say every second) is announced for at the first call of
    /// the next period: late rather than never.
    pub(crate) fn due(&mut self, since_unix: Duration, rng: &mut impl Rng) -> Option<u64> {
        let period_ns = self.period.as_nanos();
        let epoch = (since_unix.as_nanos() / period_ns) as u64;
        let into = Duration::from_nanos((since_unix.as_nanos() % period_ns) as u64);
        let at = match self.current {
            Some((e, at)) if e == epoch => at,
            previous => {
                let at = self.period.mul_f64(rng.random_range(0.0..1.0));
                self.current = Some((epoch, at));
                if let Some((missed, _)) = previous
                    && missed < epoch
                    && self.sent != Some(missed)
                {
                    self.sent = Some(missed);
                    return Some(missed);
                }
                at
            }
        };
        if into < at || self.sent == Some(epoch) {
            return None;
        }
        self.sent = Some(epoch);
        Some(epoch)
    }
}

/// The member `me` announces to in period `epoch`: the one `1 + epoch mod (n - 1)` places after
/// it in `members` (sorted, `me` among them). `None` if `me` is not there or is alone.
pub(crate) fn target(members: &[SocketAddr], me: SocketAddr, epoch: u64) -> Option<SocketAddr> {
    let n = members.len();
    if n < 2 {
        return None;
    }
    let i = members.binary_search(&me).ok()?;
    let step = 1 + (epoch % (n as u64 - 1)) as usize;
    Some(members[(i + step) % n])
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::{BTreeMap, BTreeSet};

    fn addrs(n: usize) -> Vec<SocketAddr> {
        let mut v: Vec<SocketAddr> = (0..n)
            .map(|i| SocketAddr::from(([10, 0, (i / 200) as u8, (i % 200) as u8 + 2], 7946)))
            .collect();
        v.sort();
        v
    }

    #[test]
    fn in_each_period_every_member_is_announced_to_once_and_over_n_minus_1_periods_by_everyone() {
        for n in 2..=60 {
            let members = addrs(n);
            let mut heard_from: BTreeMap<SocketAddr, BTreeSet<SocketAddr>> = BTreeMap::new();
            let first_epoch = 59_000_000 + n as u64;
            for epoch in first_epoch..first_epoch + n as u64 - 1 {
                let mut announced_to: BTreeMap<SocketAddr, usize> = BTreeMap::new();
                for &me in &members {
                    let to = target(&members, me, epoch).expect("a target");
                    assert_ne!(to, me, "n {n}, epoch {epoch}: {me} announces to itself");
                    *announced_to.entry(to).or_default() += 1;
                    heard_from.entry(to).or_default().insert(me);
                }
                assert_eq!(
                    announced_to.len(),
                    n,
                    "n {n}, epoch {epoch}: {announced_to:?}"
                );
                assert!(
                    announced_to.values().all(|&c| c == 1),
                    "n {n}, epoch {epoch}: {announced_to:?}"
                );
            }
            for (to, from) in &heard_from {
                assert_eq!(from.len(), n - 1, "n {n}: {to} heard from {from:?}");
            }
        }
        assert_eq!(target(&addrs(1), addrs(1)[0], 7), None);
        assert_eq!(target(&addrs(3), "10.9.9.9:7946".parse().unwrap(), 7), None);
    }

    #[test]
    fn a_period_whose_moment_no_poll_reached_is_announced_for_at_the_next_poll() {
        let period = Duration::from_secs(30);
        let mut schedule = AnnounceSchedule::new(period);
        let mut rng = rand10::rng();
        let start = Duration::from_secs(1_800_000_000);
        // Polled only as each period begins: no poll reaches a period's moment in it.
        let fired: Vec<u64> = (0..=10)
            .filter_map(|k| schedule.due(start + period * k, &mut rng))
            .collect();
        let want: Vec<u64> = (0..10).map(|e| start.as_secs() / 30 + e).collect();
        assert_eq!(fired, want);
    }

    #[test]
    fn the_schedule_is_due_once_per_period_at_a_moment_that_varies() {
        let period = Duration::from_secs(30);
        let mut schedule = AnnounceSchedule::new(period);
        let mut rng = rand10::rng();
        let start = Duration::from_secs(1_800_000_000);
        let mut moments = BTreeSet::new();
        let mut fired = Vec::new();
        // Polled every 100 ms for 20 periods, and once more as the next begins (a moment after
        // the last poll of a period is announced for then).
        for tick in 0..=(20 * 300) {
            let now = start + Duration::from_millis(100) * tick;
            if let Some(epoch) = schedule.due(now, &mut rng) {
                fired.push(epoch);
                moments.insert((now.as_millis() % period.as_millis()) / 100);
            }
        }
        let want: Vec<u64> = (0..20).map(|e| start.as_secs() / 30 + e).collect();
        assert_eq!(fired, want);
        assert!(
            moments.len() > 5,
            "announces at {moments:?} (100 ms steps into a period)"
        );
    }
}
