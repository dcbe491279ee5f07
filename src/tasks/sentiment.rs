//! Review sentiment (any text classification): a BERT encoder, pretrained from Hugging Face
//! files or randomly initialised at any size with a given tokenizer, and the `[CLS]` ->
//! dropout -> linear head; cross-entropy; accuracy and macro-F1.
//!
//! Batches are grouped by length (shuffle, sort within windows of 50 batches, shuffle the
//! batches) so that padding stays small without giving up random batches. The run keeps
//! the tokenizer (`tokenizer.json`) and the encoder's config (`run.json`), so scoring needs
//! neither the pretrained folder nor the network.

use std::collections::HashMap;
use std::fs::File;
use std::io::IsTerminal;
use std::path::{Path, PathBuf};

use anyhow::{Result, anyhow, bail};
use burn::module::Module;
use burn::tensor::activation::{log_softmax, softmax};
use burn::tensor::{Device, Int, Tensor, TensorData};
use indicatif::ProgressBar;
use rand::seq::SliceRandom;
use serde::{Deserialize, Serialize};

use super::{Family, TrainJob, TrainSummary};
use crate::config::{check_fraction, ConfigDoc, ModelKind, RunConfig};
use crate::data::Split;
use crate::data::records::CsvSource;
use crate::data::text::{TextDataConfig, TextDataset, TextTokenizer, clean_text, train_wordpiece};
use crate::metrics::{self, Metrics};
use crate::models::bert::{Bert, BertClassifier, BertConfig, BertInput, ModelFiles};
use crate::models::random::HostRng;
use crate::run_dir::{self, Artifacts};
use crate::score::ClassScoreWriter;
use crate::train::Task;

/// The run's copy of the tokenizer.
pub const TOKENIZER_FILE: &str = "tokenizer.json";
/// Examples per forward pass when evaluating or scoring.
const EVAL_BATCH: usize = 64;
/// Rows read, sorted by length and scored together while streaming a file.
const SCORE_CHUNK: usize = 4096;
/// Training batches sorted by length together (see the module doc).
const LENGTH_WINDOW: usize = 50;

/// `[model]` for `kind = "bert"`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SentimentModelConfig {
    pub kind: String,
    /// A Hugging Face model folder or repo id (config.json, model.safetensors,
    /// tokenizer.json). Without it the encoder is random, sized by the keys below.
    pub pretrained: Option<String>,
    /// A tokenizer.json (e.g. from `shopnet tokenizer train`); replaces a pretrained
    /// model's own when given.
    pub tokenizer: Option<PathBuf>,
    /// Without `tokenizer` or `pretrained`: train a WordPiece tokenizer of this many tokens
    /// on the training split's texts, pieces seen at least `tokenizer_min_frequency` times.
    pub tokenizer_vocab_size: Option<usize>,
    pub tokenizer_min_frequency: u64,
    /// Random encoder: layers, width, heads, feed-forward width, LayerNorm epsilon,
    /// dropout inside the encoder, and the standard deviation of the initial weights.
    pub layers: usize,
    pub hidden: usize,
    pub heads: usize,
    pub intermediate: usize,
    pub layer_norm_eps: f64,
    pub encoder_dropout: f64,
    pub init_std: f64,
    /// Tokens per text, `[CLS]` and `[SEP]` included; longer texts are truncated.
    pub max_length: usize,
    /// Dropout before the classifier.
    pub dropout: f64,
}

impl Default for SentimentModelConfig {
    fn default() -> Self {
        Self {
            kind: "bert".into(),
            pretrained: None,
            tokenizer: None,
            tokenizer_vocab_size: None,
            tokenizer_min_frequency: 2,
            layers: 4,
            hidden: 256,
            heads: 4,
            intermediate: 1024,
            layer_norm_eps: 1e-12,
            encoder_dropout: 0.1,
            init_std: 0.02,
            max_length: 128,
            dropout: 0.1,
        }
    }
}

