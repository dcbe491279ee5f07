//! Run configuration: one TOML file with `[model]`, `[data]`, `[train]` and `[runtime]`.
//!
//! Every section is a plain serde struct with `deny_unknown_fields` and field defaults
//! (burn's `Config` derive does not apply defaults when deserialising). `[model]` and
//! `[data]` differ per model family, so a run config is generic over them: the CLI reads
//! `model.kind` ([`ConfigDoc::kind`]), and the family that kind names reads the whole
//! document into its own types ([`ConfigDoc::typed`]).
//!
//! Errors point at the file, line and key path (`configs/x.toml:7: train.lr: expected a
//! float, got "fast"`), so the document is deserialised from its text with spans kept.

use std::fmt;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, anyhow, bail};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

/// The model families shopnet trains: `model.kind` in a config names one. serde reads
/// and writes the names, so an unknown kind is refused with the list of known ones.
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

impl fmt::Display for ModelKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match serde_json::to_value(self) {
            Ok(serde_json::Value::String(name)) => f.write_str(&name),
            _ => write!(f, "{self:?}"),
        }
    }
}

/// A whole run: the family-specific model and data sections plus the shared ones.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RunConfig<M, D> {
    pub model: ModelSection<M>,
    pub data: D,
    #[serde(default)]
    pub train: TrainConfig,
    #[serde(default)]
    pub runtime: RuntimeConfig,
}

/// `[model]`: the `kind` tag and the family's own settings `M`. The tag is read here and
/// hidden from `M`, whose fields are read straight from the TOML deserializer, so an error
/// inside `[model]` still names its line and key.
#[derive(Debug, Clone)]
pub struct ModelSection<M> {
    pub kind: ModelKind,
    pub settings: M,
}

impl<M> std::ops::Deref for ModelSection<M> {
    type Target = M;

    fn deref(&self) -> &M {
        &self.settings
    }
}

impl<M: Serialize> Serialize for ModelSection<M> {
    fn serialize<S: serde::Serializer>(
        &self,
        serializer: S,
    ) -> std::result::Result<S::Ok, S::Error> {
        /// `kind` first, then `M`'s fields in their declared order.
        #[derive(Serialize)]
        struct Tagged<'a, M> {
            kind: ModelKind,
            #[serde(flatten)]
            settings: &'a M,
        }
        Tagged { kind: self.kind, settings: &self.settings }.serialize(serializer)
    }
}

impl<'de, M: Deserialize<'de>> Deserialize<'de> for ModelSection<M> {
    fn deserialize<De: serde::Deserializer<'de>>(
        deserializer: De,
    ) -> std::result::Result<Self, De::Error> {
        deserializer.deserialize_map(tagged::SectionVisitor(std::marker::PhantomData))
    }
}

/// The serde plumbing of [`ModelSection`]: a map access that takes `kind` out of the
/// table and hands every other key to `M`.
mod tagged {
    use serde::de::{self, DeserializeSeed, IntoDeserializer, MapAccess, Visitor};

    use super::{ModelKind, ModelSection};

    pub struct SectionVisitor<M>(pub std::marker::PhantomData<M>);

