//! Review changes made on this node (console, command center) and what each asks of the
//! camera that raised the event: a re-check after `cleared`, a suppression after a
//! `false_alarm` of the "wrong object" kind (lifted again if the verdict is taken back).

use chrono::Utc;

use super::{CameraCommand, Supervisor};
use crate::geometry::BBox;
use crate::ledger::Suppression;
use crate::pipeline::RecheckRequest;
use crate::review::{
    Actor, FalseAlarmReason, ReviewError, ReviewMessage, ReviewPhoto, ReviewRequest, ReviewState,
};

impl Supervisor {
    /// Records a review change by `actor` and passes on what it asks of the camera.
    pub fn review(
        &mut self,
        event_id: &str,
        req: &ReviewRequest,
        actor: &Actor,
        photo: Option<ReviewPhoto>,
    ) -> Result<ReviewMessage, ReviewError> {
        let ledger = self
            .ledger
            .as_ref()
            .ok_or_else(|| ReviewError::Storage("the ledger is not open (see the log)".into()))?;
        let storage = |e: crate::ledger::LedgerError| ReviewError::Storage(e.to_string());
        // In a cluster the node running the camera reviews its events: it re-checks the street
        // after a clearance and keeps the suppressions, and its review changes reach the city
        // ledger from one place.
        if self.custody.is_some() {
            let camera = ledger
                .incident(event_id)
                .map_err(storage)?
                .map(|i| i.camera);
            match camera {
                Some(c) if !self.cameras.contains_key(&c) => return Err(ReviewError::Elsewhere(c)),
                None => return Err(ReviewError::NotFound(event_id.to_string())),
                Some(_) => {}
            }
        }
        let tz = self.loaded.node_tz();
        let now = Utc::now();
        let (msg, change) = ledger.apply_review(event_id, req, actor, now, tz, photo)?;
        super::log_review(&msg);
        let mut commands = Vec::new();
        match change.to {
            ReviewState::Cleared => {
                if let Some(inc) = ledger.incident(event_id).map_err(storage)? {
                    let b = inc.bbox;
                    commands.push(CameraCommand::Recheck(RecheckRequest {
                        event_id: event_id.to_string(),
                        zone_id: inc.zone.clone(),
                        place: BBox::from_array(b),
                        cleared_at: None,
                    }));
                }
            }
            ReviewState::FalseAlarm if change.reason == Some(FalseAlarmReason::WrongObject) => {
                if let Some(s) = ledger
                    .add_suppression(event_id, &actor.name, now)
                    .map_err(storage)?
                {
                    commands.push(CameraCommand::Suppress(s));
                }
            }
            // The verdict taken back: the thing may raise events again.
            ReviewState::Pending => {
                for s in ledger
                    .active_suppressions(Some(&msg.camera))
                    .map_err(storage)?
                    .into_iter()
                    .filter(|s| s.event_id == event_id)
                {
                    ledger
                        .end_suppression(s.id, now, "removed")
                        .map_err(storage)?;
                    commands.push(CameraCommand::Unsuppress(s.id));
                }
            }
            _ => {}
        }
        for command in commands {
            self.tell_camera(&msg.camera, command);
        }
        Ok(msg)
    }

    /// Lifts a suppression (the console's list); returns it as it was.
    pub fn unsuppress(&mut self, id: i64) -> Result<Suppression, String> {
        let ledger = self
            .ledger
            .as_ref()
            .ok_or_else(|| "the ledger is not open (see the log)".to_string())?;
        let s = ledger
            .suppression(id)
            .map_err(|e| e.to_string())?
            .filter(|s| s.ended.is_none())
            .ok_or_else(|| format!("no active suppression {id}"))?;
        ledger
            .end_suppression(id, Utc::now(), "removed")
            .map_err(|e| e.to_string())?;
        self.tell_camera(&s.camera, CameraCommand::Unsuppress(id));
        Ok(s)
    }

    /// Sends a command to a running camera. One that is not running picks the change up from
    /// the ledger when it starts (re-checks due, suppressions in force).
    fn tell_camera(&self, camera: &str, command: CameraCommand) {
        match self.cameras.get(camera) {
            Some(running) => {
                if let Err(e) = running.tell(camera, command) {
                    tracing::warn!(camera = %camera, "review change not passed on now: {e}; the camera picks it up from the ledger when it restarts");
                }
            }
            None => tracing::info!(
                camera = %camera,
                "camera not running on this node: it picks the review change up when it starts"
            ),
        }
    }
}
