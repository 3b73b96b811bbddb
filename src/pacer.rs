//! How fast one account's calls (or every account's `AssumeRole`, or the Organizations walk) are
//! sent: evenly spaced at most at the configured rate, slower while the other side throttles
//! *because of this pace*, and never slower for throttling that does not ease when it slows.
//!
//! Answers are judged in windows (a second, and at least five answers; only answers to calls
//! sent at the pace now, and none in the second after a cut). A window with more refusals than
//! the outside throttling explains (beyond its noise), while the pace is what holds the callers
//! back, cuts the rate to what went through, and the next window tells whether the cut helped:
//! if the throttled share fell, the limit was ours to respect (an IAM quota this pace exceeded)
//! and the cut stays; if it did not, the throttling comes from elsewhere (another workload
//! draining the account's shared quota) and the cut is undone: slowing down would only make the
//! run longer, while throttled calls are retried by the meter anyway. That share is then
//! remembered as the outside throttling (forgotten slowly) and not cut for again. A clean window
//! speeds the pace back up towards the configured rate. Pure arithmetic under a lock, plus the
//! sleep until a slot.

use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;

/// A window lasts at least `WINDOW_TIME` (limits are per second) and holds at least
/// `WINDOW_MIN` answers (a slow pace is judged on enough of them).
const WINDOW_MIN: u32 = 5;
const WINDOW_TIME: Duration = Duration::from_secs(1);
/// The most outside throttling is believed to be: beyond it, a cut is always tried.
const OUTSIDE_MAX: f64 = 0.5;
/// A window where at least this share was refused ends early (after `EARLY_TIME`): a burst
/// far over a limit (hundreds of accounts assuming roles at once) is cut within a fraction of
/// a second. Such a short window only ever cuts: whether a cut helped is told by full ones.
const EARLY_SHARE: f64 = 0.5;
const EARLY_TIME: Duration = Duration::from_millis(100);
/// The slowest pace throttling can push to (one call per 5 s).
const SLOWEST: f64 = 0.2;
/// An unpaced pacer that has slowed down goes back to no pacing above this rate.
const UNPACED_AGAIN: f64 = 1000.0;
/// A window where nothing went through cuts the pace to this part of it: it says little
/// about the limit (a burst drained it), and the next one cuts again if it must.
const DEEPEST_CUT: f64 = 0.25;
/// A cut lands this much under what went through, so the next window can tell.
const CUT_MARGIN: f64 = 0.9;
/// A cut "did not help" when the throttled share after it is at least this part of before: a
/// limit that is the pace's own stops refusing once the pace is under it, outside throttling
/// refuses as much as before.
const NO_HELP: f64 = 0.5;
/// How fast the share of outside throttling is forgotten, per window.
const FORGET: f64 = 0.95;

/// The last cut, kept while the window after it tells whether it helped.
#[derive(Clone, Copy, Debug, PartialEq)]
struct Cut {
    rate_before: f64,
    share: f64,
    /// Calls that went through per second, before the cut.
    goodput: f64,
}

/// The pace's arithmetic, on a clock it is given.
#[derive(Clone, Debug)]
pub struct Pace {
    /// The configured rate (calls per second); `None`: no pacing until throttled.
    ceiling: Option<f64>,
    /// The rate now; `None`: unpaced.
    rate: Option<f64>,
    window_start: Option<Instant>,
    answers: u32,
    throttled: u32,
    /// The last cut, while the window after it decides whether it helped.
    probing: Option<Cut>,
    /// The share of answers throttled whatever the pace (learned when a cut did not help).
    outside: f64,
    /// What went through per second when a cut last helped: a limit that is the pace's own.
    /// Near it the pace speeds up slowly; well past it without refusals, it is forgotten.
    limit: Option<f64>,
    /// Answers to calls sent before this are not judged: they tell of an older rate (the many
    /// calls in flight when a burst is refused would otherwise cut the pace again and again for
    /// one refusal). After a cut it lies a window ahead: a limiter counting the last second
    /// goes on refusing for a while whatever the new pace, and neither another cut nor the
    /// verdict on this one should be made on that.
    judged_from: Option<Instant>,
}