    impl<'de, M: de::Deserialize<'de>> Visitor<'de> for SectionVisitor<M> {
        type Value = ModelSection<M>;

        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("a [model] table with a kind")
        }

        fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
            let mut kind = None;
            let settings = M::deserialize(WithoutKind { map, kind: &mut kind })?;
            let kind = kind.ok_or_else(|| de::Error::missing_field("kind"))?;
            Ok(ModelSection { kind, settings })
        }
    }

    struct WithoutKind<'a, A> {
        map: A,
        kind: &'a mut Option<ModelKind>,
    }

    impl<'de, A: MapAccess<'de>> de::Deserializer<'de> for WithoutKind<'_, A> {
        type Error = A::Error;

        fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, A::Error> {
            visitor.visit_map(self)
        }

        serde::forward_to_deserialize_any! {
            bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes byte_buf
            option unit unit_struct newtype_struct seq tuple tuple_struct map struct enum
            identifier ignored_any
        }
    }

    /// Reads one key: `None` for `kind`, else the key as `M`'s field seed reads it.
    struct KeySeed<'s, K> {
        seed: &'s mut Option<K>,
    }

    impl<'de, K: DeserializeSeed<'de>> DeserializeSeed<'de> for KeySeed<'_, K> {
        type Value = Option<K::Value>;

        fn deserialize<D: de::Deserializer<'de>>(
            self,
            deserializer: D,
        ) -> Result<Self::Value, D::Error> {
            let key = <String as de::Deserialize>::deserialize(deserializer)?;
            if key == "kind" {
                return Ok(None);
            }
            let seed = self
                .seed
                .take()
                .ok_or_else(|| <D::Error as de::Error>::custom("a key was read twice"))?;
            seed.deserialize(key.into_deserializer()).map(Some)
        }
    }

    impl<'de, A: MapAccess<'de>> MapAccess<'de> for WithoutKind<'_, A> {
        type Error = A::Error;

        fn next_key_seed<K: DeserializeSeed<'de>>(
            &mut self,
            seed: K,
        ) -> Result<Option<K::Value>, A::Error> {
            let mut seed = Some(seed);
            // The key is read inside the inner map's `next_key_seed`, so an unknown key is
            // reported with its own line and path, as a derived struct would report it.
            while let Some(key) = self.map.next_key_seed(KeySeed { seed: &mut seed })? {
                match key {
                    Some(field) => return Ok(Some(field)),
                    None => *self.kind = Some(self.map.next_value()?),
                }
            }
            Ok(None)
        }

        fn next_value_seed<V: DeserializeSeed<'de>>(
            &mut self,
            seed: V,
        ) -> Result<V::Value, A::Error> {
            self.map.next_value_seed(seed)
        }
    }
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
    /// Classifiers: the share of each target spread evenly over all classes (0 = one-hot).
    pub label_smoothing: f64,
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
            label_smoothing: 0.0,
            seed: 0,
            early_stopping: EarlyStoppingConfig::default(),
        }
    }
}

impl TrainConfig {
    /// What serde cannot check: ranges and finiteness. Names the key. The upper bounds are
    /// far past any useful run and keep every count the trainer multiplies in range.
    pub fn validate(&self) -> Result<()> {
        let counts = [
            ("train.epochs", self.epochs, 1, 10_000_000),
            ("train.batch_size", self.batch_size, 1, 1 << 24),
            ("train.step_epochs", self.step_epochs, 1, 10_000_000),
            ("train.warmup_steps", self.warmup_steps, 0, 1 << 32),
        ];
        for (key, value, low, high) in counts {
            check_count(key, value, low, high)?;
        }
        let ranges = [
            ("train.lr", self.lr, 0.0, false, 100.0),
            ("train.eps", self.eps, 0.0, false, 1.0),
            ("train.gamma", self.gamma, 0.0, false, 1.0),
            ("train.weight_decay", self.weight_decay, 0.0, true, 1.0),
            ("train.momentum", self.momentum, 0.0, true, 1.0),
            ("train.clip_grad_norm", self.clip_grad_norm, 0.0, true, 1e6),
            ("train.min_lr", self.min_lr, 0.0, true, self.lr),
            ("train.label_smoothing", self.label_smoothing, 0.0, true, 0.99),
        ];
        for (key, value, low, low_included, high) in ranges {
            let above_low = if low_included { value >= low } else { value > low };
            if !(value.is_finite() && above_low && value <= high) {
                let bracket = if low_included { '[' } else { '(' };
                bail!("{key}: must be in {bracket}{low}, {high}], got {value}");
            }
        }
        check_fraction("train.beta1", self.beta1)?;
        check_fraction("train.beta2", self.beta2)
    }
}

/// Refuses `train.label_smoothing` for a family whose outputs are not classes.
pub fn no_label_smoothing(train: &TrainConfig, what: &str) -> Result<()> {
    if train.label_smoothing != 0.0 {
        bail!(
            "train.label_smoothing: applies to class outputs (gcn, gat, vgg, bert), not to {what}"
        );
    }
    Ok(())
}

/// A count key within `[low, high]`.
fn check_count(key: &str, value: usize, low: usize, high: usize) -> Result<()> {
    if value < low {
        bail!("{key}: must be at least {low}");
    }
    if value > high {
        bail!("{key}: must be at most {high}, got {value}");
    }
    Ok(())
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
    /// More metrics watched beside `metric`. With any, the rule is the GAT reference
    /// implementation's: patience resets when any watched metric reaches its best so far
    /// (ties count), and the kept checkpoint is the last epoch where all of them did.
    pub also: Vec<WatchedMetric>,
}

/// A metric watched by early stopping, and which way is better.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WatchedMetric {
    pub metric: String,
    pub direction: Direction,
}

