//! Purchase intent: who buys in the window after the cut, from the events before it.
//!
//! Sequences and labels come from [`crate::data::sequences`]; the vocabulary is fitted on
//! the training users and saved in the run (`vocab.csv`), so evaluation and scoring
//! tokenise exactly as training did. The loss is binary cross-entropy on the logit with an
//! optional positive-class weight; the metrics are ROC-AUC, PR-AUC, log-loss and accuracy
//! at 0.5, plus the ROC-AUC of the baseline that ranks users by their `cart` count.

use std::path::Path;

use anyhow::{Result, bail};
use burn::tensor::activation::{relu, sigmoid};
use burn::tensor::{Device, Int, Tensor, TensorData};
use serde::{Deserialize, Serialize};

use super::driver;
use super::family::{BatchJob, Config, Family, Prepared, Trained};
use super::online::{self, Datatype, Online, Request, Served, Signature, TensorSpec, Values};
use crate::artifacts::findings::{BinaryOutcome, Findings, Outcome};
use crate::artifacts::scores::ProbabilityWriter;
use crate::base::config::{ModelKind, check_fraction, check_positive, no_label_smoothing};
use crate::base::memory;
use crate::base::metrics::{self, Metrics};
use crate::base::progress::Progress;
use crate::base::rng::HostRng;
use crate::base::split::{Split, Splits};
use crate::base::tensor::to_host;
use crate::data::sequences::{
    Examples, PAD, SequenceDataConfig, UserHistories, VOCABULARY_FILE, Vocabulary, describe_time,
    user_sequence,
};
use crate::models::intent::{IntentConfig, IntentInference, IntentNet};
use crate::train::Task;
use crate::train::step::split_examples;

/// Users per forward pass in evaluation and scoring (the reference inference batch).
const INFERENCE_BATCH: usize = 256;

pub struct PurchaseIntent {
    config: IntentConfig,
    num_tokens: usize,
    batch_size: usize,
    splits: Splits<Examples>,
    device: Device,
}

impl PurchaseIntent {
    pub fn new(
        config: IntentConfig,
        num_tokens: usize,
        batch_size: usize,
        splits: Splits<Examples>,
        device: &Device,
    ) -> Self {
        Self { config, num_tokens, batch_size, splits, device: device.clone() }
    }

    /// Purchase probabilities of every example, in `INFERENCE_BATCH`-sized forward passes.
    pub fn probabilities(&self, model: &IntentNet, examples: &Examples) -> Result<Vec<f32>> {
        probabilities(&IntentInference::new(model), examples, &self.device)
    }
}

fn tokens(examples: &Examples, rows: &[usize], device: &Device) -> Tensor<2, Int> {
    let ids: Vec<i64> =
        rows.iter().flat_map(|&row| examples.row(row).iter().map(|&t| i64::from(t))).collect();
    Tensor::from_data(TensorData::new(ids, [rows.len(), examples.sequence_length]), device)
}

