//! Purchase intent: who buys in the window after the cut, from the events before it.
//!
//! Sequences and labels come from [`crate::data::sequences`]; the vocabulary is fitted on
//! the training users and saved in the run (`vocab.csv`), so evaluation and scoring
//! tokenise exactly as training did. The loss is binary cross-entropy on the logit with an
//! optional positive-class weight; the metrics are ROC-AUC, PR-AUC, log-loss and accuracy
//! at 0.5, plus the ROC-AUC of the baseline that ranks users by their `cart` count.

use std::collections::HashMap;
use std::io::IsTerminal;
use std::path::Path;

use anyhow::{Result, anyhow, bail};
use burn::tensor::activation::{relu, sigmoid};
use burn::tensor::{Device, Int, Tensor, TensorData};
use indicatif::ProgressBar;

use super::{Family, TrainJob, TrainSummary};
use crate::config::{check_fraction, check_positive, ConfigDoc, ModelKind, RunConfig};
use crate::data::Split;
use crate::data::sequences::{Examples, SequenceDataConfig, UserHistories, VOCABULARY_FILE, Vocabulary, describe_time};
use crate::metrics::{self, Metrics};
use crate::models::intent::{IntentConfig, IntentNet};
use crate::models::random::HostRng;
use crate::run_dir::{self, Artifacts};
use crate::score::ProbabilityWriter;
use crate::train::Task;

/// Users per forward pass in evaluation and scoring (the reference inference batch).
const INFERENCE_BATCH: usize = 256;

pub struct PurchaseIntent {
    config: IntentConfig,
    num_tokens: usize,
    batch_size: usize,
    splits: HashMap<Split, Examples>,
    device: Device,
}

impl PurchaseIntent {
    pub fn new(config: IntentConfig, num_tokens: usize, batch_size: usize, splits: HashMap<Split, Examples>, device: &Device) -> Self {
        Self { config, num_tokens, batch_size: batch_size.max(1), splits, device: device.clone() }
    }

    fn tokens(&self, examples: &Examples, rows: &[usize], device: &Device) -> Tensor<2, Int> {
        let length = examples.sequence_length;
        let ids: Vec<i64> = rows.iter().flat_map(|&row| examples.row(row).iter().map(|&t| t as i64)).collect();
        Tensor::from_data(TensorData::new(ids, [rows.len(), length]), device)
    }

    /// Purchase probabilities of every example, in `INFERENCE_BATCH`-sized forward passes.
    pub(crate) fn probabilities(&self, model: &IntentNet, examples: &Examples) -> Result<Vec<f32>> {
        let mut out = Vec::with_capacity(examples.len());
        let rows: Vec<usize> = (0..examples.len()).collect();
        for chunk in rows.chunks(INFERENCE_BATCH) {
            let logits = model.forward(self.tokens(examples, chunk, &self.device), None);
            out.extend(sigmoid(logits).into_data().try_to_vec::<f32>().map_err(|err| anyhow!("reading probabilities: {err:?}"))?);
        }
        Ok(out)
    }
}

/// Binary cross-entropy on logits with a positive-class weight, written as PyTorch's
/// `binary_cross_entropy_with_logits` does to stay finite for large logits:
/// `(1 - y) z + (1 + (w - 1) y) (log(1 + exp(-|z|)) + max(-z, 0))`.
fn weighted_bce_with_logits(logits: Tensor<1>, labels: Tensor<1>, pos_weight: f64) -> Tensor<1> {
    let log_weight = labels.clone().mul_scalar(pos_weight - 1.0).add_scalar(1.0);
    let softplus_neg = logits.clone().abs().neg().exp().log1p() + relu(logits.clone().neg());
    let per_example = labels.neg().add_scalar(1.0) * logits + log_weight * softplus_neg;
    per_example.mean()
}

impl Task for PurchaseIntent {
    type Model = IntentNet;
    /// Row indices into the training examples.
    type Batch = Vec<usize>;

    fn kind(&self) -> ModelKind {
        ModelKind::Intent
    }

    fn init_model(&self, seed: u64, device: &Device) -> IntentNet {
        IntentNet::new(&self.config, self.num_tokens, &mut HostRng::new(seed), device)
    }

    fn batches_per_epoch(&self) -> usize {
        self.splits[&Split::Train].len().div_ceil(self.batch_size)
    }

    fn train_batches(&self, rng: &mut HostRng) -> Vec<Vec<usize>> {
        rng.shuffled_batches((0..self.splits[&Split::Train].len()).collect(), self.batch_size)
    }