impl Default for EarlyStoppingConfig {
    fn default() -> Self {
        Self { metric: "val_loss".into(), direction: Direction::Min, patience: 0, also: Vec::new() }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RuntimeConfig {
    /// `cpu` (burn-flex), `wgpu`, `wgpu:cpu`, `wgpu:discrete:N`, `wgpu:integrated:N` (a
    /// graphics API may follow `wgpu`: `wgpu:vulkan`, `wgpu:metal`, `wgpu:dx12`, `wgpu:gl`),
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
    /// shopnet's fused CPU kernels (the LSTM, the sparse product of message passing) where
    /// they exist; `false` composes the same functions from Burn ops, to compare or bisect.
    pub fused_ops: bool,
}

impl Default for RuntimeConfig {
    fn default() -> Self {
        Self {
            device: "cpu".into(),
            threads: 0,
            out_dir: "checkpoints".into(),
            name: None,
            checkpoint_secs: 10.0,
            fused_ops: true,
        }
    }
}

impl RuntimeConfig {
    pub fn validate(&self) -> Result<()> {
        // A year: beyond it the setting can only be a typo.
        if !(self.checkpoint_secs.is_finite()
            && (0.0..=31_536_000.0).contains(&self.checkpoint_secs))
        {
            bail!(
                "runtime.checkpoint_secs: must be in [0, 31536000], got {}",
                self.checkpoint_secs
            );
        }
        check_count("runtime.threads", self.threads, 0, 4096)?;
        if let Some(name) = &self.name
            && (name.is_empty() || name.contains(['/', '\\']) || name.starts_with('.'))
        {
            bail!(
                "runtime.name: {name:?} must be a plain name (no path separators, not starting with '.')"
            );
        }
        Ok(())
    }
}

/// A config document after `--set` overrides, ready to be read as a typed `RunConfig`.
#[derive(Clone)]
pub struct ConfigDoc {
    /// Where the text came from, for error messages.
    pub origin: String,
    pub text: String,
}

impl ConfigDoc {
    /// Reads a config file and applies `--set key.path=value` overrides.
    pub fn load(path: &Path, overrides: &[String]) -> Result<Self> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("{}: cannot read config", path.display()))?;
        Self::parse(&path.display().to_string(), &text, overrides)
    }

    pub fn parse(origin: &str, text: &str, overrides: &[String]) -> Result<Self> {
        let mut doc: toml_edit::DocumentMut =
            text.parse().map_err(|err: toml_edit::TomlError| {
                let line = err.span().map(|span| line_of(text, span.start)).unwrap_or(1);
                anyhow!("{origin}:{line}: {}", first_line(err.message()))
            })?;
        for assignment in overrides {
            apply_override(&mut doc, assignment)?;
        }
        let origin = if overrides.is_empty() {
            origin.to_string()
        } else {
            format!("{origin} (with --set)")
        };
        Ok(Self { origin, text: doc.to_string() })
    }

    /// `model.kind`: which family's types the rest of the document is read into.
    pub fn kind(&self) -> Result<ModelKind> {
        #[derive(Deserialize)]
        struct KindOnly {
            kind: ModelKind,
        }
        #[derive(Deserialize)]
        struct ModelOnly {
            model: KindOnly,
        }
        Ok(self.deserialize::<ModelOnly>()?.model.kind)
    }

    /// Deserialises the document into the family's typed config, keeping spans so that an
    /// error names the line and the key path.
    pub fn typed<M: DeserializeOwned, D: DeserializeOwned>(&self) -> Result<RunConfig<M, D>> {
        let config: RunConfig<M, D> = self.deserialize()?;
        config.train.validate().map_err(|err| anyhow!("{}: {err}", self.origin))?;
        config.runtime.validate().map_err(|err| anyhow!("{}: {err}", self.origin))?;
        Ok(config)
    }

    /// The existing files and folders `[data]` names: what a job on this run reads, and
    /// so what its output must not overwrite.
    pub fn data_paths(&self) -> Vec<PathBuf> {
        let Ok(table) = self.text.parse::<toml::Table>() else { return Vec::new() };
        let Some(data) = table.get("data").and_then(toml::Value::as_table) else {
            return Vec::new();
        };
        data.values()
            .filter_map(toml::Value::as_str)
            .map(PathBuf::from)
            .filter(|path| path.exists())
            .collect()
    }

