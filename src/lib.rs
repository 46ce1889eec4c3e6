//! streetwatch: watches existing street cameras and tells a city command center, over MQTT,
//! when a vehicle parks illegally, with the place, the grid responsible, evidence photos and
//! how often it recurs there.
//!
//! The modules follow the data flow:
//! `source` (decode, sample) -> `detector` -> `tracker` -> `scene` (zones, rules) ->
//! `incidents` -> `evidence` + `ledger` -> `event` -> `mqtt`. `domain` is the leaf every stage
//! and `config` share (zone and event kinds, categories, schedules, decode modes, the broker
//! address): `config` imports no stage that imports it; `pipeline` wires one camera's
//! stages, `app` runs cameras, replays and the demo; `compose` renders test and demo clips; `models` and `trial` serve the
//! `models` and `detect` commands.

pub mod app;
pub mod assets;
pub mod change;
pub mod city;
pub mod cluster;
pub mod compose;
pub mod config;
pub mod console;
pub mod detector;
pub mod domain;
pub mod eval;
pub mod event;
pub mod evidence;
pub mod geometry;
pub mod host;
pub mod incidents;
pub mod ledger;
pub mod live;
pub mod models;
pub mod motion;
pub mod mqtt;
pub mod picture;
pub mod pipeline;
pub mod progress;
pub mod report;
pub mod retention;
pub mod review;
pub mod scene;
pub mod source;
pub mod stats;
pub mod supervisor;
pub mod tls;
pub mod tracker;
pub mod trial;
pub mod users;
