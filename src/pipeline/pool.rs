//! The analysis pool: how many cameras' frames are analysed (preprocessed, inferred, judged) at
//! the same time on this node, and in which order.
//!
//! Every camera decodes on its own thread, but a frame's analysis first takes a place in the
//! pool. There are as many places as the machine can run at once (one per core by default), so
//! 200 cameras do not fight over two cores with 200 half-finished analyses; the places are given
//! in the order the cameras asked (first come, first served), so no camera starves. Only the
//! computing half of a frame holds a place: recording its events (disk writes, the main
//! stream's photo) happens after.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

/// A camera waiting for a place: woken alone when the place is handed to it.
struct Waiter {
    granted: Arc<AtomicBool>,
    thread: std::thread::Thread,
}

#[derive(Default)]
struct Places {
    free: usize,
    waiting: VecDeque<Waiter>,
}

/// The node's analysis places, shared by its cameras.
pub struct AnalysisPool {
    places: Mutex<Places>,
}

impl AnalysisPool {
    /// A pool of `size` places (at least one).
    pub fn new(size: usize) -> Arc<Self> {
        let size = size.max(1);
        Arc::new(Self {
            places: Mutex::new(Places {
                free: size,
                ..Places::default()
            }),
        })
    }

    /// The default size: one place per core, and enough for the detector's batches to fill.
    pub fn default_size(sessions: usize, batch_size: usize) -> usize {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        cores.max(sessions.max(1) * batch_size.max(1))
    }

    fn lock(&self) -> MutexGuard<'_, Places> {
        // Two counters and a queue: a panic elsewhere cannot leave them half-written.
        self.places.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn acquire(&self) {
        let granted = {
            let mut p = self.lock();
            if p.free > 0 && p.waiting.is_empty() {
                p.free -= 1;
                return;
            }
            let granted = Arc::new(AtomicBool::new(false));
            p.waiting.push_back(Waiter {
                granted: granted.clone(),
                thread: std::thread::current(),
            });
            granted
        };
        // A released place is handed to the first in line directly, and only that thread is
        // woken: with hundreds of cameras waiting, waking them all on every release would cost
        // more than the analysis.
        while !granted.load(Ordering::Acquire) {
            std::thread::park();
        }
    }

    fn release(&self) {
        let mut p = self.lock();
        match p.waiting.pop_front() {
            Some(next) => {
                next.granted.store(true, Ordering::Release);
                next.thread.unpark();
            }
            None => p.free += 1,
        }
    }

    /// Waits for a place (in turn) and holds it until the guard is dropped.
    pub fn enter(self: &Arc<Self>) -> InPool {
        self.acquire();
        InPool { pool: self.clone() }
    }
}

/// A place in the pool, held while the guard lives (also when the analysis panics).
pub struct InPool {
    pool: Arc<AnalysisPool>,
}

impl Drop for InPool {
    fn drop(&mut self) {
        self.pool.release();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;
    use std::time::Duration;

    #[test]
    fn no_more_analyses_run_at_once_than_there_are_places() {
        let pool = AnalysisPool::new(2);
        let (now, most) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
        let threads: Vec<_> = (0..8)
            .map(|_| {
                let (pool, now, most) = (pool.clone(), now.clone(), most.clone());
                std::thread::spawn(move || {
                    for _ in 0..5 {
                        let _place = pool.enter();
                        let n = now.fetch_add(1, Ordering::SeqCst) + 1;
                        most.fetch_max(n, Ordering::SeqCst);
                        std::thread::sleep(Duration::from_millis(2));
                        now.fetch_sub(1, Ordering::SeqCst);
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().ok();
        }
        assert_eq!(most.load(Ordering::SeqCst), 2);
    }

    #[test]
    fn places_are_given_in_the_order_asked() {
        let pool = AnalysisPool::new(1);
        let order = Arc::new(Mutex::new(Vec::new()));
        let first = pool.enter();
        let threads: Vec<_> = (0..4)
            .map(|i| {
                let (asking, order) = (pool.clone(), order.clone());
                let t = std::thread::spawn(move || {
                    let _place = asking.enter();
                    order.lock().unwrap_or_else(|e| e.into_inner()).push(i);
                });
                // Each asks after the one before has queued.
                while pool.lock().waiting.len() < i + 1 {
                    std::thread::sleep(Duration::from_millis(1));
                }
                t
            })
            .collect();
        drop(first);
        for t in threads {
            t.join().ok();
        }
        assert_eq!(
            *order.lock().unwrap_or_else(|e| e.into_inner()),
            vec![0, 1, 2, 3]
        );
    }
}