    fn train_loss(&self, model: &IntentNet, batch: &Vec<usize>, rng: &mut HostRng) -> Tensor<1> {
        let examples = &self.splits[&Split::Train];
        let device = model.head.bias.val().device();
        let labels: Vec<f32> = batch.iter().map(|&row| f32::from(u8::from(examples.labels[row]))).collect();
        let labels = Tensor::<1>::from_data(TensorData::new(labels, [batch.len()]), &device);
        let logits = model.forward(self.tokens(examples, batch, &device), Some(rng));
        weighted_bce_with_logits(logits, labels, self.config.pos_weight)
    }

    fn evaluate(&self, model: &IntentNet, split: Split) -> Result<Metrics> {
        let examples = &self.splits[&split];
        if examples.is_empty() {
            bail!("the {split} split has no users (raise data.{split}_fraction or use a larger log)");
        }
        let probabilities = self.probabilities(model, examples)?;
        let labels = &examples.labels;
        let mut out = Metrics::default();
        out.push("loss", metrics::log_loss(&probabilities, labels));
        // The areas are undefined when a split holds only buyers or only non-buyers (a
        // tiny log): they are left out rather than reported as a made-up number.
        if let Some(auc) = metrics::roc_auc(&probabilities, labels) {
            out.push("roc_auc", auc);
        }
        if let Some(ap) = metrics::pr_auc(&probabilities, labels) {
            out.push("pr_auc", ap);
        }
        out.push("accuracy", metrics::binary_accuracy(&probabilities, labels));
        out.push("positive_rate", examples.positives() as f64 / examples.len() as f64);
        let carts: Vec<f32> = examples.carts.iter().map(|&c| c as f32).collect();
        if let Some(auc) = metrics::roc_auc(&carts, labels) {
            out.push("cart_baseline_roc_auc", auc);
        }
        Ok(out)
    }
}

#[derive(Default)]
pub struct IntentFamily;

type IntentRunConfig = RunConfig<IntentConfig, SequenceDataConfig>;

impl IntentFamily {
    fn config(doc: &ConfigDoc) -> Result<IntentRunConfig> {
        let config: IntentRunConfig = doc.typed()?;
        let model = &config.model;
        for (key, value) in [
            ("model.embedding_size", model.embedding_size),
            ("model.conv_channels", model.conv_channels),
            ("model.hidden", model.hidden),
            ("model.pool", model.pool),
        ] {
            check_positive(key, value)?;
        }
        if model.kernel_size % 2 == 0 {
            bail!("model.kernel_size: must be odd (so that the convolution keeps the sequence length), got {}", model.kernel_size);
        }
        check_fraction("model.dropout", model.dropout)?;
        if !(model.pos_weight > 0.0) {
            bail!("model.pos_weight: must be positive, got {}", model.pos_weight);
        }
        if config.data.sequence_length < model.pool {
            bail!("data.sequence_length: must be at least model.pool ({})", model.pool);
        }
        config.data.validate()?;
        Ok(config)
    }

    fn histories(data: &SequenceDataConfig) -> Result<UserHistories> {
        let histories = UserHistories::for_training(data)?;
        report_skipped(&data.events, histories.read.skipped);
        Ok(histories)
    }

    /// The trained net and its data, tokenised with the run's own vocabulary.
    fn restore(artifacts: &Artifacts, device: &Device) -> Result<(IntentNet, PurchaseIntent, IntentRunConfig, Vocabulary)> {
        let config = Self::config(&artifacts.config)?;
        let vocabulary = Vocabulary::load(&artifacts.dir.join(VOCABULARY_FILE))?;
        let num_tokens = artifacts.info.input.get("num_tokens").and_then(|v| v.as_u64()).unwrap_or(0) as usize;
        if vocabulary.len() != num_tokens {
            bail!("{}: {} tokens, but the model was trained with {num_tokens}", artifacts.dir.join(VOCABULARY_FILE).display(), vocabulary.len());
        }
        let histories = Self::histories(&config.data)?;
        let splits = [Split::Train, Split::Val, Split::Test].into_iter().map(|split| (split, histories.examples(&config.data, split, &vocabulary))).collect();
        let task = PurchaseIntent::new(config.model.clone(), num_tokens, config.train.batch_size, splits, device);
        let model = run_dir::load_weights(task.init_model(config.train.seed, device), ModelKind::Intent, &artifacts.weights)?;
        Ok((model, task, config, vocabulary))
    }
}

fn report_skipped(path: &Path, skipped: u64) {
    if skipped > 0 {
        eprintln!("note: skipped {skipped} rows of {} that did not parse (data.skip_bad_rows = true)", path.display());
    }
}