type SentimentConfig = RunConfig<SentimentModelConfig, TextDataConfig>;

impl SentimentModelConfig {
    fn validate(&self) -> Result<()> {
        check_fraction("model.dropout", self.dropout)?;
        check_fraction("model.encoder_dropout", self.encoder_dropout)?;
        if self.max_length < 2 {
            bail!("model.max_length: must be at least 2 ([CLS] and [SEP])");
        }
        if self.tokenizer.is_some() && self.tokenizer_vocab_size.is_some() {
            bail!("model: set model.tokenizer (a tokenizer.json) or model.tokenizer_vocab_size (train one), not both");
        }
        if self.pretrained.is_some() && self.tokenizer_vocab_size.is_some() {
            bail!("model.tokenizer_vocab_size: a pretrained encoder keeps its own vocabulary; remove this key");
        }
        if self.pretrained.is_none() && self.tokenizer.is_none() && self.tokenizer_vocab_size.is_none() {
            bail!("model: set model.pretrained (a Hugging Face folder or repo id), model.tokenizer (a tokenizer.json) or model.tokenizer_vocab_size (train a tokenizer on the training split)");
        }
        Ok(())
    }

    /// The encoder's config: the pretrained model's, or one built from the keys above.
    fn encoder(&self, files: Option<&ModelFiles>, vocab_size: usize) -> Result<BertConfig> {
        if let Some(files) = files {
            return BertConfig::load(&files.config);
        }
        let config = BertConfig {
            vocab_size,
            hidden_size: self.hidden,
            num_hidden_layers: self.layers,
            num_attention_heads: self.heads,
            intermediate_size: self.intermediate,
            hidden_act: "gelu".into(),
            max_position_embeddings: self.max_length,
            type_vocab_size: 2,
            layer_norm_eps: self.layer_norm_eps,
            hidden_dropout_prob: self.encoder_dropout,
            attention_probs_dropout_prob: self.encoder_dropout,
            initializer_range: self.init_std,
            pad_token_id: 0,
            position_embedding_type: "absolute".into(),
        };
        config.validate().map_err(|err| anyhow!("model: {err}"))?;
        Ok(config)
    }
}

/// A tokenized corpus, ready to train or evaluate a classifier on.
pub struct Sentiment {
    encoder: BertConfig,
    /// Set while training from a pretrained checkpoint: its weights start the run.
    pretrained: Option<Bert>,
    num_classes: usize,
    dropout: f64,
    batch_size: usize,
    pad_id: u32,
    tokens: Vec<Vec<u32>>,
    labels: Vec<u32>,
    rows: HashMap<Split, Vec<usize>>,
}

impl Sentiment {
    fn new(encoder: BertConfig, pretrained: Option<Bert>, model: &SentimentModelConfig, batch_size: usize, tokenizer: &TextTokenizer, data: &TextDataset) -> Result<Self> {
        let tokens = tokenizer.encode_all(&data.texts)?;
        if let Some(max) = tokens.iter().flatten().max()
            && *max as usize >= encoder.vocab_size
        {
            bail!("the tokenizer produces token id {max}, beyond the encoder's vocabulary of {}", encoder.vocab_size);
        }
        let rows = [Split::Train, Split::Val, Split::Test].into_iter().map(|s| (s, data.indices(s))).collect();
        Ok(Self {
            encoder,
            pretrained,
            num_classes: data.label_names.len(),
            dropout: model.dropout,
            batch_size: batch_size.max(1),
            pad_id: tokenizer.pad_id,
            tokens,
            labels: data.labels.clone(),
            rows,
        })
    }

    fn input(&self, rows: &[usize], device: &Device) -> BertInput {
        let sequences: Vec<&[u32]> = rows.iter().map(|&r| self.tokens[r].as_slice()).collect();
        BertInput::from_ids(&sequences, self.pad_id, device)
    }
}

