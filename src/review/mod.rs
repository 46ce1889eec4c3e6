//! Review: what people (and the camera) decide about an event after it is raised, the city's
//! closed loop (闭环): found → reviewed → dispatched → cleared → re-checked → closed
//! (发现、复核、派遣、处置、核查、结案).
//!
//! This module owns the states, who may move an event from one to another, and the message
//! published for each change (`streetwatch.review/1` on `{p}/reviews/{kind}/{camera}`). The
//! ledger records the changes; the console, MQTT commands and the camera's re-check make them.

pub mod accounts;

use serde::{Deserialize, Serialize};

/// Schema id carried in every review message.
pub const SCHEMA: &str = "streetwatch.review/1";

/// Where an event stands in the loop.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ReviewState {
    /// Raised, nobody has looked yet (待复核).
    Pending,
    /// An operator confirmed it (复核确认).
    Confirmed,
    /// An operator rejected it (误报).
    FalseAlarm,
    /// Sent to a unit to deal with (已派遣).
    Dispatched,
    /// The unit or grid worker says it is dealt with (已处置).
    Cleared,
    /// The camera saw the place clear after the clearance (核查通过).
    Verified,
    /// The camera still saw it there (核查未通过).
    NotCleared,
    /// Done (结案).
    Closed,
}

impl ReviewState {
    /// Every state, in loop order.
    pub const ALL: [ReviewState; 8] = [
        Self::Pending,
        Self::Confirmed,
        Self::FalseAlarm,
        Self::Dispatched,
        Self::Cleared,
        Self::Verified,
        Self::NotCleared,
        Self::Closed,
    ];

    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Confirmed => "confirmed",
            Self::FalseAlarm => "false_alarm",
            Self::Dispatched => "dispatched",
            Self::Cleared => "cleared",
            Self::Verified => "verified",
            Self::NotCleared => "not_cleared",
            Self::Closed => "closed",
        }
    }

    /// The state of a wire name.
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|st| st.as_str() == s)
    }

    /// The states an event may move to from this one, whoever asks.
    pub fn next(self) -> &'static [ReviewState] {
        use ReviewState::*;
        match self {
            Pending => &[Confirmed, FalseAlarm],
            // An operator may still change their mind, or close one that ended by itself.
            Confirmed => &[Dispatched, FalseAlarm, Cleared, Closed],
            FalseAlarm => &[Pending, Closed],
            // The squad may find on site that it is not a case (现场核实不属实).
            Dispatched => &[Cleared, FalseAlarm, Closed],
            Cleared => &[Verified, NotCleared, Closed],
            Verified => &[Closed],
            // Not cleared: dispatched again, or the worker clears it again.
            NotCleared => &[Dispatched, Cleared, Closed],
            Closed => &[],
        }
    }
}

impl std::fmt::Display for ReviewState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why an operator rejects an event.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FalseAlarmReason {
    /// Not what the event says (a bench taken for a car, a shadow for a pile). The camera then
    /// suppresses that thing at that place while it stays.
    WrongObject,
    /// Not parked or not staying: moving, waiting in a queue, loading.
    NotParked,
    /// Allowed here (a permit, a market hour, a police car).
    AllowedHere,
    /// The same case as another event.
    Duplicate,
    /// Something else: the note says what.
    Other,
}

impl FalseAlarmReason {
    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::WrongObject => "wrong_object",
            Self::NotParked => "not_parked",
            Self::AllowedHere => "allowed_here",
            Self::Duplicate => "duplicate",
            Self::Other => "other",
        }
    }
}

/// Who makes a change.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Edits zones, manages accounts, and may do what an operator does.
    Admin,
    /// Command-center operator: reviews, dispatches, closes.
    Operator,
    /// Grid worker (网格员): sees the events of their grids and marks them cleared.
    GridWorker,
    /// The camera itself: the re-check after a clearance.
    Camera,
    /// A city platform reporting back over MQTT (its own dispatch system).
    Platform,
}

