//! Review sentiment (any text classification): a BERT encoder, pretrained from Hugging Face
//! files or randomly initialised at any size with a given tokenizer, and the `[CLS]` ->
//! dropout -> linear head; cross-entropy; accuracy and macro-F1.
//!
//! Batches are grouped by length (shuffle, sort within windows of 50 batches, shuffle the
//! batches) so that padding stays small without giving up random batches. The run keeps
//! the tokenizer (`tokenizer.json`) and the encoder's config (`run.json`), so scoring needs
//! neither the pretrained folder nor the network.

use std::fs::File;
use std::path::{Path, PathBuf};

use anyhow::{Result, anyhow, bail};
use burn::tensor::activation::softmax;
use burn::tensor::{Device, Tensor};
use rand::seq::SliceRandom;
use serde::{Deserialize, Serialize};

use super::driver;
use super::family::{BatchJob, Config, Family, Prepared, Trained};
use super::online::{self, Datatype, Online, Request, Served, Signature, TensorSpec, Values};
use crate::artifacts::findings::{self, Findings, Outcome, Shown};
use crate::artifacts::scores::ClassScoreWriter;
use crate::base::config::{ModelKind, check_fraction, check_positive};
use crate::base::memory;
use crate::base::metrics::{self, Metrics};
use crate::base::progress::Progress;
use crate::base::rng::HostRng;
use crate::base::split::{Split, Splits};
use crate::base::tensor::{fork_pretrained, label_column, smoothed_cross_entropy, to_host};
use crate::data::records::{CsvSource, Row};
use crate::data::text::{
    CjkPieces, TextDataConfig, TextDataset, TextTokenizer, TokenizerSpec, clean_text,
    train_tokenizer,
};
use crate::models::bert::{
    Bert, BertClassifier, BertConfig, BertInput, HiddenAct, ModelFiles, PositionEmbeddingType,
};
use crate::train::Task;
use crate::train::step::split_examples;

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
    /// The trained tokenizer's unit for Chinese (and other CJK) text: `"characters"`, or
    /// `"words"`, frequent runs of characters learned as tokens of their own.
    pub tokenizer_cjk: CjkPieces,
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
            pretrained: None,
            tokenizer: None,
            tokenizer_vocab_size: None,
            tokenizer_min_frequency: 2,
            tokenizer_cjk: CjkPieces::Characters,
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

impl SentimentModelConfig {
    fn validate(&self) -> Result<()> {
        check_fraction("model.dropout", self.dropout)?;
        check_fraction("model.encoder_dropout", self.encoder_dropout)?;
        if self.pretrained.is_none() {
            self.validate_random_encoder()?;
        }
        if self.max_length < 2 {
            bail!("model.max_length: must be at least 2 ([CLS] and [SEP])");
        }
        if self.tokenizer.is_some() && self.tokenizer_vocab_size.is_some() {
            bail!(
                "model: set model.tokenizer (a tokenizer.json) or model.tokenizer_vocab_size (train one), not both"
            );
        }
        if self.tokenizer_cjk != CjkPieces::Characters && self.tokenizer_vocab_size.is_none() {
            bail!(
                "model.tokenizer_cjk: applies to a tokenizer trained here (model.tokenizer_vocab_size); a given tokenizer keeps its own rule"
            );
        }
        if self.pretrained.is_some() && self.tokenizer_vocab_size.is_some() {
            bail!(
                "model.tokenizer_vocab_size: a pretrained encoder keeps its own vocabulary; remove this key"
            );
        }
        if self.pretrained.is_none()
            && self.tokenizer.is_none()
            && self.tokenizer_vocab_size.is_none()
        {
            bail!(
                "model: set model.pretrained (a Hugging Face folder or repo id), model.tokenizer (a tokenizer.json) or model.tokenizer_vocab_size (train a tokenizer on the training split)"
            );
        }
        Ok(())
    }

