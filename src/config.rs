//! Run configuration: one TOML file with `[model]`, `[data]`, `[train]` and `[runtime]`.
//!
//! Every section is a plain serde struct with `deny_unknown_fields` and field defaults
//! (burn's `Config` derive does not apply defaults when deserialising). `[model]` and
//! `[data]` differ per model family, so a run config is generic over them and the loader
//! first peeks at `model.kind` to pick the family.
//!
//! Errors point at the file, line and key path (`configs/x.toml:7: train.lr: expected a
//! float, got "fast"`), so the document is deserialised from its text with spans kept.

use std::fmt;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, anyhow, bail};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

/// The model families shopnet trains. `model.kind` in a config names one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ModelKind {
    Gcn,
    Gat,
    Recommender,
    Intent,
    Vgg,
    Bert,
}

impl ModelKind {
    pub const ALL: &'static [ModelKind] = &[ModelKind::Gcn, ModelKind::Gat, ModelKind::Recommender, ModelKind::Intent, ModelKind::Vgg, ModelKind::Bert];

    pub fn name(self) -> &'static str {
        match self {
            ModelKind::Gcn => "gcn",
            ModelKind::Gat => "gat",
            ModelKind::Recommender => "recommender",
            ModelKind::Intent => "intent",
            ModelKind::Vgg => "vgg",
            ModelKind::Bert => "bert",
        }
    }

    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL.iter().copied().find(|kind| kind.name() == name)
    }
}

impl fmt::Display for ModelKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A whole run: the family-specific model and data sections plus the shared ones.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RunConfig<M, D> {
    pub model: M,
    pub data: D,
    #[serde(default)]
    pub train: TrainConfig,
    #[serde(default)]
    pub runtime: RuntimeConfig,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OptimizerKind {
    Adam,
    Adamw,
    Sgd,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Schedule {
    Constant,
    Step,
    Cosine,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Direction {
    Min,
    Max,
}

/// The shared trainer's settings. Epoch-based: a full-batch graph task has one step
/// per epoch, a mini-batch task many.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TrainConfig {
    pub epochs: usize,
    pub batch_size: usize,
    pub optimizer: OptimizerKind,
    pub lr: f64,
    pub weight_decay: f64,
    /// SGD momentum; ignored by Adam and AdamW.
    pub momentum: f64,
    pub beta1: f64,
    pub beta2: f64,
    pub eps: f64,
    pub schedule: Schedule,
    /// Linear warm-up from 0 to `lr` over this many optimiser steps, before the schedule.
    pub warmup_steps: usize,
    /// Step schedule: multiply the rate by `gamma` every `step_epochs` epochs.
    pub step_epochs: usize,
    pub gamma: f64,
    /// Cosine schedule: the floor the rate decays to.
    pub min_lr: f64,
    /// Clip each parameter's gradient to this L2 norm (burn's per-tensor
    /// `GradientClipping::Norm`); 0 disables clipping.
    pub clip_grad_norm: f64,
    pub seed: u64,
    pub early_stopping: EarlyStoppingConfig,
}

impl Default for TrainConfig {
    fn default() -> Self {
        Self {
            epochs: 100,
            batch_size: 32,
            optimizer: OptimizerKind::Adam,
            lr: 1e-3,
            weight_decay: 0.0,
            momentum: 0.9,
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            schedule: Schedule::Constant,
            warmup_steps: 0,
            step_epochs: 30,
            gamma: 0.1,
            min_lr: 0.0,
            clip_grad_norm: 0.0,
            seed: 0,
            early_stopping: EarlyStoppingConfig::default(),
        }
    }
}

/// Which validation metric picks the best checkpoint, and when to give up.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EarlyStoppingConfig {
    /// A validation metric name as it appears in metrics.csv, e.g. `val_loss`, `val_accuracy`.
    pub metric: String,
    pub direction: Direction,
    /// Stop after this many epochs without improvement; 0 never stops early
    /// (the best checkpoint is still tracked).
    pub patience: usize,
}

impl Default for EarlyStoppingConfig {
    fn default() -> Self {
        Self { metric: "val_loss".into(), direction: Direction::Min, patience: 0 }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RuntimeConfig {
    /// `cpu` (burn-flex), `wgpu`, `wgpu:cpu`, `wgpu:discrete:N`, `wgpu:integrated:N`,
    /// or `ndarray` when built with that feature.
    pub device: String,
    /// CPU threads for the flex backend; 0 lets rayon use every core.
    pub threads: usize,
    /// Folder under which each run gets `<name>-<timestamp>/`.
    pub out_dir: PathBuf,
    /// Run name; defaults to the config file's stem.
    pub name: Option<String>,
    /// Write the resume checkpoint at most this often (and always when a run stops or
    /// ends): a killed run loses at most this much work. 0 checkpoints every epoch.
    pub checkpoint_secs: f64,
}

impl Default for RuntimeConfig {
    fn default() -> Self {
        Self { device: "cpu".into(), threads: 0, out_dir: "checkpoints".into(), name: None, checkpoint_secs: 10.0 }
    }
}

/// A config document after `--set` overrides, ready to be read as a typed `RunConfig`.
pub struct ConfigDoc {
    /// Where the text came from, for error messages.
    pub origin: String,
    pub text: String,
    pub kind: ModelKind,
}

impl ConfigDoc {
    /// Reads a config file and applies `--set key.path=value` overrides.
    pub fn load(path: &Path, overrides: &[String]) -> Result<Self> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("{}: cannot read config", path.display()))?;
        Self::parse(&path.display().to_string(), &text, overrides)
    }

