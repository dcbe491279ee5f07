//! shopnet: a config-driven training and inference engine for e-commerce models, on Burn.
//!
//! Layers, each importing only the ones below it (checked by `tests/architecture.rs`):
//! - [`cli`]: the command line, one function per subcommand;
//! - [`bench`], [`serve`], [`report`]: the reference benchmark workloads; the inference
//!   server; the HTML run reports;
//! - [`families`]: one file per model family behind the [`families::family::Family`]
//!   trait, and the generic `train` / `eval` / `score` / `export` of [`families::driver`];
//! - [`train`]: the one training loop, driven through [`train::Task`];
//! - [`data`], [`models`], [`artifacts`]: input formats, nets, and what runs leave on disk;
//! - [`ops`]: shopnet's fused kernels (Burn backend extensions) with their backward passes;
//! - [`base`]: config, device, metrics, host randomness, splits, files.

pub mod artifacts;
pub mod base;
pub mod bench;
pub mod cli;
pub mod data;
pub mod families;
pub mod models;
pub mod ops;
pub mod report;
pub mod serve;
pub mod train;