    /// The sizes of a randomly initialised encoder, named by their keys here (a pretrained
    /// encoder's come from its config.json and are checked there).
    fn validate_random_encoder(&self) -> Result<()> {
        for (key, value) in [
            ("model.layers", self.layers),
            ("model.hidden", self.hidden),
            ("model.heads", self.heads),
            ("model.intermediate", self.intermediate),
        ] {
            check_positive(key, value)?;
        }
        if !self.hidden.is_multiple_of(self.heads) {
            bail!("model.heads: {} does not divide model.hidden = {}", self.heads, self.hidden);
        }
        if !(self.layer_norm_eps.is_finite() && self.layer_norm_eps > 0.0) {
            bail!("model.layer_norm_eps: must be a positive number, got {}", self.layer_norm_eps);
        }
        if !(self.init_std.is_finite() && self.init_std >= 0.0) {
            bail!("model.init_std: must be a finite number of at least 0, got {}", self.init_std);
        }
        // Per layer: attention (4 h^2) and feed-forward (2 h i) weights, trained with Adam;
        // activations of a batch of max_length tokens, a few dozen floats per width unit.
        let (h, i, l, n) = (
            self.hidden as u128,
            self.intermediate as u128,
            self.layers as u128,
            self.max_length as u128,
        );
        let weights = l.saturating_mul(
            h.saturating_mul(h)
                .saturating_mul(4)
                .saturating_add(h.saturating_mul(i).saturating_mul(2)),
        );
        let activations =
            l.saturating_mul(n).saturating_mul(h.saturating_add(i)).saturating_mul(64 * 4 * 8);
        let what = format!(
            "model.layers = {l}, model.hidden = {h}, model.intermediate = {i}, model.max_length = {n}"
        );
        memory::ensure_fits(
            &what,
            weights.saturating_mul(memory::TRAINED_F32).saturating_add(activations),
        )
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
            hidden_act: HiddenAct::Gelu,
            max_position_embeddings: self.max_length,
            type_vocab_size: 2,
            layer_norm_eps: self.layer_norm_eps,
            hidden_dropout_prob: self.encoder_dropout,
            attention_probs_dropout_prob: self.encoder_dropout,
            initializer_range: self.init_std,
            pad_token_id: 0,
            position_embedding_type: PositionEmbeddingType::Absolute,
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
    label_smoothing: f64,
    pad_id: u32,
    tokens: Vec<Vec<u32>>,
    labels: Vec<u32>,
    /// For showing the reviews a report samples.
    texts: Vec<String>,
    rows: Splits<Vec<usize>>,
}

/// What a [`Sentiment`] task is built from besides the corpus.
struct SentimentParts<'a> {
    encoder: BertConfig,
    pretrained: Option<Bert>,
    dropout: f64,
    batch_size: usize,
    label_smoothing: f64,
    tokenizer: &'a TextTokenizer,
}

impl Sentiment {
    fn new(parts: SentimentParts<'_>, data: &TextDataset) -> Result<Self> {
        let tokens = parts.tokenizer.encode_all(&data.texts)?;
        if let Some(max) = tokens.iter().flatten().max() {
            check_token(*max, &parts.encoder)?;
        }
        Ok(Self {
            encoder: parts.encoder,
            pretrained: parts.pretrained,
            num_classes: data.label_names.len(),
            dropout: parts.dropout,
            batch_size: parts.batch_size,
            label_smoothing: parts.label_smoothing,
            pad_id: parts.tokenizer.pad_id,
            tokens,
            labels: data.labels.clone(),
            texts: data.texts.clone(),
            rows: Splits::from_fn(|split| data.indices(split)),
        })
    }

    fn input(&self, rows: &[usize], device: &Device) -> BertInput {
        let sequences: Vec<&[u32]> = rows.iter().map(|&r| self.tokens[r].as_slice()).collect();
        BertInput::from_ids(&sequences, self.pad_id, device)
    }
}

/// A token id the encoder's embedding table has no row for is a tokenizer that does not
/// belong to the encoder.
fn check_token(id: u32, encoder: &BertConfig) -> Result<()> {
    if id as usize >= encoder.vocab_size {
        bail!(
            "the tokenizer produces token id {id}, beyond the encoder's vocabulary of {}",
            encoder.vocab_size
        );
    }
    Ok(())
}