fn probabilities(
    model: &IntentInference,
    examples: &Examples,
    device: &Device,
) -> Result<Vec<f32>> {
    let mut out = Vec::with_capacity(examples.len());
    let rows: Vec<usize> = (0..examples.len()).collect();
    for chunk in rows.chunks(INFERENCE_BATCH) {
        let logits = model.logits(tokens(examples, chunk, device));
        out.extend(to_host(sigmoid(logits))?);
    }
    Ok(out)
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

/// The baseline a net must beat: how often each user put something in the cart.
fn cart_scores(examples: &Examples) -> Vec<f32> {
    examples.carts.iter().map(|&c| c as f32).collect()
}

/// ROC-AUC, PR-AUC, log-loss and accuracy of `probabilities` against `examples`' labels.
fn intent_metrics(probabilities: &[f32], examples: &Examples) -> Metrics {
    let labels = &examples.labels;
    let mut out = Metrics::default();
    out.push("loss", metrics::log_loss(probabilities, labels));
    // The areas are undefined when a split holds only buyers or only non-buyers (a
    // tiny log): they are left out rather than reported as a made-up number.
    if let Some(auc) = metrics::roc_auc(probabilities, labels) {
        out.push("roc_auc", auc);
    }
    if let Some(ap) = metrics::pr_auc(probabilities, labels) {
        out.push("pr_auc", ap);
    }
    out.push("accuracy", metrics::binary_accuracy(probabilities, labels));
    out.push("positive_rate", examples.positives() as f64 / examples.len() as f64);
    if let Some(auc) = metrics::roc_auc(&cart_scores(examples), labels) {
        out.push("cart_baseline_roc_auc", auc);
    }
    out
}

impl Task for PurchaseIntent {
    type Model = IntentNet;
    /// Row indices into the training examples.
    type Batch = Vec<usize>;

    fn kind(&self) -> ModelKind {
        ModelKind::Intent
    }

    fn init_model(&self, seed: u64, device: &Device) -> Result<IntentNet> {
        Ok(IntentNet::new(&self.config, self.num_tokens, &mut HostRng::new(seed), device))
    }

    fn split_batch(&self, batch: &Vec<usize>, parts: usize) -> Option<Vec<(Vec<usize>, f64)>> {
        Some(split_examples(batch, parts))
    }

    fn batches_per_epoch(&self) -> usize {
        self.splits.train.len().div_ceil(self.batch_size)
    }

    fn train_batches(&self, rng: &mut HostRng) -> Result<Vec<Vec<usize>>> {
        Ok(rng.shuffled_batches((0..self.splits.train.len()).collect(), self.batch_size))
    }

    fn train_loss(
        &self,
        model: &IntentNet,
        batch: &Vec<usize>,
        rng: &mut HostRng,
    ) -> Result<Tensor<1>> {
        let examples = &self.splits.train;
        let device = model.head.bias.val().device();
        let labels: Vec<f32> =
            batch.iter().map(|&row| f32::from(u8::from(examples.labels[row]))).collect();
        let labels = Tensor::<1>::from_data(TensorData::new(labels, [batch.len()]), &device);
        let logits = model.forward(tokens(examples, batch, &device), Some(rng));
        Ok(weighted_bce_with_logits(logits, labels, self.config.pos_weight))
    }

    fn evaluate(&self, model: &IntentNet, split: Split) -> Result<Metrics> {
        let examples = self.splits.get(split);
        if examples.is_empty() {
            bail!(
                "the {split} split has no users (raise data.{split}_fraction or use a larger log)"
            );
        }
        Ok(intent_metrics(&self.probabilities(model, examples)?, examples))
    }

    fn findings(&self, model: &IntentNet, split: Split) -> Result<Findings> {
        let examples = self.splits.get(split);
        if examples.is_empty() {
            bail!(
                "the {split} split has no users (raise data.{split}_fraction or use a larger log)"
            );
        }
        let scores = self.probabilities(model, examples)?;
        let metrics = intent_metrics(&scores, examples);
        let outcome = BinaryOutcome {
            labels: examples.labels.clone(),
            baseline_name: "cart count".into(),
            baseline: cart_scores(examples),
            scores,
        };
        Ok(Findings { split, metrics, outcome: Outcome::Binary(outcome) })
    }
}

pub struct IntentFamily;

/// Users and buyers of one split.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SplitSize {
    pub users: usize,
    pub buyers: usize,
}

/// What `run.json` keeps: the vocabulary's size, the sequence length, the cut and the
/// split sizes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct IntentInput {
    pub num_tokens: usize,
    pub sequence_length: usize,
    pub cut: i64,
    pub train: SplitSize,
    pub val: SplitSize,
    pub test: SplitSize,
}

