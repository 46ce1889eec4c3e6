//! Evidence retention: photos of events that ended more than `evidence.retention_days` ago are
//! deleted; photos of events still open never are, however old. The ledger keeps the record
//! (path, sha256, when it was deleted), so reports can say a photo existed and is gone.

use std::path::Path;

use chrono::{DateTime, Utc};

use crate::ledger::{Ledger, LedgerError};

/// What one sweep did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SweepSummary {
    /// Files deleted.
    pub deleted: usize,
    /// Bytes they took.
    pub freed_bytes: u64,
    /// Files past retention that were already gone (deleted by hand); marked deleted too.
    pub already_gone: usize,
    /// Files that could not be deleted (permissions); tried again next sweep.
    pub failed: usize,
}

/// Deletes the evidence of events that ended before `now - retention`.
pub fn sweep(
    ledger: &Ledger,
    now: DateTime<Utc>,
    retention: chrono::Duration,
) -> Result<SweepSummary, LedgerError> {
    let mut summary = SweepSummary::default();
    let mut events_touched = Vec::new();
    for file in ledger.expired_evidence(now - retention)? {
        let path = Path::new(&file.path);
        let size = std::fs::metadata(path).map(|m| m.len()).unwrap_or(0);
        match std::fs::remove_file(path) {
            Ok(()) => {
                summary.deleted += 1;
                summary.freed_bytes += size;
                remove_empty_parents(path);
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => summary.already_gone += 1,
            Err(e) => {
                tracing::warn!("retention: cannot delete {}: {e}", file.path);
                summary.failed += 1;
                continue;
            }
        }
        ledger.mark_evidence_deleted(&file.path, now)?;
        events_touched.push(file.event_id);
    }
    events_touched.sort();
    events_touched.dedup();
    let days = retention.num_seconds() as f64 / 86_400.0;
    for id in &events_touched {
        ledger.note(
            id,
            now,
            "evidence_deleted",
            &format!("retention {days} days"),
        )?;
    }
    Ok(summary)
}

/// Removes the day and camera folders a deletion left empty (`remove_dir` refuses non-empty ones).
fn remove_empty_parents(file: &Path) {
    let mut dir = file.parent();
    for _ in 0..2 {
        match dir {
            Some(d) if std::fs::remove_dir(d).is_ok() => dir = d.parent(),
            _ => return,
        }
    }
}