/// Class probabilities of `sequences`, `[n * classes]` row-major, in the given order;
/// batches are formed by length so little compute goes to padding.
fn probabilities(
    model: &BertClassifier,
    sequences: &[&[u32]],
    pad_id: u32,
    classes: usize,
) -> Result<Vec<f32>> {
    let device = model.classifier.weight.val().device();
    let mut order: Vec<usize> = (0..sequences.len()).collect();
    order.sort_by_key(|&i| sequences[i].len());
    let mut out = vec![0.0f32; sequences.len() * classes];
    for batch in order.chunks(EVAL_BATCH) {
        let batch_sequences: Vec<&[u32]> = batch.iter().map(|&i| sequences[i]).collect();
        let logits = model.forward(BertInput::from_ids(&batch_sequences, pad_id, &device));
        let probs = to_host(softmax(logits, 1))?;
        for (k, &i) in batch.iter().enumerate() {
            out[i * classes..(i + 1) * classes]
                .copy_from_slice(&probs[k * classes..(k + 1) * classes]);
        }
    }
    Ok(out)
}

impl Task for Sentiment {
    type Model = BertClassifier;
    type Batch = Vec<usize>;

    fn kind(&self) -> ModelKind {
        ModelKind::Bert
    }

    fn init_model(&self, seed: u64, device: &Device) -> Result<BertClassifier> {
        // burn-nn's layers draw their initial weights from the device generator.
        device.seed(seed);
        let bert = match &self.pretrained {
            Some(bert) => fork_pretrained(bert, device),
            None => self.encoder.init(device),
        };
        Ok(BertClassifier::new(bert, &self.encoder, self.num_classes, self.dropout, device))
    }

    fn split_batch(&self, batch: &Vec<usize>, parts: usize) -> Option<Vec<(Vec<usize>, f64)>> {
        Some(split_examples(batch, parts))
    }

    fn batches_per_epoch(&self) -> usize {
        self.rows.train.len().div_ceil(self.batch_size)
    }

    fn train_batches(&self, rng: &mut HostRng) -> Result<Vec<Vec<usize>>> {
        let mut rows = self.rows.train.clone();
        rows.shuffle(rng.inner());
        let mut batches: Vec<Vec<usize>> = Vec::with_capacity(self.batches_per_epoch());
        for window in rows.chunks_mut(self.batch_size * LENGTH_WINDOW) {
            window.sort_by_key(|&r| self.tokens[r].len());
            batches.extend(window.chunks(self.batch_size).map(|b| b.to_vec()));
        }
        batches.shuffle(rng.inner());
        Ok(batches)
    }

    fn train_loss(
        &self,
        model: &BertClassifier,
        batch: &Vec<usize>,
        _rng: &mut HostRng,
    ) -> Result<Tensor<1>> {
        let device = model.classifier.weight.val().device();
        let logits = model.forward(self.input(batch, &device));
        let labels = label_column(batch.iter().map(|&r| self.labels[r]), &device);
        Ok(smoothed_cross_entropy(logits, labels, self.label_smoothing))
    }

    fn evaluate(&self, model: &BertClassifier, split: Split) -> Result<Metrics> {
        let (_, probs, labels) = self.split_probabilities(model, split)?;
        Ok(metrics::classification(&probs, &labels, self.num_classes))
    }

    fn findings(&self, model: &BertClassifier, split: Split) -> Result<Findings> {
        let (rows, probs, labels) = self.split_probabilities(model, split)?;
        let (metrics, outcome) = findings::classifier(&probs, &labels, self.num_classes, |i| {
            let row = rows[i];
            // The data row, counted from 1 as a spreadsheet shows it.
            let mut shown = Shown::id(format!("row {}", row + 1));
            shown.text = Some(self.texts[row].clone());
            Ok(shown)
        })?;
        Ok(Findings { split, metrics, outcome: Outcome::Classes(outcome) })
    }
}

impl Sentiment {
    /// The rows of `split`, their class probabilities (row-major) and labels.
    fn split_probabilities(
        &self,
        model: &BertClassifier,
        split: Split,
    ) -> Result<(&[usize], Vec<f32>, Vec<u32>)> {
        let rows = self.rows.get(split);
        if rows.is_empty() {
            bail!(
                "the {split} split is empty (raise data.{}_fraction)",
                if split == Split::Test { "test" } else { "val" }
            );
        }
        let sequences: Vec<&[u32]> = rows.iter().map(|&r| self.tokens[r].as_slice()).collect();
        let probs = probabilities(model, &sequences, self.pad_id, self.num_classes)?;
        let labels: Vec<u32> = rows.iter().map(|&r| self.labels[r]).collect();
        Ok((rows, probs, labels))
    }
}

