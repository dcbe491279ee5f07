//! What every layer above builds on: the run config, the device, metrics, host
//! randomness, splits, tensor helpers, progress display and crash-safe files.

pub mod backend;
pub mod config;
pub mod files;
pub mod memory;
pub mod metrics;
pub mod progress;
pub mod projection;
pub mod quote;
pub mod rng;
pub mod shard;
pub mod sparse;
pub mod split;
pub mod tensor;
pub mod unwind;