impl Role {
    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Admin => "admin",
            Self::Operator => "operator",
            Self::GridWorker => "grid_worker",
            Self::Camera => "camera",
            Self::Platform => "platform",
        }
    }

    /// The role of an account's wire name (people only).
    pub fn of_account(s: &str) -> Option<Self> {
        match s {
            "admin" => Some(Self::Admin),
            "operator" => Some(Self::Operator),
            "grid_worker" => Some(Self::GridWorker),
            _ => None,
        }
    }

    /// Whether this role may move an event into `to`.
    pub fn may_set(self, to: ReviewState) -> bool {
        use ReviewState::*;
        match self {
            Self::Admin | Self::Operator => !matches!(to, Verified | NotCleared),
            Self::GridWorker => to == Cleared,
            Self::Camera => matches!(to, Verified | NotCleared),
            Self::Platform => !matches!(to, Verified | NotCleared),
        }
    }
}

/// Who changes a review: a name and a role.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Actor {
    /// Account name, `camera:<id>`, or the name a platform gave.
    pub name: String,
    /// Their role.
    pub role: Role,
    /// For a grid worker: the grids they may act in.
    pub grids: Vec<String>,
}

impl Actor {
    /// Whether this actor may see and act on an event of `grid`.
    pub fn covers(&self, grid: &str) -> bool {
        self.role != Role::GridWorker || self.grids.iter().any(|g| g == grid)
    }
}

/// A change someone asks for (`POST /api/events/{id}/review`, `{p}/events/{id}/review/set`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReviewRequest {
    /// The state to move to.
    pub state: String,
    /// For `false_alarm`: why.
    #[serde(default)]
    pub reason: Option<FalseAlarmReason>,
    /// Free text (required with reason `other`).
    #[serde(default)]
    pub note: String,
    /// For `dispatched`: the unit sent (default: the zone's responsible unit).
    #[serde(default)]
    pub unit: Option<String>,
    /// For `dispatched`: by when it must be cleared (RFC 3339).
    #[serde(default)]
    pub due: Option<String>,
    /// Over MQTT: who made the change on the platform's side.
    #[serde(default)]
    pub by: Option<String>,
    /// For `cleared`: a JPEG photo of the cleared place, base64 (the console sends it).
    #[serde(default)]
    pub photo_base64: Option<String>,
}

/// A photo attached to a review change (the worker's, or the camera's re-check frame).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReviewPhoto {
    /// File path.
    pub path: String,
    /// sha256 of the file, hex.
    pub sha256: String,
}

/// What the event is, as a review change needs to know it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventFacts {
    /// Event kind.
    pub kind: String,
    /// Camera id.
    pub camera: String,
    /// Zone id.
    pub zone: String,
    /// Grid.
    pub grid: String,
    /// The zone's responsible unit.
    pub responsible_unit: String,
    /// Where it stands now.
    pub state: ReviewState,
}

/// A change checked and ready to record.
#[derive(Debug, Clone, PartialEq)]
pub struct ReviewChange {
    /// From.
    pub from: ReviewState,
    /// To.
    pub to: ReviewState,
    /// For `false_alarm`.
    pub reason: Option<FalseAlarmReason>,
    /// Note.
    pub note: String,
    /// For `dispatched`.
    pub unit: Option<String>,
    /// For `dispatched`, RFC 3339 as given.
    pub due: Option<String>,
}

/// A review change as published on `{p}/reviews/{kind}/{camera}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReviewMessage {
    /// Always [`SCHEMA`].
    pub schema: String,
    /// The event.
    pub event_id: String,
    /// 1 for the event's first review change, +1 for each later one.
    pub seq: u32,
    /// Event kind.
    pub kind: String,
    /// Camera id.
    pub camera: String,
    /// Zone id.
    pub zone: String,
    /// Grid.
    pub grid: String,
    /// State before.
    pub from: ReviewState,
    /// State now.
    pub state: ReviewState,
    /// Who: account name, `camera:<id>`, or the platform's name.
    pub by: String,
    /// Their role.
    pub role: Role,
    /// When (RFC 3339 with offset).
    pub at: String,
    /// For `false_alarm`.
    pub reason: Option<FalseAlarmReason>,
    /// Note (may be empty).
    pub note: String,
    /// For `dispatched`: the unit.
    pub unit: Option<String>,
    /// For `dispatched`: due by.
    pub due: Option<String>,
    /// The worker's photo (`cleared`) or the camera's (`verified`, `not_cleared`).
    pub photo: Option<ReviewPhoto>,
}

