//! Commands from the command center: zone switches (`…/zones/{zone}/set`, `ON`/`OFF`),
//! config reload (`{p}/nodes/{node}/reload`) and review changes from a city platform
//! (`{p}/events/{event_id}/review/set`). A command that cannot be read is answered on
//! `{p}/nodes/{node}/errors` with what was wrong.

use serde::Serialize;

use super::Topics;

/// A command received over MQTT.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// Arm or disarm a zone.
    SetZone {
        /// Camera id.
        camera: String,
        /// Zone id.
        zone: String,
        /// `ON` = armed.
        on: bool,
    },
    /// Re-read the config file and apply what changed.
    Reload,
    /// A review change from a city platform (`{p}/events/{event_id}/review/set`).
    Review {
        /// The event.
        event_id: String,
        /// The change asked for.
        request: crate::review::ReviewRequest,
    },
}

/// A refused command, as published on `{p}/nodes/{node}/errors` (JSON).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CommandError {
    /// The topic the command came on.
    pub topic: String,
    /// The payload, as text (cut at 200 characters).
    pub payload: String,
    /// What was wrong and what to send instead.
    pub error: String,
}

impl CommandError {
    /// An error about a command received on `topic` with `payload`.
    pub fn new(topic: &str, payload: &[u8], error: impl Into<String>) -> Self {
        Self {
            topic: topic.to_string(),
            payload: String::from_utf8_lossy(payload).chars().take(200).collect(),
            error: error.into(),
        }
    }
}

/// Reads a command from an incoming message.
pub fn parse(topics: &Topics, topic: &str, payload: &[u8]) -> Result<Command, CommandError> {
    if topic == topics.reload() {
        return Ok(Command::Reload);
    }
    if let Some(event_id) = topics.parse_review_set(topic) {
        let request: crate::review::ReviewRequest =
            serde_json::from_slice(payload).map_err(|e| {
                CommandError::new(
                    topic,
                    payload,
                    format!(
                        "a review change is JSON {{\"state\": ..., \"by\": ..., \"note\": ...}} ({e})"
                    ),
                )
            })?;
        if request.photo_base64.is_some() {
            return Err(CommandError::new(
                topic,
                payload,
                "photos are attached through the console or POST /api/events/{id}/review, not over MQTT: leave out photo_base64",
            ));
        }
        if request.by.as_deref().is_none_or(|b| b.trim().is_empty()) {
            return Err(CommandError::new(
                topic,
                payload,
                "a review change from a platform names who made it: \"by\"",
            ));
        }
        return Ok(Command::Review {
            event_id: event_id.to_string(),
            request,
        });
    }
    let Some((camera, zone)) = topics.parse_zone_set(topic) else {
        return Err(CommandError::new(
            topic,
            payload,
            "not a command topic: use {prefix}/cameras/{camera}/zones/{zone}/set, {prefix}/nodes/{node}/reload or {prefix}/events/{event_id}/review/set",
        ));
    };
    let on = match String::from_utf8_lossy(payload)
        .trim()
        .to_ascii_uppercase()
        .as_str()
    {
        "ON" => true,
        "OFF" => false,
        _ => {
            return Err(CommandError::new(
                topic,
                payload,
                "a zone switch takes ON or OFF",
            ))
        }
    };
    Ok(Command::SetZone {
        camera: camera.to_string(),
        zone: zone.to_string(),
        on,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_commands_and_explains_bad_ones() {
        let t = Topics::new("sw", "n1");
        assert_eq!(
            parse(&t, "sw/cameras/c/zones/z/set", b"off"),
            Ok(Command::SetZone {
                camera: "c".into(),
                zone: "z".into(),
                on: false
            })
        );
        assert_eq!(parse(&t, "sw/nodes/n1/reload", b""), Ok(Command::Reload));
        let e = parse(&t, "sw/cameras/c/zones/z/set", b"maybe").unwrap_err();
        assert_eq!(e.payload, "maybe");
        assert!(e.error.contains("ON or OFF"));
    }
}
