//! A stream's clock: seconds since its first frame, from the container's timestamps, kept sane.
//! Cameras and muxers send timestamps that jump back (MPEG-TS's 33 bits wrap after 26.5 hours,
//! an encoder restarts, a file was spliced) or far ahead. Taken as they come, a jump back stops
//! the sampling until the stream catches up (the camera looks online and detects nothing) and a
//! jump ahead stamps events in the future, where retention never deletes their photos. So a
//! jump is taken out: the clock goes on from where it was, and the log says so.

/// A step between two timestamps larger than this is a jump, not a gap in the stream.
pub const MAX_STEP_SECONDS: f64 = 60.0;
/// How far the clock moves across a jump it takes out (a frame at 25 fps).
const STEP_ACROSS_JUMP: f64 = 0.04;

/// Turns one stream's raw timestamps into seconds since its first.
#[derive(Debug, Clone)]
pub struct StreamClock {
    /// Seconds per timestamp unit.
    time_base: f64,
    /// The raw timestamp of second 0.
    origin: Option<i64>,
    /// Seconds added to the raw difference: the jumps taken out so far.
    offset: f64,
    /// The last raw timestamp and the seconds it gave.
    last: Option<(i64, f64)>,
    /// How many jumps were taken out.
    jumps: u64,
}

impl StreamClock {
    /// A clock for timestamps in units of `time_base` seconds (which must be positive).
    pub fn new(time_base: f64) -> Self {
        Self {
            time_base,
            origin: None,
            offset: 0.0,
            last: None,
            jumps: 0,
        }
    }

    /// Starts again with `origin` as second 0 (after a seek).
    pub fn restart_at(&mut self, origin: i64) {
        self.origin = Some(origin);
        self.offset = 0.0;
        self.last = None;
    }

    /// Seconds since the first timestamp for `ts`. The same `ts` twice gives the same answer
    /// (a keyframe's packet and then its frame); a step back, or ahead by more than
    /// [`MAX_STEP_SECONDS`], is taken out and logged against `url`.
    pub fn seconds(&mut self, ts: i64, url: &str) -> f64 {
        let origin = *self.origin.get_or_insert(ts);
        // In i128: timestamps near the ends of i64 must not overflow the difference.
        let raw = (i128::from(ts) - i128::from(origin)) as f64 * self.time_base;
        let Some((last_ts, last)) = self.last else {
            let first = raw + self.offset;
            // The first timestamp after a seek may be anywhere; beyond reason, start at 0.
            let first = if first.is_finite() && first.abs() < 1e9 {
                first
            } else {
                self.offset = -raw;
                0.0
            };
            self.last = Some((ts, first));
            return first;
        };
        if ts == last_ts {
            return last;
        }
        let now = raw + self.offset;
        let step = now - last;
        if step.is_finite() && step > 0.0 && step <= MAX_STEP_SECONDS {
            self.last = Some((ts, now));
            return now;
        }
        let goes_on = last + STEP_ACROSS_JUMP;
        self.offset = goes_on - raw;
        self.jumps += 1;
        let (way, by) = if step < 0.0 {
            ("back", -step)
        } else {
            ("ahead", step)
        };
        tracing::warn!(
            url,
            "the stream's timestamps jumped {way} by {by:.1} s: its clock goes on from {goes_on:.2} s (jump {} on this connection)",
            self.jumps
        );
        self.last = Some((ts, goes_on));
        goes_on
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TB: f64 = 1.0 / 90_000.0;

    fn run(clock: &mut StreamClock, ts: &[i64]) -> Vec<f64> {
        ts.iter().map(|&t| clock.seconds(t, "test")).collect()
    }

    #[test]
    fn steady_timestamps_count_from_the_first() {
        let mut c = StreamClock::new(TB);
        let s = run(&mut c, &[900_000, 1_080_000, 1_080_000, 1_260_000]);
        assert_eq!(s, vec![0.0, 2.0, 2.0, 4.0]);
        assert_eq!(c.jumps, 0);
    }

    #[test]
    fn a_jump_back_is_taken_out_and_the_clock_goes_on() {
        // A spliced file: 10 s, then timestamps from the start again.
        let mut c = StreamClock::new(TB);
        let s = run(&mut c, &[0, 450_000, 900_000, 0, 180_000, 360_000]);
        assert_eq!(&s[..3], &[0.0, 5.0, 10.0]);
        assert!((s[3] - 10.04).abs() < 1e-9, "{s:?}");
        assert!(
            (s[4] - 12.04).abs() < 1e-9 && (s[5] - 14.04).abs() < 1e-9,
            "{s:?}"
        );
        assert_eq!(c.jumps, 1);
    }

    #[test]
    fn the_33_bit_wrap_of_mpeg_ts_goes_on_smoothly() {
        let wrap = 1i64 << 33;
        let mut c = StreamClock::new(TB);
        let s = run(&mut c, &[wrap - 180_000, wrap - 90_000, 0, 90_000]);
        assert_eq!(&s[..2], &[0.0, 1.0]);
        assert!(s[2] > s[1] && (s[3] - s[2] - 1.0).abs() < 1e-6, "{s:?}");
    }

    #[test]
    fn a_jump_ahead_of_hours_is_taken_out() {
        let mut c = StreamClock::new(TB);
        let hours = 5 * 3600 * 90_000;
        let s = run(&mut c, &[0, 90_000, 90_000 + hours, 180_000 + hours]);
        assert!(s[2] < 2.0 && (s[3] - s[2] - 1.0).abs() < 1e-9, "{s:?}");
        // A gap within the limit is the stream's own: kept.
        let mut c = StreamClock::new(TB);
        let s = run(&mut c, &[0, 30 * 90_000]);
        assert_eq!(s, vec![0.0, 30.0]);
    }

    #[test]
    fn timestamps_at_the_ends_of_64_bits_neither_overflow_nor_leave_the_clock() {
        let mut c = StreamClock::new(TB);
        let s = run(&mut c, &[i64::MIN, i64::MAX, i64::MIN + 90_000, 0]);
        assert!(s.iter().all(|v| v.is_finite() && v.abs() < 1.0), "{s:?}");
        assert!(s.windows(2).all(|w| w[1] > w[0]), "{s:?}");
        // After a seek to an absurd origin, the first time is still sane.
        let mut c = StreamClock::new(TB);
        c.restart_at(0);
        assert_eq!(c.seconds(i64::MAX, "test"), 0.0);
    }
}
