//! shopnet: a config-driven training and inference engine for e-commerce models, on Burn.
//!
//! One trainer ([`train`]) drives every model family through the [`train::Task`] trait;
//! the CLI ([`cli`]) reaches a family through [`tasks::Family`], chosen by `model.kind`.
//! The compute device is picked once, in [`backend`].

pub mod backend;
pub mod bench;
pub mod cli;
pub mod config;
pub mod data;
pub mod embeddings;
pub mod export;
pub mod metrics;
pub mod models;
pub mod run_dir;
pub mod score;
pub mod synth;
pub mod tasks;
pub mod train;
