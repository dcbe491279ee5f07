//! What a run leaves on disk and what batch jobs write: the run directory, weights,
//! export bundles and their manifest, score files and embedding indexes.

pub mod bundle;
pub mod embeddings;
pub mod findings;
pub mod manifest;
pub mod opened;
pub mod run_dir;
pub mod scores;
pub mod weights;