    pub fn parse(origin: &str, text: &str, overrides: &[String]) -> Result<Self> {
        let mut doc: toml_edit::DocumentMut = text.parse().map_err(|err: toml_edit::TomlError| {
            let line = err.span().map(|span| line_of(text, span.start)).unwrap_or(1);
            anyhow!("{origin}:{line}: {}", first_line(err.message()))
        })?;
        for assignment in overrides {
            apply_override(&mut doc, assignment)?;
        }
        let kind = match doc.get("model").and_then(|m| m.get("kind")) {
            None => bail!("{origin}: model.kind: missing (one of {})", kind_names()),
            Some(item) => {
                let name = item.as_str().unwrap_or_default();
                ModelKind::parse(name).ok_or_else(|| {
                    anyhow!(
                        "{origin}: model.kind: unknown model kind {}, expected one of {}",
                        item.as_value().map(|v| v.to_string()).unwrap_or_default().trim(),
                        kind_names()
                    )
                })?
            }
        };
        let origin = if overrides.is_empty() { origin.to_string() } else { format!("{origin} (with --set)") };
        Ok(Self { origin, text: doc.to_string(), kind })
    }

    /// Deserialises the document into the family's typed config, keeping spans so that an
    /// error names the line and the key path.
    pub fn typed<M: DeserializeOwned, D: DeserializeOwned>(&self) -> Result<RunConfig<M, D>> {
        self.deserialize()
    }

    /// Just `[runtime]`: what the CLI needs before it knows the family's types.
    pub fn runtime(&self) -> Result<RuntimeConfig> {
        #[derive(Deserialize)]
        struct RuntimeOnly {
            #[serde(default)]
            runtime: RuntimeConfig,
        }
        Ok(self.deserialize::<RuntimeOnly>()?.runtime)
    }

    fn deserialize<T: DeserializeOwned>(&self) -> Result<T> {
        let deserializer = toml::de::Deserializer::parse(&self.text)
            .map_err(|err| self.error_at(err.span(), "", err.message()))?;
        serde_path_to_error::deserialize(deserializer).map_err(|err| {
            let path = err.path().to_string();
            let inner = err.inner();
            self.error_at(inner.span(), &path, inner.message())
        })
    }