/// Class probabilities of `sequences`, `[n * classes]` row-major, in the given order;
/// batches are formed by length so little compute goes to padding.
fn probabilities(model: &BertClassifier, sequences: &[&[u32]], pad_id: u32, classes: usize) -> Vec<f32> {
    let device = model.classifier.weight.val().device();
    let mut order: Vec<usize> = (0..sequences.len()).collect();
    order.sort_by_key(|&i| sequences[i].len());
    let mut out = vec![0.0f32; sequences.len() * classes];
    for batch in order.chunks(EVAL_BATCH) {
        let batch_sequences: Vec<&[u32]> = batch.iter().map(|&i| sequences[i]).collect();
        let logits = model.forward(BertInput::from_ids(&batch_sequences, pad_id, &device));
        let probs = softmax(logits, 1).into_data().try_to_vec::<f32>().expect("f32 probabilities");
        for (k, &i) in batch.iter().enumerate() {
            out[i * classes..(i + 1) * classes].copy_from_slice(&probs[k * classes..(k + 1) * classes]);
        }
    }
    out
}

impl Task for Sentiment {
    type Model = BertClassifier;
    type Batch = Vec<usize>;

    fn kind(&self) -> ModelKind {
        ModelKind::Bert
    }

    fn init_model(&self, seed: u64, device: &Device) -> BertClassifier {
        // burn-nn's layers draw their initial weights from the device generator.
        device.seed(seed);
        let bert = match &self.pretrained {
            // Loaded tensors arrive without gradient tracking; a training device needs it back.
            Some(bert) if device.is_autodiff() => bert.clone().fork(device).set_require_grad(true).train(),
            Some(bert) => bert.clone().fork(device),
            None => self.encoder.init(device),
        };
        BertClassifier::new(bert, &self.encoder, self.num_classes, self.dropout, device)
    }

    fn batches_per_epoch(&self) -> usize {
        self.rows[&Split::Train].len().div_ceil(self.batch_size)
    }

    fn train_batches(&self, rng: &mut HostRng) -> Vec<Vec<usize>> {
        let mut rows = self.rows[&Split::Train].clone();
        rows.shuffle(rng.inner());
        let mut batches: Vec<Vec<usize>> = Vec::with_capacity(self.batches_per_epoch());
        for window in rows.chunks_mut(self.batch_size * LENGTH_WINDOW) {
            window.sort_by_key(|&r| self.tokens[r].len());
            batches.extend(window.chunks(self.batch_size).map(|b| b.to_vec()));
        }
        batches.shuffle(rng.inner());
        batches
    }

    fn train_loss(&self, model: &BertClassifier, batch: &Vec<usize>, _rng: &mut HostRng) -> Tensor<1> {
        let device = model.classifier.weight.val().device();
        let logits = model.forward(self.input(batch, &device));
        let labels = Tensor::<2, Int>::from_data(TensorData::new(batch.iter().map(|&r| self.labels[r] as i64).collect(), [batch.len(), 1]), &device);
        log_softmax(logits, 1).gather(1, labels).mean().neg()
    }

    fn evaluate(&self, model: &BertClassifier, split: Split) -> Result<Metrics> {
        let rows = &self.rows[&split];
        if rows.is_empty() {
            bail!("the {split} split is empty (raise data.{}_fraction)", if split == Split::Test { "test" } else { "val" });
        }
        let c = self.num_classes;
        let sequences: Vec<&[u32]> = rows.iter().map(|&r| self.tokens[r].as_slice()).collect();
        let probs = probabilities(model, &sequences, self.pad_id, c);
        let labels: Vec<u32> = rows.iter().map(|&r| self.labels[r]).collect();
        Ok(metrics::classification(&probs, &labels, c))
    }
}