/// The run's tokenizer as tokenizer.json bytes: the resumed run's own, the configured
/// file, the pretrained model's, or one trained on the training split (never on
/// validation or test texts). A file is parsed here so that a broken one is named.
fn run_tokenizer(
    model: &SentimentModelConfig,
    files: Option<&ModelFiles>,
    data: &TextDataset,
    resume_from: Option<&Path>,
) -> Result<(Vec<u8>, String)> {
    let source = match resume_from {
        Some(run) => Some(run.join(TOKENIZER_FILE)),
        None => model.tokenizer.clone().or_else(|| files.map(|f| f.tokenizer.clone())),
    };
    if let Some(path) = source {
        TextTokenizer::load(&path, model.max_length)?;
        let bytes = std::fs::read(&path)
            .map_err(|err| anyhow!("{}: cannot read: {err}", path.display()))?;
        return Ok((bytes, path.display().to_string()));
    }
    let Some(vocab_size) = model.tokenizer_vocab_size else {
        bail!(
            "model: no tokenizer source (model.tokenizer, model.pretrained or model.tokenizer_vocab_size)"
        );
    };
    let training: Vec<String> =
        data.indices(Split::Train).into_iter().map(|i| data.texts[i].clone()).collect();
    let spec = TokenizerSpec {
        vocab_size,
        min_frequency: model.tokenizer_min_frequency,
        cjk: model.tokenizer_cjk,
    };
    let tokenizer = train_tokenizer(&training, spec)
        .map_err(|err| anyhow!("model.tokenizer_vocab_size: {err}"))?;
    let json = tokenizer
        .to_string(false)
        .map_err(|err| anyhow!("cannot serialise the tokenizer: {err}"))?;
    Ok((json.into_bytes(), "model.tokenizer_vocab_size (the trained tokenizer)".to_string()))
}

/// `model.kind = "bert"`: review sentiment, or any text classification.
pub struct SentimentFamily;

/// What `run.json` keeps about the encoder and its input.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SentimentInput {
    pub bert: BertConfig,
    pub max_length: usize,
    pub text_column: String,
}

impl SentimentFamily {
    fn tokenizer(trained: &Trained<Self>) -> Result<TextTokenizer> {
        TextTokenizer::load(&trained.artifacts.file(TOKENIZER_FILE), trained.input.max_length)
    }
}

/// A text's tokens as the model reads them (scoring and serving alike).
fn encode(text: &str, tokenizer: &TextTokenizer, encoder: &BertConfig) -> Result<Vec<u32>> {
    let tokens =
        tokenizer.encode(clean_text(text)).map_err(|err| anyhow!("{TOKENIZER_FILE}: {err}"))?;
    if let Some(max) = tokens.iter().max() {
        check_token(*max, encoder).map_err(|err| anyhow!("{TOKENIZER_FILE}: {err}"))?;
    }
    Ok(tokens)
}

/// The trained classifier answering `text` requests.
struct OnlineSentiment {
    signature: Signature,
    net: BertClassifier,
    tokenizer: TextTokenizer,
    encoder: BertConfig,
    labels: Vec<String>,
}

impl Online for OnlineSentiment {
    type Example = Vec<u32>;

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn parse(&self, request: &Request) -> std::result::Result<Vec<Vec<u32>>, String> {
        online::texts(request.input("text"), MAX_TEXT_BYTES)?
            .into_iter()
            .enumerate()
            .map(|(at, text)| {
                encode(text, &self.tokenizer, &self.encoder)
                    .map_err(|err| format!("input \"text\"[{at}]: {err:#}"))
            })
            .collect()
    }

    fn predict(&self, examples: &[Vec<u32>]) -> Result<Vec<Vec<Values>>> {
        let sequences: Vec<&[u32]> = examples.iter().map(Vec::as_slice).collect();
        let classes = self.labels.len();
        let probs = probabilities(&self.net, &sequences, self.tokenizer.pad_id, classes)?;
        Ok(probs.chunks(classes).map(|row| online::class_prediction(row, &self.labels)).collect())
    }

    fn warmup_example(&self) -> Vec<u32> {
        self.tokenizer.encode("").unwrap_or_default()
    }
}