impl Family for IntentFamily {
    fn train(&self, job: TrainJob<'_>) -> Result<TrainSummary> {
        let config = Self::config(job.config)?;
        let histories = Self::histories(&config.data)?;
        let vocabulary = histories.fit_vocabulary(&config.data, Split::Train);
        let splits: HashMap<Split, Examples> =
            [Split::Train, Split::Val, Split::Test].into_iter().map(|split| (split, histories.examples(&config.data, split, &vocabulary))).collect();
        let cut = histories.cut;
        drop(histories);
        let sizes = |split: Split| serde_json::json!({ "users": splits[&split].len(), "buyers": splits[&split].positives() });
        let input = serde_json::json!({
            "num_tokens": vocabulary.len(),
            "sequence_length": config.data.sequence_length,
            "cut": cut,
            "train": sizes(Split::Train),
            "val": sizes(Split::Val),
            "test": sizes(Split::Test),
        });
        eprintln!(
            "{} users with history before the cut: {} train ({} buyers), {} val, {} test; {} tokens",
            splits.values().map(Examples::len).sum::<usize>(),
            splits[&Split::Train].len(),
            splits[&Split::Train].positives(),
            splits[&Split::Val].len(),
            splits[&Split::Test].len(),
            vocabulary.len()
        );
        if !job.resume {
            vocabulary.save(&job.run_dir.join(VOCABULARY_FILE))?;
        } else if Vocabulary::load(&job.run_dir.join(VOCABULARY_FILE))? != vocabulary {
            bail!("{}: the event log now gives another vocabulary than the run was trained with", job.run_dir.display());
        }
        let task = PurchaseIntent::new(config.model.clone(), vocabulary.len(), config.train.batch_size, splits, job.device);
        super::train_task(&job, &config, &task, Vec::new(), input)
    }

    fn evaluate(&self, artifacts: &Artifacts, split: Split, device: &Device) -> Result<Metrics> {
        let (model, task, _, _) = Self::restore(artifacts, device)?;
        task.evaluate(&model, split)
    }

    /// Scores every user of `input` from all of its events (there is no cut: the
    /// prediction is about the window after the log ends), in batches, in user-id order.
    fn score(&self, artifacts: &Artifacts, input: &str, output: &Path, device: &Device) -> Result<usize> {
        let config = Self::config(&artifacts.config)?;
        let vocabulary = Vocabulary::load(&artifacts.dir.join(VOCABULARY_FILE))?;
        let task = PurchaseIntent::new(config.model.clone(), vocabulary.len(), config.train.batch_size, HashMap::new(), device);
        let model = run_dir::load_weights(task.init_model(config.train.seed, device), ModelKind::Intent, &artifacts.weights)?;
        let path = Path::new(input);
        let mut histories = UserHistories::for_scoring(path, &config.data)?;
        report_skipped(path, histories.read.skipped);
        let users = histories.sorted_users();
        let bar = std::io::stderr().is_terminal().then(|| ProgressBar::new(users.len() as u64));
        let mut writer = ProbabilityWriter::create(output)?;
        for chunk in users.chunks(INFERENCE_BATCH * 16) {
            let examples = histories.take(chunk, config.data.sequence_length, &vocabulary);
            for (user, probability) in examples.users.iter().zip(task.probabilities(&model, &examples)?) {
                writer.write(*user, probability)?;
            }
            if let Some(bar) = &bar {
                bar.inc(chunk.len() as u64);
            }
        }
        if let Some(bar) = bar {
            bar.finish_and_clear();
        }
        writer.finish()
    }

    fn schema(&self, artifacts: &Artifacts) -> serde_json::Value {
        let cut = artifacts.info.input.get("cut").and_then(|c| c.as_i64()).map(describe_time);
        serde_json::json!({
            "input": {
                "format": "event log CSV: user_id,item_id,category_id,behavior,timestamp (behavior pv|fav|cart|buy, Unix seconds)",
                "sequence_length": artifacts.info.input.get("sequence_length"),
                "vocabulary": VOCABULARY_FILE,
                "trained_with_cut": cut,
            },
            "output": ["user_id", "probability"],
        })
    }

    fn run_files(&self) -> &'static [&'static str] {
        &[VOCABULARY_FILE]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn weighted_bce_matches_the_formula_by_hand() {
        let device = Device::flex();
        let logits = Tensor::<1>::from_data(TensorData::new(vec![2.0f32, -1.0, 30.0], [3]), &device);
        let labels = Tensor::<1>::from_data(TensorData::new(vec![1.0f32, 0.0, 0.0], [3]), &device);
        let loss = weighted_bce_with_logits(logits, labels, 3.0).into_scalar::<f32>();
        // -3 log sigmoid(2) - log(1 - sigmoid(-1)) - log(1 - sigmoid(30)), averaged.
        let sigmoid = |z: f64| 1.0 / (1.0 + (-z).exp());
        let expected = (-3.0 * sigmoid(2.0).ln() - (1.0 - sigmoid(-1.0)).ln() + (30.0 + (-30f64).exp().ln_1p())) / 3.0;
        assert!((loss as f64 - expected).abs() < 1e-5, "{loss} vs {expected}");
    }
}