/// Why a change was not made; each maps to one HTTP status.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReviewError {
    /// No such event (404).
    #[error("no event {0:?}")]
    NotFound(String),
    /// Outside the actor's role or grids (403).
    #[error("{0}")]
    Forbidden(String),
    /// The state machine refuses it (409).
    #[error("{0}")]
    Conflict(String),
    /// The request itself is wrong (400).
    #[error("{0}")]
    Invalid(String),
    /// The ledger failed (500).
    #[error("{0}")]
    Storage(String),
    /// In a cluster: the event's camera runs on another node, which handles its reviews (409).
    #[error("camera {0} runs on another node now: review the event there (GET /api/cluster names the node and its console)")]
    Elsewhere(String),
}

/// Checks `req` by `actor` against the event as it stands: the state exists, the role may set
/// it, the event is in the actor's grids, the state machine allows it, and the fields it needs
/// are there.
pub fn check(
    facts: &EventFacts,
    req: &ReviewRequest,
    actor: &Actor,
) -> Result<ReviewChange, ReviewError> {
    let to = ReviewState::parse(req.state.trim()).ok_or_else(|| {
        ReviewError::Invalid(format!(
            "unknown state {:?}: use one of {}",
            req.state,
            ReviewState::ALL.map(|s| s.as_str()).join(", ")
        ))
    })?;
    if !actor.covers(&facts.grid) {
        return Err(ReviewError::Forbidden(format!(
            "{} works in grid(s) {:?}; this event is in {:?}",
            actor.name, actor.grids, facts.grid
        )));
    }
    if !actor.role.may_set(to) {
        return Err(ReviewError::Forbidden(format!(
            "a {} cannot set {to}",
            actor.role.as_str()
        )));
    }
    if !facts.state.next().contains(&to) {
        let allowed: Vec<&str> = facts.state.next().iter().map(|s| s.as_str()).collect();
        return Err(ReviewError::Conflict(format!(
            "the event is {}; from there it can go to {}",
            facts.state,
            if allowed.is_empty() {
                "nothing (closed)".to_string()
            } else {
                allowed.join(", ")
            }
        )));
    }
    let note = req.note.trim().chars().take(2000).collect::<String>();
    let reason = match (to, req.reason) {
        (ReviewState::FalseAlarm, None) => {
            return Err(ReviewError::Invalid(
                "a false alarm needs a reason: wrong_object, not_parked, allowed_here, duplicate or other".into(),
            ))
        }
        (ReviewState::FalseAlarm, Some(FalseAlarmReason::Other)) if note.is_empty() => {
            return Err(ReviewError::Invalid(
                "reason \"other\" needs a note saying what".into(),
            ))
        }
        (ReviewState::FalseAlarm, r) => r,
        (_, Some(_)) => {
            return Err(ReviewError::Invalid(format!(
                "a reason goes with false_alarm only, not with {to}"
            )))
        }
        (_, None) => None,
    };
    let (unit, due) = if to == ReviewState::Dispatched {
        let unit = req
            .unit
            .as_deref()
            .map(str::trim)
            .filter(|u| !u.is_empty())
            .unwrap_or(&facts.responsible_unit)
            .to_string();
        if unit.is_empty() {
            return Err(ReviewError::Invalid(
                "dispatched needs a unit (the zone has no responsible_unit)".into(),
            ));
        }
        let due = match req.due.as_deref().map(str::trim).filter(|d| !d.is_empty()) {
            Some(d) => Some(
                chrono::DateTime::parse_from_rfc3339(d)
                    .map_err(|e| {
                        ReviewError::Invalid(format!(
                            "due {d:?} is not an RFC 3339 time ({e}); e.g. 2026-12-02T18:00:00+08:00"
                        ))
                    })?
                    .to_rfc3339(),
            ),
            None => None,
        };
        (Some(unit), due)
    } else {
        (None, None)
    };
    if req.photo_base64.is_some() && to != ReviewState::Cleared {
        return Err(ReviewError::Invalid(format!(
            "a photo goes with cleared only, not with {to}"
        )));
    }
    Ok(ReviewChange {
        from: facts.state,
        to,
        reason,
        note,
        unit,
        due,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn facts(state: ReviewState) -> EventFacts {
        EventFacts {
            kind: "illegal_parking".into(),
            camera: "c".into(),
            zone: "z".into(),
            grid: "第八网格".into(),
            responsible_unit: "解放路街道城管中队".into(),
            state,
        }
    }

    fn actor(role: Role, grids: &[&str]) -> Actor {
        Actor {
            name: "li".into(),
            role,
            grids: grids.iter().map(|g| g.to_string()).collect(),
        }
    }

    fn req(state: &str) -> ReviewRequest {
        ReviewRequest {
            state: state.into(),
            ..Default::default()
        }
    }

    #[test]
    fn the_loop_runs_from_pending_to_closed() {
        use ReviewState::*;
        let op = actor(Role::Operator, &[]);
        let worker = actor(Role::GridWorker, &["第八网格"]);
        let cam = actor(Role::Camera, &[]);
        let steps: [(&Actor, &str, ReviewState); 5] = [
            (&op, "confirmed", Confirmed),
            (&op, "dispatched", Dispatched),
            (&worker, "cleared", Cleared),
            (&cam, "verified", Verified),
            (&op, "closed", Closed),
        ];
        let mut state = Pending;
        for (who, to, want) in steps {
            let c = check(&facts(state), &req(to), who).unwrap();
            assert_eq!((c.from, c.to), (state, want));
            state = c.to;
        }
        assert!(Closed.next().is_empty());
    }

    #[test]
    fn refusals_say_why_with_the_right_kind() {
        use ReviewState::*;
        let op = actor(Role::Operator, &[]);
        // The state machine: pending cannot jump to cleared.
        let e = check(&facts(Pending), &req("cleared"), &op).unwrap_err();
        assert!(matches!(e, ReviewError::Conflict(ref m) if m.contains("confirmed, false_alarm")));
        // A closed event goes nowhere.
        assert!(matches!(
            check(&facts(Closed), &req("pending"), &op),
            Err(ReviewError::Conflict(_))
        ));
        // Roles: a worker cannot confirm; nobody but the camera verifies.
        let worker = actor(Role::GridWorker, &["第八网格"]);
        assert!(matches!(
            check(&facts(Pending), &req("confirmed"), &worker),
            Err(ReviewError::Forbidden(_))
        ));
        assert!(matches!(
            check(&facts(Cleared), &req("verified"), &op),
            Err(ReviewError::Forbidden(_))
        ));
        // Grids: a worker of another grid cannot clear it.
        let other = actor(Role::GridWorker, &["第九网格"]);
        let e = check(&facts(Dispatched), &req("cleared"), &other).unwrap_err();
        assert!(matches!(e, ReviewError::Forbidden(ref m) if m.contains("第九网格")));
        // Fields: a false alarm needs a reason, "other" a note; unknown states are named.
        assert!(matches!(
            check(&facts(Pending), &req("false_alarm"), &op),
            Err(ReviewError::Invalid(_))
        ));
        let other_reason = ReviewRequest {
            reason: Some(FalseAlarmReason::Other),
            ..req("false_alarm")
        };
        assert!(matches!(
            check(&facts(Pending), &other_reason, &op),
            Err(ReviewError::Invalid(ref m)) if m.contains("note")
        ));
        assert!(matches!(
            check(&facts(Pending), &req("done"), &op),
            Err(ReviewError::Invalid(ref m)) if m.contains("pending, confirmed")
        ));
    }

    #[test]
    fn dispatch_defaults_to_the_zone_unit_and_checks_the_due_time() {
        let op = actor(Role::Operator, &[]);
        let c = check(&facts(ReviewState::Confirmed), &req("dispatched"), &op).unwrap();
        assert_eq!(c.unit.as_deref(), Some("解放路街道城管中队"));
        let bad_due = ReviewRequest {
            due: Some("tomorrow".into()),
            ..req("dispatched")
        };
        assert!(matches!(
            check(&facts(ReviewState::Confirmed), &bad_due, &op),
            Err(ReviewError::Invalid(ref m)) if m.contains("RFC 3339")
        ));
    }
}