impl Family for SentimentFamily {
    const KIND: ModelKind = ModelKind::Bert;
    const RUN_FILES: &'static [&'static str] = &[TOKENIZER_FILE];
    type Model = SentimentModelConfig;
    type Data = TextDataConfig;
    type Input = SentimentInput;
    type Task = Sentiment;

    fn validate(config: &Config<Self>) -> Result<()> {
        config.model.validate()?;
        config.data.validate()
    }

    fn metric_names(_config: &Config<Self>) -> Vec<String> {
        metrics::CLASSIFICATION.map(String::from).to_vec()
    }

    fn prepare(
        config: &Config<Self>,
        device: &Device,
        resume_from: Option<&Path>,
    ) -> Result<Prepared<Self>> {
        let model = &config.model.settings;
        let files = model.pretrained.as_deref().map(ModelFiles::resolve).transpose()?;
        let data = TextDataset::load(&config.data)?;
        let (tokenizer_json, origin) = run_tokenizer(model, files.as_ref(), &data, resume_from)?;
        // Errors the tokenizer causes (an empty vocabulary, ids beyond the encoder's) name it.
        let named = |err: anyhow::Error| anyhow!("{origin}: {err:#}");
        let tokenizer =
            TextTokenizer::from_bytes(&tokenizer_json, model.max_length).map_err(named)?;
        let encoder = model.encoder(files.as_ref(), tokenizer.vocab_size()).map_err(named)?;
        if model.max_length > encoder.max_position_embeddings {
            bail!(
                "model.max_length: {} exceeds the encoder's {} positions",
                model.max_length,
                encoder.max_position_embeddings
            );
        }
        let pretrained = files.map(|files| files.load(device)).transpose()?.map(|(_, bert)| bert);
        let input = SentimentInput {
            bert: encoder.clone(),
            max_length: model.max_length,
            text_column: config.data.text_column.clone(),
        };
        let parts = SentimentParts {
            encoder,
            pretrained,
            dropout: model.dropout,
            batch_size: config.train.batch_size,
            label_smoothing: config.train.label_smoothing,
            tokenizer: &tokenizer,
        };
        let task = Sentiment::new(parts, &data).map_err(named)?;
        Ok(Prepared {
            task,
            labels: data.label_names.clone(),
            input,
            run_files: vec![(TOKENIZER_FILE, tokenizer_json)],
        })
    }

    fn net(trained: &Trained<Self>, device: &Device) -> Result<BertClassifier> {
        let bert = &trained.input.bert;
        bert.validate()
            .map_err(|err| anyhow!("{}: input.bert: {err}", trained.artifacts.dir.display()))?;
        let classes = trained.labels().len();
        Ok(BertClassifier::new(
            bert.init(device),
            bert,
            classes,
            trained.config.model.dropout,
            device,
        ))
    }

    fn restore(trained: &Trained<Self>, _device: &Device) -> Result<Sentiment> {
        let config = &trained.config;
        let data = TextDataset::load(&config.data)?;
        if data.label_names != trained.labels() {
            bail!(
                "{}: its labels {:?} differ from the model's {:?}",
                config.data.path.display(),
                data.label_names,
                trained.labels()
            );
        }
        let tokenizer = Self::tokenizer(trained)?;
        let parts = SentimentParts {
            encoder: trained.input.bert.clone(),
            pretrained: None,
            dropout: config.model.dropout,
            batch_size: config.train.batch_size,
            label_smoothing: config.train.label_smoothing,
            tokenizer: &tokenizer,
        };
        Sentiment::new(parts, &data)
    }

    fn score(trained: &Trained<Self>, job: &BatchJob<'_>, device: &Device) -> Result<usize> {
        let (input_path, output) = (job.input, job.output);
        let model = driver::load_net(trained, device)?;
        let tokenizer = Self::tokenizer(trained)?;
        let file =
            File::open(input_path).map_err(|err| anyhow!("{input_path}: cannot open: {err}"))?;
        let mut source = CsvSource::new(input_path, file, &[trained.input.text_column.as_str()])?;
        let columns = ScoreColumns::find(&source, trained);
        let labels = trained.labels();
        let mut writer = ClassScoreWriter::create(
            output,
            if columns.id.is_some() { "id" } else { "row" },
            labels,
        )?;
        let progress = Progress::new(None, 0, "rows scored");
        let mut pending: Vec<(String, Vec<u32>)> = Vec::with_capacity(SCORE_CHUNK);
        let mut flush = |pending: &mut Vec<(String, Vec<u32>)>| -> Result<()> {
            let sequences: Vec<&[u32]> = pending.iter().map(|(_, t)| t.as_slice()).collect();
            let probs = probabilities(&model, &sequences, tokenizer.pad_id, labels.len())?;
            for ((id, _), row) in pending.iter().zip(probs.chunks(labels.len())) {
                writer.write(id, row)?;
            }
            progress.advance(pending.len() as u64, None);
            pending.clear();
            Ok(())
        };
        source.for_each(|row| {
            if !job.shard.holds(columns.shard_key(&row)) {
                return Ok(());
            }
            pending.push(columns.read(&row, trained, &tokenizer)?);
            if pending.len() >= SCORE_CHUNK {
                flush(&mut pending)?;
            }
            Ok(())
        })?;
        flush(&mut pending)?;
        progress.finish();
        writer.finish()
    }

    fn schema(trained: &Trained<Self>) -> serde_json::Value {
        serde_json::json!({
            "input": {
                "format": "CSV with a header; the text column is required, an `id` column is copied to the output, a label column is checked against the model's labels",
                "text_column": trained.input.text_column,
                "tokenizer": TOKENIZER_FILE,
                "max_length": trained.input.max_length,
            },
            "output": ClassScoreWriter::columns("id", trained.labels()),
        })
    }

    fn online(trained: Trained<Self>, device: &Device) -> Result<Box<dyn Served>> {
        let labels = trained.labels().to_vec();
        let signature = Signature {
            inputs: vec![TensorSpec::new("text", Datatype::Bytes, &[-1])],
            outputs: online::class_outputs(labels.len()),
            parameters: Vec::new(),
        };
        Ok(Box::new(OnlineSentiment {
            signature,
            net: driver::load_net(&trained, device)?,
            tokenizer: Self::tokenizer(&trained)?,
            encoder: trained.input.bert.clone(),
            labels,
        }))
    }
}

