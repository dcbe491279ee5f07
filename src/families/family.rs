//! The traits a model family implements. A family is one kind of model (`model.kind`):
//! its config sections, its data, its net and how it scores new input. The generic
//! [`driver`](super::driver) runs `train`, `eval`, `score` and `export` for every family
//! through [`Family`]; `recommend` and `embed` are capabilities only some families have
//! ([`Recommend`], [`Embed`]).
//!
//! Adding a family, in order: the `[model]` and `[data]` types (serde, `deny_unknown_fields`,
//! defaults), [`Family::validate`], a [`Task`] (batches, loss, metrics) built by
//! [`Family::prepare`], the trained net's shape ([`Family::net`]), the evaluation task
//! ([`Family::restore`]), scoring and its schema; then one line in `families::with_family!`
//! and a `ModelKind` variant. See `src/families/README.md`.

use std::path::Path;

use anyhow::Result;
use burn::tensor::Device;
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::online::Served;
use crate::artifacts::opened::Artifacts;
use crate::base::config::{ModelKind, RunConfig};
use crate::base::shard::Shard;
use crate::base::split::Split;
use crate::train::Task;

/// A family's whole run config: its `[model]` and `[data]` plus the shared sections.
pub type Config<F> = RunConfig<<F as Family>::Model, <F as Family>::Data>;

/// The trained net of a family.
pub type Net<F> = <<F as Family>::Task as Task>::Model;

pub trait Family: Sized + 'static {
    const KIND: ModelKind;
    /// Files of the run besides weights and config that scoring needs (a vocabulary, a
    /// tokenizer): written at the start of training, carried into export bundles.
    const RUN_FILES: &'static [&'static str] = &[];
    /// The splits `eval` accepts; a family whose data has no validation part (the
    /// recommenders, where the test split also picks the best epoch) leaves it out.
    const EVAL_SPLITS: &'static [Split] = &[Split::Val, Split::Test];

    /// `[model]`, without its `kind` tag.
    type Model: Serialize + DeserializeOwned + Clone;
    /// `[data]`.
    type Data: Serialize + DeserializeOwned + Clone;
    /// What `run.json` keeps about the input that rebuilds the net (sizes, a vocabulary's
    /// length, an encoder's config).
    type Input: Serialize + DeserializeOwned;
    type Task: Task;

    /// Checks what serde cannot (ranges, combinations of keys), naming the key.
    fn validate(config: &Config<Self>) -> Result<()>;

    /// The names of the metrics `Task::evaluate` reports, for checking
    /// `train.early_stopping.metric` before any data is read.
    fn metric_names(config: &Config<Self>) -> Vec<String>;

    /// Loads the training data and builds the task. `resume_from` is the run directory
    /// when a run resumes: its own files (vocabulary, tokenizer) are reused, not rebuilt.
    fn prepare(
        config: &Config<Self>,
        device: &Device,
        resume_from: Option<&Path>,
    ) -> Result<Prepared<Self>>;

    /// The untrained net a trained run's weights load into.
    fn net(trained: &Trained<Self>, device: &Device) -> Result<Net<Self>>;

    /// The task over the run's configured data, for `eval`, tokenised or normalised as the
    /// run was (its labels, its vocabulary).
    fn restore(trained: &Trained<Self>, device: &Device) -> Result<Self::Task>;

    /// Scores the examples of `input` (a path or a builtin name) that belong to `shard`
    /// and writes one row per example to `output`; returns the row count.
    fn score(trained: &Trained<Self>, job: &BatchJob<'_>, device: &Device) -> Result<usize>;

    /// The input and output formats, for an export manifest.
    fn schema(trained: &Trained<Self>) -> serde_json::Value;

    /// The trained model loaded for online inference (`shopnet serve`), its inputs
    /// preprocessed as `score` does.
    fn online(trained: Trained<Self>, device: &Device) -> Result<Box<dyn Served>>;
}

/// What [`Family::prepare`] hands the driver.
pub struct Prepared<F: Family> {
    pub task: F::Task,
    /// Class names in output order (empty for a scorer without classes).
    pub labels: Vec<String>,
    pub input: F::Input,
    /// The contents of `Family::RUN_FILES`, by name, for a new run.
    pub run_files: Vec<(&'static str, Vec<u8>)>,
}

/// A batch job over a file of examples: `score`, `embed`, `recommend`.
pub struct BatchJob<'a> {
    /// A path or a builtin name (`recommend`: `all` or a file of user ids).
    pub input: &'a str,
    pub output: &'a Path,
    /// The examples this process handles; the others are another shard's.
    pub shard: Shard,
}

/// A trained run or bundle, read as family `F`: its typed config and input.
pub struct Trained<F: Family> {
    pub artifacts: Artifacts,
    pub config: Config<F>,
    pub input: F::Input,
}

impl<F: Family> Trained<F> {
    pub fn labels(&self) -> &[String] {
        &self.artifacts.info.labels
    }
}

/// Families that rank items for users.
pub trait Recommend: Family {
    /// Writes the top `k` items of each user (`users` is `all` or a file of user ids) to
    /// `output`; returns the row count.
    fn recommend(
        trained: &Trained<Self>,
        job: &BatchJob<'_>,
        k: usize,
        device: &Device,
    ) -> Result<usize>;
}

/// Families whose net embeds items (images) for similarity search.
pub trait Embed: Family {
    /// Writes one L2-normalised embedding per input item to an index at `output`; returns
    /// the row count.
    fn embed(trained: &Trained<Self>, job: &BatchJob<'_>, device: &Device) -> Result<usize>;

    /// L2-normalised embeddings of the given files, `[files.len(), D]` row-major.
    fn embed_files(trained: &Trained<Self>, files: &[String], device: &Device) -> Result<Vec<f32>>;
}