/// Puts the run's tokenizer at `out`: the configured file, the pretrained model's, or one
/// trained on the training split (never on validation or test texts).
fn write_run_tokenizer(model: &SentimentModelConfig, files: Option<&ModelFiles>, data: &TextDataset, out: &Path) -> Result<()> {
    let source = model.tokenizer.clone().or_else(|| files.map(|f| f.tokenizer.clone()));
    if let Some(path) = source {
        // Parse it here so that a broken file is named as the user gave it.
        TextTokenizer::load(&path, model.max_length)?;
        let bytes = std::fs::read(&path).map_err(|err| anyhow!("{}: cannot read: {err}", path.display()))?;
        return run_dir::write_atomic(out, &bytes);
    }
    let vocab_size = model.tokenizer_vocab_size.expect("validate() requires a tokenizer source");
    let training: Vec<String> = data.indices(Split::Train).into_iter().map(|i| data.texts[i].clone()).collect();
    let tokenizer = train_wordpiece(&training, vocab_size, model.tokenizer_min_frequency).map_err(|err| anyhow!("model.tokenizer_vocab_size: {err}"))?;
    let json = tokenizer.to_string(false).map_err(|err| anyhow!("cannot serialise the tokenizer: {err}"))?;
    run_dir::write_atomic(out, json.as_bytes())
}

/// The CLI's entry to `model.kind = "bert"`.
pub struct SentimentFamily;

/// What `run.json` keeps about the encoder and its input.
#[derive(Debug, Serialize, Deserialize)]
struct SentimentInput {
    bert: BertConfig,
    max_length: usize,
    text_column: String,
}

impl SentimentFamily {
    fn config(doc: &ConfigDoc) -> Result<SentimentConfig> {
        let config: SentimentConfig = doc.typed()?;
        config.model.validate()?;
        config.data.validate()?;
        Ok(config)
    }

    /// The trained classifier, its tokenizer and what the run recorded.
    fn restore(artifacts: &Artifacts, device: &Device) -> Result<(BertClassifier, TextTokenizer, SentimentInput, SentimentConfig)> {
        let config = Self::config(&artifacts.config)?;
        let input: SentimentInput = serde_json::from_value(artifacts.info.input.clone())
            .map_err(|err| anyhow!("{}: input: {err}", artifacts.dir.join(run_dir::RUN_FILE).display()))?;
        let tokenizer = TextTokenizer::load(&artifacts.dir.join(TOKENIZER_FILE), input.max_length)?;
        let model = BertClassifier::new(input.bert.init(device), &input.bert, artifacts.info.labels.len(), config.model.dropout, device);
        let model = run_dir::load_weights(model, ModelKind::Bert, &artifacts.weights)?;
        Ok((model, tokenizer, input, config))
    }
}

impl Family for SentimentFamily {
    fn train(&self, job: TrainJob<'_>) -> Result<TrainSummary> {
        let config = Self::config(job.config)?;
        let files = config.model.pretrained.as_deref().map(ModelFiles::resolve).transpose()?;
        let data = TextDataset::load(&config.data)?;
        let tokenizer_copy = job.run_dir.join(TOKENIZER_FILE);
        if !job.resume {
            write_run_tokenizer(&config.model, files.as_ref(), &data, &tokenizer_copy)?;
        }
        let tokenizer = TextTokenizer::load(&tokenizer_copy, config.model.max_length)?;
        let encoder = config.model.encoder(files.as_ref(), tokenizer.vocab_size())?;
        if config.model.max_length > encoder.max_position_embeddings {
            bail!("model.max_length: {} exceeds the encoder's {} positions", config.model.max_length, encoder.max_position_embeddings);
        }
        let pretrained = files.map(|files| files.load(job.device)).transpose()?.map(|(_, bert)| bert);
        let task = Sentiment::new(encoder.clone(), pretrained, &config.model, config.train.batch_size, &tokenizer, &data)?;
        let input = SentimentInput { bert: encoder, max_length: config.model.max_length, text_column: config.data.text_column.clone() };
        super::train_task(&job, &config, &task, data.label_names.clone(), serde_json::to_value(&input)?)
    }

