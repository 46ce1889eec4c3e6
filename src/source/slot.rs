//! The hand-over between a camera's decoding thread and its analysis: one latest-frame slot.
//!
//! A live camera does not wait for the analysis. While its previous frame still waits for a place
//! in the node's analysis pool, the next sampled frames are not even decoded (decoding frames
//! that would be thrown away is what starves an overloaded node), and are counted as dropped;
//! once the waiting frame has grown too old it is replaced by the next one. So a busy node
//! analyses every camera in turn, at most one frame per camera waits, and the lag stays bounded
//! instead of growing. A file played as fast as possible has no present to keep up with: there
//! the decoder waits for the slot to empty and nothing is dropped.

use std::collections::VecDeque;
use std::sync::{Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use super::{Frame, StatusChange};

/// What the decoder does when the analysis has not taken the previous frame yet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WhenBusy {
    /// Skip the next frames while one waits, replacing it once it has waited this long; the
    /// skipped and replaced frames count as dropped (live cameras, paced files).
    Skip(Duration),
    /// Wait for the analysis (files read as fast as possible).
    Wait,
}

/// What the analysis takes from the slot, oldest first.
#[derive(Debug)]
pub enum FeedItem {
    /// A sampled frame, with the frames replaced (dropped) before it was taken.
    Frame {
        /// The frame.
        frame: Frame,
        /// Sampled frames that were replaced by newer ones while waiting.
        dropped: u64,
    },
    /// The stream's state changed.
    Status(StatusChange),
    /// The feed has ended (end of a file, or stopped).
    Ended,
    /// Nothing arrived within the wait.
    Quiet,
}

#[derive(Default)]
struct SlotState {
    frame: Option<(u64, Frame)>,
    /// When the waiting frame was put.
    since: Option<Instant>,
    dropped: u64,
    statuses: VecDeque<(u64, StatusChange)>,
    /// Order of arrival, so statuses and frames are taken as they came.
    seq: u64,
    ended: bool,
    /// The analysis has gone: the decoder's frames are thrown away.
    closed: bool,
}

/// One camera's latest-frame slot, shared by its decoding thread and its analysis.
pub struct FrameSlot {
    when_busy: WhenBusy,
    state: Mutex<SlotState>,
    changed: Condvar,
}

impl FrameSlot {
    /// An empty slot.
    pub fn new(when_busy: WhenBusy) -> Self {
        Self {
            when_busy,
            state: Mutex::new(SlotState::default()),
            changed: Condvar::new(),
        }
    }

    fn lock(&self) -> MutexGuard<'_, SlotState> {
        // The state is a few plain fields; a panic elsewhere cannot leave it half-written.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Whether the decoder should decode and hand over the next sampled frame: yes when the slot
    /// is empty or its frame has waited too long; no (and the frame counts as dropped) while a
    /// recent one still waits.
    pub fn accepts_next(&self) -> bool {
        let WhenBusy::Skip(after) = self.when_busy else {
            return true;
        };
        let mut s = self.lock();
        let busy = s.frame.is_some() && s.since.is_some_and(|t| t.elapsed() < after);
        if busy {
            s.dropped += 1;
        }
        !busy
    }

    /// The decoder hands over a sampled frame; false once the analysis has gone.
    pub fn put(&self, frame: Frame) -> bool {
        let mut s = self.lock();
        if self.when_busy == WhenBusy::Wait {
            while s.frame.is_some() && !s.closed {
                s = self
                    .changed
                    .wait_timeout(s, Duration::from_millis(200))
                    .map(|(g, _)| g)
                    .unwrap_or_else(|e| e.into_inner().0);
            }
        }
        if s.closed {
            return false;
        }
        s.seq += 1;
        let seq = s.seq;
        s.since = Some(Instant::now());
        if s.frame.replace((seq, frame)).is_some() {
            s.dropped += 1;
        }
        self.changed.notify_all();
        true
    }

    /// The decoder reports a change of the stream's state.
    pub fn status(&self, change: StatusChange) {
        let mut s = self.lock();
        s.seq += 1;
        let seq = s.seq;
        s.statuses.push_back((seq, change));
        self.changed.notify_all();
    }

    /// The decoder has finished.
    pub fn end(&self) {
        self.lock().ended = true;
        self.changed.notify_all();
    }

    /// The analysis stops taking: a decoder still running throws its frames away.
    pub fn close(&self) {
        self.lock().closed = true;
        self.changed.notify_all();
    }