/// The longest review text a request may hold; the tokenizer keeps `max_length` tokens of
/// it anyway, so more only costs the server.
const MAX_TEXT_BYTES: usize = 64 * 1024;

/// Where the text, label and id of a row to score are.
struct ScoreColumns {
    text: usize,
    label: Option<usize>,
    id: Option<usize>,
}

impl ScoreColumns {
    fn find(source: &CsvSource<File>, trained: &Trained<SentimentFamily>) -> Self {
        Self {
            // `CsvSource::new` has checked that the text column exists.
            text: source.column(&trained.input.text_column).unwrap_or_default(),
            label: source.column(&trained.config.data.label_column),
            id: source.column("id"),
        }
    }

    /// What decides the row's shard: its `id`, or without one its text (never its line,
    /// which depends on the order of the file).
    fn shard_key<'r>(&self, row: &'r Row<'_>) -> &'r str {
        let at = self.id.unwrap_or(self.text);
        row.record.get(at).unwrap_or_default()
    }

    /// The row's id (its `id` or its line) and tokens; a label, when present, must be one
    /// the model knows.
    fn read(
        &self,
        row: &Row<'_>,
        trained: &Trained<SentimentFamily>,
        tokenizer: &TextTokenizer,
    ) -> Result<(String, Vec<u32>)> {
        let labels = trained.labels();
        if let Some(at) = self.label {
            let column = &trained.config.data.label_column;
            let value = clean_text(row.text(at, column)?);
            if !value.is_empty() && !labels.iter().any(|l| l == value) {
                return Err(row.error(format!(
                    "{column}: label {value:?} is not one the model was trained on ({})",
                    labels.join(", ")
                )));
            }
        }
        let id = match self.id {
            Some(at) => row.text(at, "id")?.to_string(),
            None => row.line.to_string(),
        };
        let text = row.text(self.text, &trained.input.text_column)?;
        let tokens = encode(text, tokenizer, &trained.input.bert).map_err(|err| row.error(err))?;
        Ok((id, tokens))
    }
}
