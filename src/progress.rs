//! Progress of long commands (`replay`, `eval`, `models fetch`): a bar on a terminal, and plain
//! lines at every tenth of the work otherwise, so logs and CI output stay readable.

use std::io::IsTerminal;
use std::sync::atomic::{AtomicU64, Ordering};

/// What a progress counts.
#[derive(Debug, Clone, Copy)]
pub enum Unit {
    /// Seconds of video.
    VideoSeconds,
    /// Whole items (cases, models).
    Items(&'static str),
}

/// One long piece of work's progress, shared by the threads doing it.
pub struct Progress {
    label: String,
    total: u64,
    unit: Unit,
    bar: Option<indicatif::ProgressBar>,
    done: AtomicU64,
    /// The last tenth reported as a plain line.
    reported: AtomicU64,
}

impl Progress {
    /// Progress on stderr: a bar when it is a terminal, plain lines when not.
    pub fn new(label: &str, total: u64, unit: Unit) -> Self {
        Self::with_terminal(label, total, unit, std::io::stderr().is_terminal())
    }

    /// Progress that does not guess the terminal (for tests and pipes).
    pub fn with_terminal(label: &str, total: u64, unit: Unit, terminal: bool) -> Self {
        let bar = terminal.then(|| {
            let template = match unit {
                Unit::VideoSeconds => {
                    "{prefix} [{bar:30}] {msg} video, {elapsed} elapsed, about {eta} left"
                }
                Unit::Items(_) => "{prefix} [{bar:30}] {pos}/{len} {msg}, {elapsed} elapsed",
            };
            let bar = indicatif::ProgressBar::new(total);
            if let Ok(style) = indicatif::ProgressStyle::with_template(template) {
                bar.set_style(style.progress_chars("=> "));
            }
            bar.set_prefix(label.to_string());
            match unit {
                Unit::Items(what) => bar.set_message(what),
                Unit::VideoSeconds => bar.set_message(format!("0:00:00 of {}", clock(total))),
            }
            bar
        });
        Self {
            label: label.to_string(),
            total,
            unit,
            bar,
            done: AtomicU64::new(0),
            reported: AtomicU64::new(0),
        }
    }

    /// Sets how much is done (never backwards).
    pub fn set(&self, done: u64) {
        let done = done.min(self.total);
        if self.done.fetch_max(done, Ordering::Relaxed) < done {
            self.show(done);
        }
    }

    /// Adds to what is done.
    pub fn inc(&self, n: u64) {
        let done = (self.done.fetch_add(n, Ordering::Relaxed) + n).min(self.total);
        self.show(done);
    }

    /// Ends the bar (the last plain line was printed at 100 %).
    pub fn finish(&self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }

    /// The plain line for `done`, or None when it does not cross a new tenth.
    fn plain_line(&self, done: u64) -> Option<String> {
        if self.total == 0 {
            return None;
        }
        let tenth = done * 10 / self.total;
        if tenth == 0 || self.reported.fetch_max(tenth, Ordering::Relaxed) >= tenth {
            return None;
        }
        Some(match self.unit {
            Unit::VideoSeconds => format!(
                "{}: {}% ({} of {} of video)",
                self.label,
                tenth * 10,
                clock(done),
                clock(self.total)
            ),
            Unit::Items(what) => format!(
                "{}: {}/{} {what} ({}%)",
                self.label,
                done,
                self.total,
                tenth * 10
            ),
        })
    }

    fn show(&self, done: u64) {
        match &self.bar {
            Some(bar) => {
                bar.set_position(done);
                if let Unit::VideoSeconds = self.unit {
                    bar.set_message(format!("{} of {}", clock(done), clock(self.total)));
                }
            }
            None => {
                if let Some(line) = self.plain_line(done) {
                    eprintln!("{line}");
                }
            }
        }
    }
}

/// Seconds as h:mm:ss.
fn clock(seconds: u64) -> String {
    format!(
        "{}:{:02}:{:02}",
        seconds / 3600,
        seconds / 60 % 60,
        seconds % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_lines_come_once_per_tenth_and_never_backwards() {
        let p = Progress::with_terminal("replay", 3_600, Unit::VideoSeconds, false);
        assert_eq!(p.plain_line(100), None);
        assert_eq!(
            p.plain_line(400).as_deref(),
            Some("replay: 10% (0:06:40 of 1:00:00 of video)")
        );
        assert_eq!(p.plain_line(500), None);
        assert_eq!(
            p.plain_line(3_600).as_deref().map(|l| &l[..13]),
            Some("replay: 100% ")
        );
        assert_eq!(p.plain_line(1_800), None);
        let cases = Progress::with_terminal("eval", 31, Unit::Items("cases"), false);
        assert_eq!(cases.plain_line(3), None);
        assert_eq!(
            cases.plain_line(4).as_deref(),
            Some("eval: 4/31 cases (10%)")
        );
        assert_eq!(
            Progress::with_terminal("x", 0, Unit::Items("y"), false).plain_line(0),
            None
        );
    }

    #[test]
    fn set_and_inc_count_up_to_the_total() {
        let p = Progress::with_terminal("eval", 4, Unit::Items("cases"), false);
        p.inc(1);
        p.set(3);
        p.set(2);
        assert_eq!(p.done.load(Ordering::Relaxed), 3);
        p.inc(5);
        assert_eq!(p.reported.load(Ordering::Relaxed), 10);
    }
}