    /// Takes the oldest item, waiting at most `wait` for one.
    pub fn take(&self, wait: Duration) -> FeedItem {
        let mut s = self.lock();
        if s.frame.is_none() && s.statuses.is_empty() && !s.ended {
            s = self
                .changed
                .wait_timeout_while(s, wait, |s| {
                    s.frame.is_none() && s.statuses.is_empty() && !s.ended
                })
                .map(|(g, _)| g)
                .unwrap_or_else(|e| e.into_inner().0);
        }
        let status_first = match (&s.frame, s.statuses.front()) {
            (Some((f, _)), Some((st, _))) => st < f,
            (None, Some(_)) => true,
            _ => false,
        };
        if status_first {
            if let Some((_, change)) = s.statuses.pop_front() {
                return FeedItem::Status(change);
            }
        }
        if let Some((_, frame)) = s.frame.take() {
            let dropped = std::mem::take(&mut s.dropped);
            self.changed.notify_all();
            return FeedItem::Frame { frame, dropped };
        }
        if s.ended {
            FeedItem::Ended
        } else {
            FeedItem::Quiet
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::source::CameraState;
    use std::sync::Arc;

    fn frame(pts: f64) -> Frame {
        let mut f = Frame::from_picture(chrono::Utc::now(), image::RgbImage::new(4, 4));
        f.pts = pts;
        f
    }

    fn pts(item: FeedItem) -> (f64, u64) {
        match item {
            FeedItem::Frame { frame, dropped } => (frame.pts, dropped),
            other => panic!("expected a frame, got {other:?}"),
        }
    }

    #[test]
    fn a_busy_live_camera_keeps_the_newest_frame_and_counts_the_rest() {
        // Frames that waited 0 s are already too old: each put replaces.
        let slot = FrameSlot::new(WhenBusy::Skip(Duration::ZERO));
        slot.status(StatusChange {
            state: CameraState::Online,
            error: None,
        });
        for i in 0..4 {
            assert!(slot.put(frame(i as f64)));
        }
        assert!(matches!(
            slot.take(Duration::ZERO),
            FeedItem::Status(StatusChange {
                state: CameraState::Online,
                ..
            })
        ));
        assert_eq!(pts(slot.take(Duration::ZERO)), (3.0, 3));
        assert!(matches!(slot.take(Duration::ZERO), FeedItem::Quiet));
        assert!(slot.put(frame(4.0)));
        assert_eq!(pts(slot.take(Duration::ZERO)), (4.0, 0));
        slot.end();
        assert!(matches!(slot.take(Duration::ZERO), FeedItem::Ended));
    }

    #[test]
    fn while_a_recent_frame_waits_the_next_ones_are_not_decoded() {
        let slot = FrameSlot::new(WhenBusy::Skip(Duration::from_millis(300)));
        assert!(slot.accepts_next());
        assert!(slot.put(frame(0.0)));
        // Two sampled frames come while frame 0 waits: skipped, counted.
        assert!(!slot.accepts_next());
        assert!(!slot.accepts_next());
        std::thread::sleep(Duration::from_millis(350));
        // Frame 0 has waited too long: the next replaces it.
        assert!(slot.accepts_next());
        assert!(slot.put(frame(3.0)));
        assert_eq!(pts(slot.take(Duration::ZERO)), (3.0, 3));
        assert!(slot.accepts_next());
    }

    #[test]
    fn a_file_read_as_fast_as_possible_waits_for_the_analysis() {
        let slot = Arc::new(FrameSlot::new(WhenBusy::Wait));
        let decoder = {
            let slot = slot.clone();
            std::thread::spawn(move || {
                for i in 0..5 {
                    slot.put(frame(i as f64));
                }
                slot.end();
            })
        };
        let mut seen = Vec::new();
        loop {
            match slot.take(Duration::from_secs(5)) {
                FeedItem::Frame { frame, dropped } => {
                    assert_eq!(dropped, 0);
                    seen.push(frame.pts);
                    std::thread::sleep(Duration::from_millis(10));
                }
                FeedItem::Ended => break,
                other => panic!("unexpected {other:?}"),
            }
        }
        decoder.join().ok();
        assert_eq!(seen, vec![0.0, 1.0, 2.0, 3.0, 4.0]);
    }

    #[test]
    fn statuses_and_frames_come_out_in_the_order_they_went_in() {
        let slot = FrameSlot::new(WhenBusy::Skip(Duration::from_secs(4)));
        slot.put(frame(1.0));
        slot.status(StatusChange {
            state: CameraState::Reconnecting,
            error: Some("stream ended".into()),
        });
        assert_eq!(pts(slot.take(Duration::ZERO)), (1.0, 0));
        assert!(matches!(slot.take(Duration::ZERO), FeedItem::Status(_)));
        // Once closed, a waiting decoder is let go and its frames are refused.
        slot.close();
        assert!(!slot.put(frame(2.0)));
    }
}
