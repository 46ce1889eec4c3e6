use std::path::Path;
#[derive(Debug, thiserror::Error)] #[error("x")] pub struct ComposeError;
pub struct Scenario;
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)] pub struct GroundTruth { pub frame_count: u64, pub fps: f64 }
pub fn load_scenario(_p: &Path) -> Result<Scenario, ComposeError> { Err(ComposeError) }
pub fn render(_s: &Scenario, _a: &Path, _o: &Path) -> Result<GroundTruth, ComposeError> { Err(ComposeError) }