impl IntentFamily {
    fn histories(data: &SequenceDataConfig) -> Result<UserHistories> {
        let histories = UserHistories::for_training(data)?;
        report_skipped(&data.events, histories.read.skipped);
        Ok(histories)
    }

    /// The run's vocabulary, checked against the size the net was trained with.
    fn vocabulary(trained: &Trained<Self>) -> Result<Vocabulary> {
        let path = trained.artifacts.file(VOCABULARY_FILE);
        let vocabulary = Vocabulary::load(&path)?;
        if vocabulary.len() != trained.input.num_tokens {
            bail!(
                "{}: {} tokens, but the model was trained with {}",
                path.display(),
                vocabulary.len(),
                trained.input.num_tokens
            );
        }
        Ok(vocabulary)
    }
}

/// Refuses, before the sequences are built, sizes that cannot fit: `users` padded sequences
/// of `data.sequence_length` tokens, and a training batch's activations through the net.
fn ensure_fits(config: &Config<IntentFamily>, users: usize) -> Result<()> {
    let (model, length) = (&config.model, config.data.sequence_length as u128);
    let sequences = (users as u128).saturating_mul(length).saturating_mul(4);
    let per_position = (model.embedding_size as u128)
        .saturating_add(model.conv_channels as u128)
        .saturating_add((model.hidden as u128).saturating_mul(8));
    let batch = (config.train.batch_size.max(INFERENCE_BATCH) as u128).saturating_mul(length);
    let activations = batch.saturating_mul(per_position).saturating_mul(4 * 4);
    let embedding = (config.data.vocab_size as u128).saturating_mul(model.embedding_size as u128);
    let recurrent = (model.hidden as u128)
        .saturating_mul(model.hidden as u128 + model.conv_channels as u128)
        .saturating_mul(4);
    let weights = embedding.saturating_add(recurrent).saturating_mul(memory::TRAINED_F32);
    let what = format!(
        "data.sequence_length = {length}, model.embedding_size = {}, model.hidden = {} for {users} users",
        model.embedding_size, model.hidden
    );
    memory::ensure_fits(&what, sequences.saturating_add(activations).saturating_add(weights))
}

fn report_skipped(path: &Path, skipped: u64) {
    if skipped > 0 {
        eprintln!(
            "note: skipped {skipped} rows of {} that did not parse (data.skip_bad_rows = true)",
            path.display()
        );
    }
}

/// The largest events text of one user a request may hold: far more than the
/// `sequence_length` latest events the net reads.
const MAX_EVENTS_BYTES: usize = 1 << 20;

/// The trained net answering `events` requests: one user's recent events each.
struct OnlineIntent {
    signature: Signature,
    net: IntentInference,
    vocabulary: Vocabulary,
    sequence_length: usize,
    device: Device,
}

impl Online for OnlineIntent {
    type Example = (u64, Vec<u32>);

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn parse(&self, request: &Request) -> std::result::Result<Vec<(u64, Vec<u32>)>, String> {
        online::texts(request.input("events"), MAX_EVENTS_BYTES)?
            .into_iter()
            .enumerate()
            .map(|(at, text)| {
                let name = format!("input \"events\"[{at}]");
                user_sequence(&name, text.as_bytes(), self.sequence_length, &self.vocabulary)
                    .map_err(|err| format!("{err:#}"))
            })
            .collect()
    }

    fn predict(&self, examples: &[(u64, Vec<u32>)]) -> Result<Vec<Vec<Values>>> {
        let batch = Examples {
            sequence_length: self.sequence_length,
            users: examples.iter().map(|(user, _)| *user).collect(),
            tokens: examples.iter().flat_map(|(_, tokens)| tokens.iter().copied()).collect(),
            ..Examples::default()
        };
        let probabilities = probabilities(&self.net, &batch, &self.device)?;
        Ok(examples
            .iter()
            .zip(probabilities)
            .map(|((user, _), p)| vec![Values::Int64(vec![*user as i64]), Values::Fp32(vec![p])])
            .collect())
    }