    fn error_at(&self, span: Option<std::ops::Range<usize>>, path: &str, message: &str) -> anyhow::Error {
        let location = match span {
            Some(span) => format!("{}:{}", self.origin, line_of(&self.text, span.start)),
            None => self.origin.clone(),
        };
        let message = friendly_message(first_line(message));
        if path.is_empty() || path == "." {
            anyhow!("{location}: {message}")
        } else {
            anyhow!("{location}: {path}: {message}")
        }
    }
}

fn kind_names() -> String {
    ModelKind::ALL.iter().map(|k| k.name()).collect::<Vec<_>>().join(", ")
}

fn line_of(text: &str, offset: usize) -> usize {
    text[..offset.min(text.len())].bytes().filter(|&b| b == b'\n').count() + 1
}

fn first_line(message: &str) -> &str {
    message.lines().next().unwrap_or(message).trim()
}

/// Turns serde's `invalid type: string "fast", expected f64` into
/// `expected a float, got "fast"`, the form a config author reads at a glance.
fn friendly_message(message: &str) -> String {
    let Some(rest) = message.strip_prefix("invalid type: ") else {
        return message.to_string();
    };
    let Some((got, expected)) = rest.split_once(", expected ") else {
        return message.to_string();
    };
    let expected = match expected {
        "f64" | "f32" => "a float",
        "usize" | "u64" | "u32" | "u16" | "u8" | "i64" | "i32" => "an integer",
        "a boolean" | "bool" => "a boolean (true or false)",
        "a string" => "a string",
        other => other,
    };
    let got = got.strip_prefix("string ").unwrap_or(got);
    format!("expected {expected}, got {got}")
}

/// Applies one `key.path=value`; the value is read as TOML (so `0.01`, `true`, `"x"`,
/// `[1, 2]` keep their types) and falls back to a bare string (`--set runtime.device=wgpu`).
fn apply_override(doc: &mut toml_edit::DocumentMut, assignment: &str) -> Result<()> {
    let (key_path, raw) = assignment
        .split_once('=')
        .ok_or_else(|| anyhow!("--set {assignment}: expected key.path=value"))?;
    let keys: Vec<&str> = key_path.trim().split('.').collect();
    if keys.iter().any(|k| k.is_empty()) {
        bail!("--set {assignment}: empty key in {key_path:?}");
    }
    let raw = raw.trim();
    let value: toml_edit::Value = raw
        .parse()
        .unwrap_or_else(|_| toml_edit::Value::from(raw.to_string()));
    let (last, parents) = keys.split_last().expect("split on a non-empty path");
    let mut table = doc.as_table_mut();
    for key in parents {
        let entry = table.entry(key).or_insert_with(|| {
            let mut t = toml_edit::Table::new();
            t.set_implicit(true);
            toml_edit::Item::Table(t)
        });
        table = entry
            .as_table_mut()
            .ok_or_else(|| anyhow!("--set {assignment}: {key} is not a table"))?;
    }
    table.insert(last, toml_edit::value(value));
    Ok(())
}

/// A size or count key that must be at least 1.
pub fn check_positive(key: &str, value: usize) -> Result<()> {
    if value == 0 {
        bail!("{key}: must be at least 1");
    }
    Ok(())
}

/// A dropout rate or held-out fraction: in [0, 1).
pub fn check_fraction(key: &str, value: f64) -> Result<()> {
    if !(0.0..1.0).contains(&value) {
        bail!("{key}: must be in [0, 1), got {value}");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Deserialize, Serialize)]
    #[serde(deny_unknown_fields)]
    struct TinyModel {
        kind: String,
        #[serde(default)]
        hidden: usize,
    }

    #[derive(Debug, Deserialize, Serialize)]
    #[serde(deny_unknown_fields)]
    struct TinyData {
        source: String,
    }

    const BASE: &str = "[model]\nkind = \"gcn\"\nhidden = 16\n\n[data]\nsource = \"builtin:cora\"\n\n[train]\nlr = 0.01\n";

    fn typed(text: &str, overrides: &[&str]) -> Result<RunConfig<TinyModel, TinyData>> {
        let overrides: Vec<String> = overrides.iter().map(|s| s.to_string()).collect();
        ConfigDoc::parse("x.toml", text, &overrides)?.typed()
    }

    #[test]
    fn defaults_fill_missing_sections() {
        let config = typed(BASE, &[]).unwrap();
        assert_eq!(config.model.hidden, 16);
        assert_eq!(config.train.lr, 0.01);
        assert_eq!(config.train.epochs, 100);
        assert_eq!(config.runtime.device, "cpu");
    }

    #[test]
    fn wrong_type_names_line_and_key() {
        let text = BASE.replace("lr = 0.01", "lr = \"fast\"");
        let err = typed(&text, &[]).unwrap_err().to_string();
        assert_eq!(err, "x.toml:9: train.lr: expected a float, got \"fast\"");
    }

    #[test]
    fn unknown_key_names_line_and_key() {
        let text = BASE.replace("lr = 0.01", "lr = 0.01\nlearning_rate = 3");
        let err = typed(&text, &[]).unwrap_err().to_string();
        assert!(err.starts_with("x.toml:10: train.learning_rate: unknown field `learning_rate`"), "{err}");
    }

    #[test]
    fn malformed_toml_names_line() {
        let text = BASE.replace("hidden = 16", "hidden = = 16");
        let err = typed(&text, &[]).unwrap_err().to_string();
        assert!(err.starts_with("x.toml:3: "), "{err}");
    }

    #[test]
    fn overrides_keep_types_and_create_tables() {
        let config = typed(BASE, &["train.lr=0.5", "runtime.device=wgpu", "train.early_stopping.patience=7"]).unwrap();
        assert_eq!(config.train.lr, 0.5);
        assert_eq!(config.runtime.device, "wgpu");
        assert_eq!(config.train.early_stopping.patience, 7);
    }

    #[test]
    fn override_of_unknown_key_is_an_error() {
        let err = typed(BASE, &["train.nope=1"]).unwrap_err().to_string();
        assert!(err.contains("train.nope: unknown field"), "{err}");
    }

    #[test]
    fn unknown_model_kind_lists_known_ones() {
        let err = typed(&BASE.replace("\"gcn\"", "\"mlp\""), &[]).unwrap_err().to_string();
        assert_eq!(err, "x.toml: model.kind: unknown model kind \"mlp\", expected one of gcn, gat, recommender, intent, vgg, bert");
    }
}