    /// Just `[runtime]`: what the CLI needs before it knows the family's types.
    pub fn runtime(&self) -> Result<RuntimeConfig> {
        #[derive(Deserialize)]
        struct RuntimeOnly {
            #[serde(default)]
            runtime: RuntimeConfig,
        }
        let runtime = self.deserialize::<RuntimeOnly>()?.runtime;
        runtime.validate().map_err(|err| anyhow!("{}: {err}", self.origin))?;
        Ok(runtime)
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

    fn error_at(
        &self,
        span: Option<std::ops::Range<usize>>,
        path: &str,
        message: &str,
    ) -> anyhow::Error {
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
    let value: toml_edit::Value =
        raw.parse().unwrap_or_else(|_| toml_edit::Value::from(raw.to_string()));
    let Some((last, parents)) = keys.split_last() else {
        bail!("--set {assignment}: empty key");
    };
    // Table-like, not just tables: configs write small sections inline
    // (`early_stopping = { metric = "val_loss" }`), and those must be overridable too.
    let mut table: &mut dyn toml_edit::TableLike = doc.as_table_mut();
    for key in parents {
        if table.get(key).is_none() {
            table.insert(key, toml_edit::Item::Value(toml_edit::InlineTable::new().into()));
        }
        table = table
            .get_mut(key)
            .and_then(toml_edit::Item::as_table_like_mut)
            .ok_or_else(|| anyhow!("--set {assignment}: {key} is not a table"))?;
    }
    table.insert(last, toml_edit::Item::Value(value));
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
        assert!(
            err.starts_with("x.toml:10: train.learning_rate: unknown field `learning_rate`"),
            "{err}"
        );
    }

    #[test]
    fn malformed_toml_names_line() {
        let text = BASE.replace("hidden = 16", "hidden = = 16");
        let err = typed(&text, &[]).unwrap_err().to_string();
        assert!(err.starts_with("x.toml:3: "), "{err}");
    }

    #[test]
    fn overrides_keep_types_and_create_tables() {
        let config = typed(
            BASE,
            &["train.lr=0.5", "runtime.device=wgpu", "train.early_stopping.patience=7"],
        )
        .unwrap();
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
        let doc = ConfigDoc::parse("x.toml", &BASE.replace("\"gcn\"", "\"mlp\""), &[]).unwrap();
        let err = doc.kind().unwrap_err().to_string();
        assert_eq!(
            err,
            "x.toml:2: model.kind: unknown variant `mlp`, expected one of `gcn`, `gat`, `recommender`, `intent`, `vgg`, `bert`"
        );
        assert_eq!(ConfigDoc::parse("x.toml", BASE, &[]).unwrap().kind().unwrap(), ModelKind::Gcn);
    }

    #[test]
    fn model_errors_name_line_and_key_and_kind_round_trips() {
        let err =
            typed(&BASE.replace("hidden = 16", "hidden = \"wide\""), &[]).unwrap_err().to_string();
        assert_eq!(err, "x.toml:3: model.hidden: expected an integer, got \"wide\"");
        let err = typed(&BASE.replace("hidden = 16", "hidden = 16\nwidth = 2"), &[])
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("x.toml:4: model.width: unknown field `width`"), "{err}");
        let config = typed(BASE, &[]).unwrap();
        let text = toml::to_string(&config).unwrap();
        assert!(text.starts_with("[model]\nkind = \"gcn\"\nhidden = 16\n"), "{text}");
        assert_eq!(typed(&text, &[]).unwrap().model.hidden, 16);
    }

    #[test]
    fn train_settings_out_of_range_are_refused() {
        for (set, key) in [
            ("train.batch_size=0", "train.batch_size: must be at least 1"),
            ("train.epochs=0", "train.epochs: must be at least 1"),
            ("train.lr=-0.01", "train.lr: must be in (0, 100], got -0.01"),
            ("train.lr=nan", "train.lr: must be in (0, 100], got NaN"),
            ("train.weight_decay=-1", "train.weight_decay: must be in [0, 1], got -1"),
            ("train.epochs=1000000000000000000", "train.epochs: must be at most 10000000"),
            ("runtime.name=\"../x\"", "runtime.name: \"../x\" must be a plain name"),
        ] {
            let err = typed(BASE, &[set]).unwrap_err().to_string();
            assert!(err.contains(key), "{set}: {err}");
        }
    }

    #[test]
    fn overrides_reach_into_inline_tables() {
        let text = format!("{BASE}early_stopping = {{ metric = \"val_loss\", patience = 3 }}\n");
        let config = typed(&text, &["train.early_stopping.patience=5"]).unwrap();
        assert_eq!(config.train.early_stopping.patience, 5);
        assert_eq!(config.train.early_stopping.metric, "val_loss");
    }
}