impl Pace {
    pub fn new(ceiling: Option<f64>) -> Self {
        let ceiling = ceiling.filter(|r| *r > 0.0);
        Self {
            ceiling,
            rate: ceiling,
            window_start: None,
            answers: 0,
            throttled: 0,
            probing: None,
            outside: 0.0,
            limit: None,
            judged_from: None,
        }
    }

    /// The spacing between two calls now (zero: unpaced).
    pub fn spacing(&self) -> Duration {
        self.rate
            .map_or(Duration::ZERO, |r| Duration::from_secs_f64(1.0 / r))
    }

    /// The rate now (`None`: unpaced).
    pub fn rate(&self) -> Option<f64> {
        self.rate
    }

    /// The answer to a call sent at `sent` came at `now`; `throttled` if it was refused for
    /// rate.
    pub fn heard(&mut self, sent: Instant, now: Instant, throttled: bool) {
        if self.judged_from.is_some_and(|at| sent < at) {
            return;
        }
        let start = *self.window_start.get_or_insert(now);
        self.answers += 1;
        self.throttled += u32::from(throttled);
        let elapsed = now.saturating_duration_since(start);
        let full = elapsed >= WINDOW_TIME;
        // An early window only while no cut is being judged: only full ones tell if it helped.
        let early = self.probing.is_none()
            && elapsed >= EARLY_TIME
            && f64::from(self.throttled) >= EARLY_SHARE * f64::from(self.answers);
        if self.answers >= WINDOW_MIN && (full || early) {
            let before = self.rate;
            self.judge(elapsed, full);
            let slower = match (self.rate, before) {
                (Some(r), Some(b)) => r < b,
                (Some(_), None) => true,
                (None, _) => false,
            };
            if self.rate != before {
                self.judged_from = Some(if slower { now + WINDOW_TIME } else { now });
            }
            self.window_start = None;
            self.answers = 0;
            self.throttled = 0;
        }
    }

    /// Ends a window: cut, undo a cut that did not help, or speed up.
    fn judge(&mut self, elapsed: Duration, full: bool) {
        let secs = elapsed.as_secs_f64().max(1e-3);
        let share = f64::from(self.throttled) / f64::from(self.answers.max(1));
        let goodput = f64::from(self.answers - self.throttled) / secs;
        // What the window's calls were sent at: the rate, or (unpaced) what was observed.
        // (A pace far above what the callers asked for says nothing: cuts are made from what
        // was sent.)
        let observed = f64::from(self.answers) / secs;
        let now = self.rate.map_or(observed, |r| r.min(observed.max(SLOWEST)));
        // What went through per second, counted over a second at least: limits are per
        // second, and a short window right after a burst shows the burst, not the limit.
        let through = f64::from(self.answers - self.throttled) / secs.max(1.0);
        self.outside *= FORGET;
        // Refusals beyond what the outside throttling explains, by more than its noise (two
        // standard deviations of so many answers, and one refusal): a window of five answers
        // with two refused is no news when a fifth of all calls is refused whatever the pace.
        let n = f64::from(self.answers);
        let expected = n * self.outside;
        let noise = 2.0 * (n * self.outside * (1.0 - self.outside)).sqrt() + 1.0;
        // And only while the pace is what holds the callers back (they asked for at least half
        // of it): callers far slower than the pace are not what a limit refuses for long (each
        // refused call waits out its backoff), and a cut would only slow them further.
        let binding = self.rate.is_none_or(|r| observed >= r * 0.5);
        let too_many = binding && f64::from(self.throttled) > expected + noise;
        if let Some(cut) = self.probing.take() {
            if full && share > 0.0 && share >= cut.share * NO_HELP {
                // Slowing down did not ease the refusals: they are not this pace's doing. Back
                // to the pace before the cut.
                self.outside = self.outside.max(share.min(OUTSIDE_MAX));
                self.rate =
                    Some(cut.rate_before).filter(|r| self.ceiling.is_some() || *r < UNPACED_AGAIN);
                return;
            }
            if full && cut.goodput > 0.0 {
                self.limit = Some(cut.goodput);
            }
        }
        if too_many {
            // Down to what went through (and a little under, so the next window can tell).
            // Only a full window's cut is judged: a short one's goodput says little.
            self.probing = full.then_some(Cut {
                rate_before: self.rate.unwrap_or(now),
                share,
                goodput,
            });
            self.rate = Some(
                if through > 0.0 {
                    through.min(now * (1.0 - share)) * CUT_MARGIN
                } else {
                    now * DEEPEST_CUT
                }
                .max(SLOWEST),
            );
        } else if let Some(r) = self.rate {
            if self.limit.is_some_and(|l| r > l * 1.2) {
                self.limit = None;
            }
            let near_limit = self.limit.is_some_and(|l| r >= l * 0.9);
            self.rate = match self.ceiling {
                _ if near_limit => Some(r * 1.02),
                Some(c) => Some((r * 1.1 + c * 0.02).min(c)),
                None if r * 1.5 >= UNPACED_AGAIN => None,
                None => Some(r * 1.5),
            };
            if let (Some(c), Some(r)) = (self.ceiling, self.rate) {
                self.rate = Some(r.min(c));
            }
        }
    }
}

