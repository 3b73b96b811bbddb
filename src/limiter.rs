//! How many accounts to work on at once, adapted to what the endpoint sustains: a gradient
//! limiter (as TCP Vegas and Netflix's concurrency-limits do). Every AWS call reports how long it
//! took; while calls take at most twice as long as the fastest of their kind, the endpoint is
//! not queueing them and more accounts may start (four times as many at first, then growing by
//! the square root of the limit); when they take longer, the limit follows the ratio down,
//! smoothed and by at most half at a time; a throttled STS call (the one principal's) halves it,
//! a throttled IAM call does not (each account's pace answers for it). Real AWS serves and
//! throttles each account on its own, so the limit climbs to its ceiling; a local emulator that
//! builds one answer at a time keeps it near a few. Pure arithmetic under a lock: no I/O, no
//! timers.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;

use crate::aws::Op;

/// Hears how each AWS call went (`calls::Meter` reports to it).
pub trait Observe: Send + Sync {
    fn call(&self, op: Op, took: Duration, throttled: bool);
}

/// The limit the engine keeps accounts in flight under.
#[derive(Debug)]
pub struct Limiter {
    ceiling: usize,
    adaptive: bool,
    state: Mutex<State>,
}

#[derive(Debug)]
struct State {
    limit: f64,
    /// Growing fast until the first sign of queueing or throttling.
    slow_start: bool,
    /// The fastest call seen per operation, slowly forgotten (a baseline, not a record).
    fastest: HashMap<Op, f64>,
    /// A moving average of fastest/took over recent calls: 1 while nothing queues.
    gradient: f64,
    throttled: bool,
    samples: u32,
    last_update: Option<Instant>,
}

/// Where an adaptive limit starts: one account alone gives a clean baseline, and growing from
/// there takes a few round trips.
const INITIAL: f64 = 1.0;
/// Calls up to this many times slower than the fastest of their kind are not queueing yet: a
/// busy endpoint has some variance.
const TOLERANCE: f64 = 2.0;
/// However slow calls get, the limit falls by at most this factor's complement per update
/// (calls still in flight report the load of a limit that is already lower).
const GRADIENT_FLOOR: f64 = 0.5;
/// How much of the newly computed limit is taken at each update: a moving average, so one
/// burst of slow calls does not collapse it.
const SMOOTHING: f64 = 0.2;
/// How much the limit grows at each update of its slow start.
const SLOW_START_GROWTH: f64 = 4.0;
/// How often the limit moves, at most.
const UPDATE_EVERY: Duration = Duration::from_millis(50);

impl Limiter {
    /// A fixed limit (`--concurrency N`).
    pub fn fixed(n: usize) -> Self {
        Self::new(n, false)
    }

    /// A limit that adapts between 1 and `ceiling`.
    pub fn adaptive(ceiling: usize) -> Self {
        Self::new(ceiling, true)
    }

    fn new(ceiling: usize, adaptive: bool) -> Self {
        let ceiling = ceiling.max(1);
        Self {
            ceiling,
            adaptive,
            state: Mutex::new(State {
                limit: if adaptive {
                    INITIAL.min(ceiling as f64)
                } else {
                    ceiling as f64
                },
                slow_start: true,
                fastest: HashMap::new(),
                gradient: 1.0,
                throttled: false,
                samples: 0,
                last_update: None,
            }),
        }
    }

    /// Accounts that may be in flight now.
    pub fn limit(&self) -> usize {
        (self.state.lock().expect("limiter").limit as usize).clamp(1, self.ceiling)
    }

    /// Applies what the calls since the last update said, at most every `UPDATE_EVERY`.
    fn update(&self, st: &mut State, now: Instant) {
        if st
            .last_update
            .is_some_and(|t| now.duration_since(t) < UPDATE_EVERY)
            || st.samples == 0
        {
            return;
        }
        st.last_update = Some(now);
        let ceiling = self.ceiling as f64;
        let gradient = (TOLERANCE * st.gradient).clamp(GRADIENT_FLOOR, 1.0);
        if st.throttled {
            st.limit = (st.limit / 2.0).max(1.0);
            st.slow_start = false;
        } else if st.slow_start && gradient >= 1.0 {
            // Samples come one round trip after the accounts started: grow fast while they say
            // nothing queues.
            st.limit = (st.limit * SLOW_START_GROWTH).min(ceiling);
        } else {
            st.slow_start = false;
            let target = st.limit * gradient + st.limit.sqrt();
            st.limit = ((1.0 - SMOOTHING) * st.limit + SMOOTHING * target).clamp(1.0, ceiling);
        }
        st.throttled = false;
        st.samples = 0;
        tracing::debug!(
            limit = st.limit,
            gradient = st.gradient,
            "concurrency limit"
        );
    }
}

impl Observe for Limiter {
    fn call(&self, op: Op, took: Duration, throttled: bool) {
        if !self.adaptive {
            return;
        }
        let mut st = self.state.lock().expect("limiter");
        if throttled {
            // IAM throttles each account on its own, and each account's pace answers for its
            // own throttling: it says nothing about how many accounts may be worked on. STS
            // (every AssumeRole is the one principal's) does.
            if op.service() == "sts" {
                st.throttled = true;
            }
        } else {
            let took = took.as_secs_f64().max(1e-6);
            // Forgotten by 0.01% a call: an outlier of speed does not hold the baseline forever.
            let fastest = st.fastest.get(&op).map_or(took, |f| (f * 1.0001).min(took));
            st.fastest.insert(op, fastest);
            st.gradient = 0.9 * st.gradient + 0.1 * (fastest / took);
        }
        st.samples += 1;
        self.update(&mut st, Instant::now());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Feeds `n` calls of `took` each, a little apart so that the limit may move.
    fn feed(l: &Limiter, n: usize, took: Duration, throttled: bool) {
        for _ in 0..n {
            l.call(Op::AssumeRole, took, throttled);
            let mut st = l.state.lock().unwrap();
            st.last_update = st.last_update.map(|t| t - UPDATE_EVERY);
        }
    }

    #[test]
    fn a_fixed_limit_never_moves() {
        let l = Limiter::fixed(8);
        feed(&l, 100, Duration::from_millis(50), true);
        assert_eq!(l.limit(), 8);
    }

    #[test]
    fn flat_latency_climbs_to_the_ceiling() {
        let l = Limiter::adaptive(256);
        assert_eq!(l.limit(), 1);
        feed(&l, 4, Duration::from_millis(50), false);
        assert_eq!(l.limit(), 256);
    }

    #[test]
    fn latency_that_grows_with_the_limit_keeps_it_low() {
        // A server that answers one call at a time: latency is the limit times its service time.
        let l = Limiter::adaptive(256);
        for _ in 0..200 {
            let took = Duration::from_millis(10) * l.limit() as u32;
            feed(&l, 1, took, false);
        }
        assert!((1..=6).contains(&l.limit()), "{}", l.limit());
    }

    #[test]
    fn throttling_halves_the_limit() {
        let l = Limiter::adaptive(256);
        feed(&l, 10, Duration::from_millis(50), false);
        assert_eq!(l.limit(), 256);
        feed(&l, 1, Duration::from_millis(50), true);
        assert_eq!(l.limit(), 128);
        feed(&l, 3, Duration::from_millis(50), true);
        assert_eq!(l.limit(), 16);
    }
}