    fn evaluate(&self, artifacts: &Artifacts, split: Split, device: &Device) -> Result<Metrics> {
        let (model, tokenizer, input, config) = Self::restore(artifacts, device)?;
        let data = TextDataset::load(&config.data)?;
        if data.label_names != artifacts.info.labels {
            bail!("{}: its labels {:?} differ from the model's {:?}", config.data.path.display(), data.label_names, artifacts.info.labels);
        }
        let model_config = SentimentModelConfig { max_length: input.max_length, ..config.model };
        let task = Sentiment::new(input.bert, None, &model_config, config.train.batch_size, &tokenizer, &data)?;
        task.evaluate(&model, split)
    }

    fn score(&self, artifacts: &Artifacts, input_path: &str, output: &Path, device: &Device) -> Result<usize> {
        let (model, tokenizer, input, config) = Self::restore(artifacts, device)?;
        let labels = &artifacts.info.labels;
        let file = File::open(input_path).map_err(|err| anyhow!("{input_path}: cannot open: {err}"))?;
        let mut source = CsvSource::new(input_path, file, &[input.text_column.as_str()])?;
        let text_at = source.column(&input.text_column).expect("checked by CsvSource");
        let label_at = source.column(&config.data.label_column);
        let id_at = source.column("id");
        let mut writer = ClassScoreWriter::create(output, if id_at.is_some() { "id" } else { "row" }, labels)?;
        let bar = std::io::stderr().is_terminal().then(|| ProgressBar::new_spinner().with_message("rows scored"));
        let mut pending: Vec<(String, Vec<u32>)> = Vec::with_capacity(SCORE_CHUNK);
        let flush = |pending: &mut Vec<(String, Vec<u32>)>, writer: &mut ClassScoreWriter| -> Result<()> {
            let sequences: Vec<&[u32]> = pending.iter().map(|(_, t)| t.as_slice()).collect();
            let probs = probabilities(&model, &sequences, tokenizer.pad_id, labels.len());
            for ((id, _), row) in pending.iter().zip(probs.chunks(labels.len())) {
                writer.write(id, row)?;
            }
            if let Some(bar) = &bar {
                bar.inc(pending.len() as u64);
            }
            pending.clear();
            Ok(())
        };
        source.for_each(|row| {
            if let Some(at) = label_at {
                let value = clean_text(row.text(at, &config.data.label_column).unwrap_or(""));
                if !value.is_empty() && !labels.iter().any(|l| l == value) {
                    return Err(row.error(format!("{}: label {value:?} is not one the model was trained on ({})", config.data.label_column, labels.join(", "))));
                }
            }
            let text = clean_text(row.text(text_at, &input.text_column).unwrap_or(""));
            let id = match id_at {
                Some(at) => row.text(at, "id")?.to_string(),
                None => row.line.to_string(),
            };
            pending.push((id, tokenizer.encode(text).map_err(|err| row.error(err))?));
            if pending.len() >= SCORE_CHUNK {
                flush(&mut pending, &mut writer)?;
            }
            Ok(())
        })?;
        if !pending.is_empty() {
            flush(&mut pending, &mut writer)?;
        }
        if let Some(bar) = &bar {
            bar.finish_and_clear();
        }
        writer.finish()
    }

    fn run_files(&self) -> &'static [&'static str] {
        &[TOKENIZER_FILE]
    }

    fn schema(&self, artifacts: &Artifacts) -> serde_json::Value {
        let text_column = artifacts.info.input.get("text_column").cloned().unwrap_or_default();
        serde_json::json!({
            "input": {
                "format": "CSV with a header; the text column is required, an `id` column is copied to the output, a label column is checked against the model's labels",
                "text_column": text_column,
                "tokenizer": TOKENIZER_FILE,
                "max_length": artifacts.info.input.get("max_length"),
            },
            "output": ClassScoreWriter::columns("id", &artifacts.info.labels),
        })
    }
}