/// Spaces calls by the [`Pace`], sleeping until each one's slot.
#[derive(Debug)]
pub struct Pacer {
    state: Mutex<(Instant, Pace)>,
}

impl Pacer {
    pub fn new(rate: Option<f64>) -> Self {
        Self {
            state: Mutex::new((Instant::now(), Pace::new(rate))),
        }
    }

    /// Takes the next slot and sleeps until it.
    pub async fn wait(&self) {
        if let Some(slot) = self.take() {
            tokio::time::sleep_until(slot).await;
        }
    }

    /// Takes the next slot without waiting for it (a call that must leave now: it is counted in
    /// the pace, and pushes the calls after it back).
    pub fn take_now(&self) {
        let _ = self.take();
    }

    fn take(&self) -> Option<Instant> {
        let mut st = self.state.lock().expect("pacer lock");
        let spacing = st.1.spacing();
        if spacing.is_zero() {
            return None;
        }
        let slot = st.0.max(Instant::now());
        st.0 = slot + spacing;
        Some(slot)
    }

    /// How the call sent at `sent` went.
    pub fn heard(&self, sent: Instant, throttled: bool) {
        self.state
            .lock()
            .expect("pacer lock")
            .1
            .heard(sent, Instant::now(), throttled);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The other side, as far as pacing goes.
    enum Endpoint {
        /// Refuses calls beyond `n` in any one second (IAM's own limit for the account).
        Limit(usize),
        /// Refuses every `n`th call whatever the pace (another workload drains the quota).
        EveryNth(u64),
        Never,
    }

    struct Sim {
        pace: Pace,
        clock: Instant,
        sent: u64,
        throttled: u64,
        recent: std::collections::VecDeque<Instant>,
        /// How often the callers have a call to make, whatever the pace.
        demand: Duration,
    }

    impl Sim {
        fn new(ceiling: Option<f64>) -> Self {
            Self {
                pace: Pace::new(ceiling),
                clock: Instant::now(),
                sent: 0,
                throttled: 0,
                recent: Default::default(),
                demand: Duration::from_millis(5),
            }
        }

        /// Sends calls at the pace until `ok` went through; returns the seconds it took.
        fn run(&mut self, endpoint: &Endpoint, ok: u64) -> f64 {
            let start = self.clock;
            let mut through = 0;
            while through < ok {
                let spacing = self.pace.spacing().max(self.demand);
                self.clock += spacing;
                self.sent += 1;
                while self
                    .recent
                    .front()
                    .is_some_and(|t| self.clock.duration_since(*t) >= Duration::from_secs(1))
                {
                    self.recent.pop_front();
                }
                let refused = match endpoint {
                    Endpoint::Limit(n) => self.recent.len() >= *n,
                    Endpoint::EveryNth(n) => self.sent.is_multiple_of(*n),
                    Endpoint::Never => false,
                };
                if refused {
                    self.throttled += 1;
                } else {
                    through += 1;
                    self.recent.push_back(self.clock);
                }
                self.pace.heard(self.clock, self.clock, refused);
            }
            self.clock.duration_since(start).as_secs_f64()
        }
    }

    #[test]
    fn unthrottled_calls_go_at_the_configured_rate() {
        let mut sim = Sim::new(Some(20.0));
        let took = sim.run(&Endpoint::Never, 400);
        assert!((took - 20.0).abs() < 0.5, "{took}");
        assert_eq!(sim.pace.rate(), Some(20.0));
    }

    #[test]
    fn throttling_that_does_not_ease_when_slowing_does_not_slow_the_pace() {
        // Every 4th call refused whatever the pace: 400 go through in 533 calls; at 20 a
        // second that is 26.7 s. The old pacer (x1.5 per refusal, x0.97 per answer) fell to
        // one call per 5 s here.
        let mut sim = Sim::new(Some(20.0));
        let took = sim.run(&Endpoint::EveryNth(4), 400);
        assert!(took < 26.7 * 1.25, "{took} s for 400 calls through");
        assert!(sim.pace.rate().unwrap() >= 14.0, "{:?}", sim.pace.rate());
    }

    #[test]
    fn outside_throttling_of_callers_slower_than_the_pace_does_not_slow_them() {
        // Two or three calls a second (a few workers proving and detaching), every 4th refused
        // whatever the pace: no window is news enough to cut on for long. The pacer measured
        // on moto used to cut to ~1.3 a second here, from windows of five answers.
        let mut sim = Sim::new(Some(20.0));
        sim.demand = Duration::from_millis(400);
        let took = sim.run(&Endpoint::EveryNth(4), 150);
        // 200 calls at 2.5 a second: 80 s.
        assert!(took < 80.0 * 1.15, "{took} s");
    }

    #[test]
    fn a_limit_below_the_rate_is_found_and_kept_with_few_refusals() {
        let mut sim = Sim::new(Some(20.0));
        let took = sim.run(&Endpoint::Limit(10), 600);
        let share = sim.throttled as f64 / sim.sent as f64;
        assert!(share < 0.08, "{} of {} refused", sim.throttled, sim.sent);
        assert!(took < 600.0 / 10.0 * 1.35, "{took} s");
        let rate = sim.pace.rate().unwrap();
        assert!((7.0..=12.0).contains(&rate), "{rate}");
    }

    #[test]
    fn an_unpaced_caller_slows_to_a_limit_and_speeds_up_again_after() {
        let mut sim = Sim::new(None);
        sim.run(&Endpoint::Limit(50), 2000);
        let share = sim.throttled as f64 / sim.sent as f64;
        assert!(share < 0.15, "{} of {} refused", sim.throttled, sim.sent);
        assert!(
            sim.pace.rate().is_some_and(|r| r < 80.0),
            "{:?}",
            sim.pace.rate()
        );
        sim.run(&Endpoint::Never, 3000);
        assert_eq!(
            sim.pace.rate(),
            None,
            "unpaced again once nothing is refused"
        );
    }

    #[test]
    fn the_pace_recovers_to_its_rate_when_throttling_stops() {
        let mut sim = Sim::new(Some(20.0));
        sim.run(&Endpoint::Limit(3), 100);
        assert!(sim.pace.rate().unwrap() < 5.0, "{:?}", sim.pace.rate());
        sim.run(&Endpoint::Never, 600);
        assert_eq!(sim.pace.rate(), Some(20.0));
    }
}
