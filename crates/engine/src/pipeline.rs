//! A stored pipeline version, parsed (a leaf).

use crate::error::EngineError;
use redrive_core::definition::{Pipeline, parse_pipeline_text};
use redrive_store::PipelineRecord;
use std::path::PathBuf;

/// A stored pipeline version, parsed.
#[derive(Debug)]
pub struct LoadedPipeline {
    pub record: PipelineRecord,
    pub pipeline: Pipeline,
    /// Where relative paths (commands, working directories) resolve.
    pub base_dir: Option<PathBuf>,
}

impl LoadedPipeline {
    pub fn from_record(record: PipelineRecord) -> Result<LoadedPipeline, EngineError> {
        let pipeline = parse_pipeline_text(&record.definition_json).map_err(|problems| EngineError::StoredDefinition {
            name: record.name.clone(),
            version: record.version,
            problems: problems.iter().map(|p| format!("{}: {}", p.path, p.message)).collect::<Vec<_>>().join("; "),
        })?;
        let base_dir = record.source_dir.as_ref().map(PathBuf::from);
        Ok(LoadedPipeline { record, pipeline, base_dir })
    }
}