    fn warmup_example(&self) -> (u64, Vec<u32>) {
        (0, vec![PAD; self.sequence_length])
    }
}

impl Family for IntentFamily {
    const KIND: ModelKind = ModelKind::Intent;
    const RUN_FILES: &'static [&'static str] = &[VOCABULARY_FILE];
    type Model = IntentConfig;
    type Data = SequenceDataConfig;
    type Input = IntentInput;
    type Task = PurchaseIntent;

    fn validate(config: &Config<Self>) -> Result<()> {
        no_label_smoothing(&config.train, "a purchase-intent probability")?;
        let model = &config.model;
        let sizes = [
            ("model.embedding_size", model.embedding_size),
            ("model.conv_channels", model.conv_channels),
            ("model.hidden", model.hidden),
            ("model.pool", model.pool),
        ];
        for (key, value) in sizes {
            check_positive(key, value)?;
        }
        if model.kernel_size.is_multiple_of(2) {
            bail!(
                "model.kernel_size: must be odd (so that the convolution keeps the sequence length), got {}",
                model.kernel_size
            );
        }
        check_fraction("model.dropout", model.dropout)?;
        if !(model.pos_weight.is_finite() && model.pos_weight > 0.0) {
            bail!("model.pos_weight: must be positive, got {}", model.pos_weight);
        }
        if config.data.sequence_length < model.pool {
            bail!("data.sequence_length: must be at least model.pool ({})", model.pool);
        }
        config.data.validate().map(|_| ())
    }

    fn metric_names(_config: &Config<Self>) -> Vec<String> {
        ["loss", "roc_auc", "pr_auc", "accuracy", "positive_rate", "cart_baseline_roc_auc"]
            .map(String::from)
            .to_vec()
    }

    fn prepare(
        config: &Config<Self>,
        device: &Device,
        resume_from: Option<&Path>,
    ) -> Result<Prepared<Self>> {
        let histories = Self::histories(&config.data)?;
        ensure_fits(config, histories.len())?;
        let vocabulary = histories.fit_vocabulary(&config.data, Split::Train);
        if let Some(run) = resume_from
            && Vocabulary::load(&run.join(VOCABULARY_FILE))? != vocabulary
        {
            bail!(
                "{}: the event log now gives another vocabulary than the run was trained with",
                run.display()
            );
        }
        let splits = Splits::from_fn(|split| histories.examples(&config.data, split, &vocabulary));
        let size =
            |examples: &Examples| SplitSize { users: examples.len(), buyers: examples.positives() };
        let input = IntentInput {
            num_tokens: vocabulary.len(),
            sequence_length: config.data.sequence_length,
            cut: histories.cut,
            train: size(&splits.train),
            val: size(&splits.val),
            test: size(&splits.test),
        };
        drop(histories);
        eprintln!(
            "{} users with history before the cut: {} train ({} buyers), {} val, {} test; {} tokens",
            input.train.users + input.val.users + input.test.users,
            input.train.users,
            input.train.buyers,
            input.val.users,
            input.test.users,
            vocabulary.len()
        );
        let task = PurchaseIntent::new(
            config.model.settings.clone(),
            vocabulary.len(),
            config.train.batch_size,
            splits,
            device,
        );
        Ok(Prepared {
            task,
            labels: Vec::new(),
            input,
            run_files: vec![(VOCABULARY_FILE, vocabulary.to_csv())],
        })
    }

    fn net(trained: &Trained<Self>, device: &Device) -> Result<IntentNet> {
        let mut rng = HostRng::new(trained.config.train.seed);
        Ok(IntentNet::new(&trained.config.model, trained.input.num_tokens, &mut rng, device))
    }

    fn restore(trained: &Trained<Self>, device: &Device) -> Result<PurchaseIntent> {
        let config = &trained.config;
        let vocabulary = Self::vocabulary(trained)?;
        let histories = Self::histories(&config.data)?;
        ensure_fits(config, histories.len())?;
        let splits = Splits::from_fn(|split| histories.examples(&config.data, split, &vocabulary));
        Ok(PurchaseIntent::new(
            config.model.settings.clone(),
            vocabulary.len(),
            config.train.batch_size,
            splits,
            device,
        ))
    }

    /// Scores every user of `input` from all of its events (there is no cut: the
    /// prediction is about the window after the log ends), in batches, in user-id order.
    fn score(trained: &Trained<Self>, job: &BatchJob<'_>, device: &Device) -> Result<usize> {
        let (input, output) = (job.input, job.output);
        let data = &trained.config.data;
        let vocabulary = Self::vocabulary(trained)?;
        let model = IntentInference::new(&driver::load_net(trained, device)?);
        let path = Path::new(input);
        let mut histories = UserHistories::for_scoring(path, data)?;
        report_skipped(path, histories.read.skipped);
        let mut users = histories.sorted_users();
        users.retain(|user| job.shard.holds(&user.to_string()));
        ensure_fits(&trained.config, users.len().min(INFERENCE_BATCH * 16))?;
        let progress = Progress::new(Some(users.len() as u64), 0, "users");
        let mut writer = ProbabilityWriter::create(output)?;
        for chunk in users.chunks(INFERENCE_BATCH * 16) {
            let examples = histories.take(chunk, data.sequence_length, &vocabulary);
            for (user, probability) in
                examples.users.iter().zip(probabilities(&model, &examples, device)?)
            {
                writer.write(*user, probability)?;
            }
            progress.advance(chunk.len() as u64, None);
        }
        progress.finish();
        writer.finish()
    }

    fn schema(trained: &Trained<Self>) -> serde_json::Value {
        serde_json::json!({
            "input": {
                "format": "event log CSV: user_id,item_id,category_id,behavior,timestamp (behavior pv|fav|cart|buy, Unix seconds)",
                "sequence_length": trained.input.sequence_length,
                "vocabulary": VOCABULARY_FILE,
                "trained_with_cut": describe_time(trained.input.cut),
            },
            "output": ProbabilityWriter::COLUMNS,
        })
    }

    fn online(trained: Trained<Self>, device: &Device) -> Result<Box<dyn Served>> {
        let signature = Signature {
            inputs: vec![TensorSpec::new("events", Datatype::Bytes, &[-1])],
            outputs: vec![
                TensorSpec::new("user_id", Datatype::Int64, &[-1]),
                TensorSpec::new("probability", Datatype::Fp32, &[-1]),
            ],
            parameters: Vec::new(),
        };
        Ok(Box::new(OnlineIntent {
            signature,
            net: IntentInference::new(&driver::load_net(&trained, device)?),
            vocabulary: Self::vocabulary(&trained)?,
            sequence_length: trained.config.data.sequence_length,
            device: device.clone(),
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn weighted_bce_matches_the_formula_by_hand() {
        let device = Device::flex();
        let logits =
            Tensor::<1>::from_data(TensorData::new(vec![2.0f32, -1.0, 30.0], [3]), &device);
        let labels = Tensor::<1>::from_data(TensorData::new(vec![1.0f32, 0.0, 0.0], [3]), &device);
        let loss = weighted_bce_with_logits(logits, labels, 3.0).into_scalar::<f32>();
        // -3 log sigmoid(2) - log(1 - sigmoid(-1)) - log(1 - sigmoid(30)), averaged.
        let sigmoid = |z: f64| 1.0 / (1.0 + (-z).exp());
        let expected = (-3.0 * sigmoid(2.0).ln() - (1.0 - sigmoid(-1.0)).ln()
            + (30.0 + (-30f64).exp().ln_1p()))
            / 3.0;
        assert!((loss as f64 - expected).abs() < 1e-5, "{loss} vs {expected}");
    }
}
