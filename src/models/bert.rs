//! BERT encoder: Devlin, Chang, Lee and Toutanova, "BERT: Pre-training of Deep
//! Bidirectional Transformers for Language Understanding", NAACL 2019.
//!
//! Word + position + token-type embeddings summed and layer-normalised, then the layers of
//! burn-nn's post-norm `TransformerEncoder` (exact GELU, `layer_norm_eps` from the config),
//! run as a BERT layer runs: `x = norm_1(x + dropout(attention(x)))`, then
//! `norm_2(x + dropout(ffn(x)))`, attention dropout from `attention_probs_dropout_prob` and
//! no dropout inside the feed-forward block (burn-nn's own forward puts one there). The
//! attention, the GELU and the dropouts go through shopnet's fused ops ([`crate::ops`]).
//! The pooler is `tanh(dense(h[CLS]))`.
//!
//! Sized by a Hugging Face `config.json`; weights load from `model.safetensors` by their
//! Hugging Face names through the short key table in [`HF_KEY_TABLE`] plus burn-store's
//! PyTorch adapter (which transposes linear weights and maps LayerNorm weight/bias to
//! gamma/beta).

use std::path::{Path, PathBuf};

use crate::base::config::check_positive;
use crate::ops::attention::self_attention;
use crate::ops::dropout::dropout;
use crate::ops::gelu::gelu;
use crate::ops::layer_norm::add_layer_norm;
use crate::ops::linear::linear;
use anyhow::{Context, Result, anyhow, bail};
use burn::module::Module;
use burn::nn::activation::{Activation, ActivationConfig};
use burn::nn::transformer::{
    TransformerEncoder, TransformerEncoderConfig, TransformerEncoderLayer,
};
use burn::nn::{
    Dropout, DropoutConfig, Embedding, EmbeddingConfig, Initializer, LayerNorm, LayerNormConfig,
    Linear, LinearConfig,
};
use burn::store::{ModuleSnapshot, PyTorchToBurnAdapter, SafetensorsStore};
use burn::tensor::{Bool, Device, Int, Tensor};
use serde::{Deserialize, Serialize};

/// The fields of a Hugging Face BERT `config.json` that decide the net. The sizes have no
/// default, so a config of another architecture is refused rather than read as a BERT.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BertConfig {
    pub vocab_size: usize,
    pub hidden_size: usize,
    pub num_hidden_layers: usize,
    pub num_attention_heads: usize,
    pub intermediate_size: usize,
    #[serde(default)]
    pub hidden_act: HiddenAct,
    #[serde(default = "default_max_positions")]
    pub max_position_embeddings: usize,
    #[serde(default = "default_type_vocab")]
    pub type_vocab_size: usize,
    #[serde(default = "default_layer_norm_eps")]
    pub layer_norm_eps: f64,
    #[serde(default = "default_dropout")]
    pub hidden_dropout_prob: f64,
    #[serde(default = "default_dropout")]
    pub attention_probs_dropout_prob: f64,
    #[serde(default = "default_initializer_range")]
    pub initializer_range: f64,
    #[serde(default)]
    pub pad_token_id: u32,
    #[serde(default)]
    pub position_embedding_type: PositionEmbeddingType,
}

/// The feed-forward activation, as transformers names it. `gelu` is the exact (erf) GELU;
/// the tanh forms are its approximation. An unknown name is a config error, found when
/// the file is read.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum HiddenAct {
    #[default]
    Gelu,
    GeluNew,
    GeluPytorchTanh,
    Relu,
}

impl HiddenAct {
    fn activation(self) -> ActivationConfig {
        match self {
            HiddenAct::Gelu => ActivationConfig::Gelu,
            HiddenAct::GeluNew | HiddenAct::GeluPytorchTanh => ActivationConfig::GeluApproximate,
            HiddenAct::Relu => ActivationConfig::Relu,
        }
    }
}

/// Only absolute (learned) positions are implemented; relative ones are refused when the
/// config is read.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PositionEmbeddingType {
    #[default]
    Absolute,
}

fn default_max_positions() -> usize {
    512
}
fn default_type_vocab() -> usize {
    2
}
fn default_layer_norm_eps() -> f64 {
    1e-12
}
fn default_dropout() -> f64 {
    0.1
}
fn default_initializer_range() -> f64 {
    0.02
}

impl BertConfig {
    /// Reads and checks a Hugging Face `config.json`.
    pub fn load(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("{}: cannot read the BERT config", path.display()))?;
        let config: Self = serde_json::from_str(&text).map_err(|err| {
            anyhow!("{}:{}: not a BERT config.json: {err}", path.display(), err.line())
        })?;
        config.validate().map_err(|err| anyhow!("{}: {err}", path.display()))?;
        Ok(config)
    }

    pub fn validate(&self) -> Result<()> {
        for (key, value) in [
            ("vocab_size", self.vocab_size),
            ("hidden_size", self.hidden_size),
            ("num_hidden_layers", self.num_hidden_layers),
            ("num_attention_heads", self.num_attention_heads),
            ("intermediate_size", self.intermediate_size),
            ("max_position_embeddings", self.max_position_embeddings),
            ("type_vocab_size", self.type_vocab_size),
        ] {
            check_positive(key, value)?;
        }
        if !self.hidden_size.is_multiple_of(self.num_attention_heads) {
            bail!(
                "hidden_size {} is not a multiple of num_attention_heads {}",
                self.hidden_size,
                self.num_attention_heads
            );
        }
        if self.layer_norm_eps.is_nan() || self.layer_norm_eps <= 0.0 {
            bail!("layer_norm_eps: must be positive, got {}", self.layer_norm_eps);
        }
        Ok(())
    }

    /// A BERT's weights, drawn as transformers draws them: normal(0, initializer_range)
    /// for embeddings and linear weights, zero biases, unit LayerNorm.
    pub fn init(&self, device: &Device) -> Bert {
        let normal = Initializer::Normal { mean: 0.0, std: self.initializer_range };
        let embedding = |n: usize| {
            EmbeddingConfig::new(n, self.hidden_size).with_initializer(normal.clone()).init(device)
        };
        let mut encoder = TransformerEncoderConfig::new(
            self.hidden_size,
            self.intermediate_size,
            self.num_attention_heads,
            self.num_hidden_layers,
        )
        .with_dropout(self.hidden_dropout_prob)
        .with_norm_first(false)
        .with_initializer(normal.clone())
        .with_activation(self.hidden_act.activation())
        .with_layer_norm_eps(self.layer_norm_eps)
        .init(device);
        for layer in &mut encoder.layers {
            layer.mha.dropout = DropoutConfig::new(self.attention_probs_dropout_prob).init();
        }
        Bert {
            embeddings: BertEmbeddings {
                word_embeddings: embedding(self.vocab_size),
                position_embeddings: embedding(self.max_position_embeddings),
                token_type_embeddings: embedding(self.type_vocab_size),
                layer_norm: LayerNormConfig::new(self.hidden_size)
                    .with_epsilon(self.layer_norm_eps)
                    .init(device),
            },
            encoder,
            pooler: LinearConfig::new(self.hidden_size, self.hidden_size)
                .with_initializer(normal)
                .init(device),
            max_positions: self.max_position_embeddings,
            layer_norm_eps: self.layer_norm_eps,
        }
    }
}

#[derive(Module, Debug)]
pub struct BertEmbeddings {
    pub word_embeddings: Embedding,
    pub position_embeddings: Embedding,
    pub token_type_embeddings: Embedding,
    pub layer_norm: LayerNorm,
}

/// The encoder. Field names follow Hugging Face's `BertModel` where burn's modules allow,
/// so [`HF_KEY_TABLE`] stays short.
#[derive(Module, Debug)]
pub struct Bert {
    pub embeddings: BertEmbeddings,
    pub encoder: TransformerEncoder,
    pub pooler: Linear,
    pub max_positions: usize,
    /// The encoder's LayerNorm epsilon, which the fused add & norm needs.
    pub layer_norm_eps: f64,
}

/// One batch of token ids, right-padded.
pub struct BertInput {
    /// `[batch, seq]`
    pub input_ids: Tensor<2, Int>,
    /// `[batch, seq]`; all zeros for single sentences.
    pub token_type_ids: Tensor<2, Int>,
    /// `[batch, seq]`, true at padding positions.
    pub mask_pad: Tensor<2, Bool>,
}

impl BertInput {
    /// Pads `sequences` on the right with `pad_id` to the longest one.
    pub fn from_ids(sequences: &[&[u32]], pad_id: u32, device: &Device) -> Self {
        let batch = sequences.len();
        let seq = sequences.iter().map(|s| s.len()).max().unwrap_or(0).max(1);
        let mut ids = vec![pad_id as i64; batch * seq];
        let mut pad = vec![true; batch * seq];
        for (row, tokens) in sequences.iter().enumerate() {
            for (col, &token) in tokens.iter().enumerate() {
                ids[row * seq + col] = token as i64;
                pad[row * seq + col] = false;
            }
        }
        use burn::tensor::TensorData;
        Self {
            input_ids: Tensor::from_data(TensorData::new(ids, [batch, seq]), device),
            token_type_ids: Tensor::zeros([batch, seq], device),
            mask_pad: Tensor::from_data(TensorData::new(pad, [batch, seq]), device),
        }
    }
}

impl Bert {
    /// The last hidden state, `[batch, seq, hidden]`.
    pub fn forward(&self, input: BertInput) -> Tensor<3> {
        let [batch, seq] = input.input_ids.dims();
        assert!(
            seq <= self.max_positions,
            "sequence of {seq} tokens exceeds the {} positions",
            self.max_positions
        );
        let device = input.input_ids.device();
        let positions =
            Tensor::<1, Int>::arange(0..seq as i64, &device).unsqueeze::<2>().expand([batch, seq]);
        let e = &self.embeddings;
        let x = e.word_embeddings.forward(input.input_ids)
            + e.position_embeddings.forward(positions)
            + e.token_type_embeddings.forward(input.token_type_ids);
        let x = e.layer_norm.forward(x);
        self.encoder.layers.iter().fold(x, |x, layer| {
            encoder_layer(layer, x, input.mask_pad.clone(), self.layer_norm_eps)
        })
    }

    /// The pooled output `tanh(W h[CLS] + b)`, `[batch, hidden]`.
    pub fn pool(&self, hidden: Tensor<3>) -> Tensor<2> {
        let [batch, _, width] = hidden.dims();
        let cls = hidden.slice([0..batch, 0..1, 0..width]).reshape([batch, width]);
        self.pooler.forward(cls).tanh()
    }
}

/// One post-norm BERT layer over `x` `[batch, seq, hidden]`; `mask_pad` is true at padding.
fn encoder_layer(
    layer: &TransformerEncoderLayer,
    x: Tensor<3>,
    mask_pad: Tensor<2, Bool>,
    epsilon: f64,
) -> Tensor<3> {
    let mha = &layer.mha;
    let context = self_attention(
        linear(&mha.query, x.clone()),
        linear(&mha.key, x.clone()),
        linear(&mha.value, x.clone()),
        mha.n_heads,
        mask_pad,
        &mha.dropout,
    );
    let attended = dropout(&layer.dropout, linear(&mha.output, context));
    let x = add_layer_norm(&layer.norm_1, epsilon, x, attended);
    let ffn = &layer.pwff;
    let inner = linear(&ffn.linear_inner, x.clone());
    let inner = match &ffn.activation {
        Activation::Gelu(exact) if !exact.approximate => gelu(inner),
        other => other.forward(inner),
    };
    let ffn_out = dropout(&layer.dropout, linear(&ffn.linear_outer, inner));
    add_layer_norm(&layer.norm_2, epsilon, x, ffn_out)
}

/// A sequence classifier: the `[CLS]` hidden state -> dropout -> linear, as the
/// reference head (section 4) specifies. Field names follow Hugging Face's
/// `BertForSequenceClassification` (`bert.*`, `classifier.*`).
#[derive(Module, Debug)]
pub struct BertClassifier {
    pub bert: Bert,
    pub dropout: Dropout,
    pub classifier: Linear,
}

impl BertClassifier {
    pub fn new(
        bert: Bert,
        config: &BertConfig,
        num_classes: usize,
        dropout: f64,
        device: &Device,
    ) -> Self {
        let normal = Initializer::Normal { mean: 0.0, std: config.initializer_range };
        Self {
            bert,
            dropout: DropoutConfig::new(dropout).init(),
            classifier: LinearConfig::new(config.hidden_size, num_classes)
                .with_initializer(normal)
                .init(device),
        }
    }

    /// Class logits, `[batch, classes]`.
    pub fn forward(&self, input: BertInput) -> Tensor<2> {
        let hidden = self.bert.forward(input);
        let [batch, _, width] = hidden.dims();
        let cls = hidden.slice([0..batch, 0..1, 0..width]).reshape([batch, width]);
        linear(&self.classifier, dropout(&self.dropout, cls))
    }
}

/// Hugging Face BERT tensor names -> this module's, as regex rewrites applied in order.
/// burn-store's PyTorch adapter then handles LayerNorm weight/bias and linear transposes.
pub const HF_KEY_TABLE: &[(&str, &str)] = &[
    (r"^bert\.", ""),
    (r"^embeddings\.LayerNorm\.", "embeddings.layer_norm."),
    (r"^encoder\.layer\.(\d+)\.attention\.self\.(query|key|value)\.", "encoder.layers.$1.mha.$2."),
    (r"^encoder\.layer\.(\d+)\.attention\.output\.dense\.", "encoder.layers.$1.mha.output."),
    (r"^encoder\.layer\.(\d+)\.attention\.output\.LayerNorm\.", "encoder.layers.$1.norm_1."),
    (r"^encoder\.layer\.(\d+)\.intermediate\.dense\.", "encoder.layers.$1.pwff.linear_inner."),
    (r"^encoder\.layer\.(\d+)\.output\.dense\.", "encoder.layers.$1.pwff.linear_outer."),
    (r"^encoder\.layer\.(\d+)\.output\.LayerNorm\.", "encoder.layers.$1.norm_2."),
    (r"^pooler\.dense\.", "pooler."),
];

/// The Hugging Face name of one of this module's tensors: [`HF_KEY_TABLE`] and the
/// adapter's LayerNorm renames run backwards, so that a missing tensor is reported by the
/// name the user's checkpoint would have used.
fn hf_name(path: &str) -> String {
    const LAYER_PARTS: &[(&str, &str)] = &[
        ("mha.query.", "attention.self.query."),
        ("mha.key.", "attention.self.key."),
        ("mha.value.", "attention.self.value."),
        ("mha.output.", "attention.output.dense."),
        ("norm_1.", "attention.output.LayerNorm."),
        ("pwff.linear_inner.", "intermediate.dense."),
        ("pwff.linear_outer.", "output.dense."),
        ("norm_2.", "output.LayerNorm."),
    ];
    let mut name = path.to_string();
    if let Some(rest) = name.strip_prefix("encoder.layers.") {
        let (index, part) = rest.split_once('.').unwrap_or((rest, ""));
        let part = LAYER_PARTS
            .iter()
            .find_map(|(ours, theirs)| {
                part.strip_prefix(ours).map(|tail| format!("{theirs}{tail}"))
            })
            .unwrap_or_else(|| part.to_string());
        name = format!("encoder.layer.{index}.{part}");
    } else if let Some(rest) = name.strip_prefix("embeddings.layer_norm.") {
        name = format!("embeddings.LayerNorm.{rest}");
    } else if let Some(rest) = name.strip_prefix("pooler.") {
        name = format!("pooler.dense.{rest}");
    }
    if name.contains("LayerNorm.") {
        name = name
            .replace("LayerNorm.gamma", "LayerNorm.weight")
            .replace("LayerNorm.beta", "LayerNorm.bias");
    }
    name
}

/// Loads a Hugging Face `model.safetensors` into `model`. Missing tensors (a file of
/// another architecture or size) are an error naming them; tensors the encoder does not
/// use (a pre-training head, `position_ids`) are returned for the caller to report.
pub fn load_hf_weights(mut model: Bert, path: &Path) -> Result<(Bert, Vec<String>)> {
    if !path.is_file() {
        bail!("{}: no such weights file", path.display());
    }
    let mut store = SafetensorsStore::from_file(path)
        .with_from_adapter(PyTorchToBurnAdapter)
        .allow_partial(true)
        .validate(true);
    for (from, to) in HF_KEY_TABLE {
        store = store.with_key_remapping(*from, *to);
    }
    let result = model
        .load_from(&mut store)
        .map_err(|err| anyhow!("{}: cannot read weights: {err}", path.display()))?;
    if !result.missing.is_empty() {
        let missing: Vec<String> = result.missing.iter().map(|(p, _)| hf_name(p)).collect();
        let shown = missing.iter().take(6).cloned().collect::<Vec<_>>().join(", ");
        bail!(
            "{}: not a BERT checkpoint matching its config.json: {} tensors missing ({shown}{})",
            path.display(),
            missing.len(),
            if missing.len() > 6 { ", ..." } else { "" }
        );
    }
    if let Some(error) = result.errors.first() {
        bail!("{}: does not match its config.json: {error}", path.display());
    }
    Ok((model, result.unused))
}

/// A Hugging Face model folder: `config.json`, `model.safetensors`, `tokenizer.json`.
#[derive(Debug, Clone)]
pub struct ModelFiles {
    pub config: PathBuf,
    pub weights: PathBuf,
    pub tokenizer: PathBuf,
}

impl ModelFiles {
    /// Resolves `name`: a local folder, or a Hugging Face repo id looked up in the hf-hub
    /// cache (`HF_HOME`), downloaded into it unless `HF_HUB_OFFLINE=1`.
    pub fn resolve(name: &str) -> Result<Self> {
        let dir = Path::new(name);
        if dir.is_dir() {
            return Ok(Self {
                config: dir.join("config.json"),
                weights: dir.join("model.safetensors"),
                tokenizer: dir.join("tokenizer.json"),
            });
        }
        let looks_like_repo =
            name.split('/').count() == 2 && !name.starts_with('.') && !name.starts_with('/');
        if !looks_like_repo {
            bail!(
                "{name}: no such model folder (expected a folder with config.json, model.safetensors and tokenizer.json, or a Hugging Face repo id like org/name)"
            );
        }
        let offline = std::env::var("HF_HUB_OFFLINE")
            .is_ok_and(|v| !matches!(v.as_str(), "" | "0" | "false"));
        let fetch = |file: &str| -> Result<PathBuf> {
            let cache = hf_hub::Cache::from_env();
            if let Some(path) = cache.model(name.to_string()).get(file) {
                return Ok(path);
            }
            if offline {
                bail!(
                    "{name}: {file} is not in the Hugging Face cache {} and HF_HUB_OFFLINE is set",
                    cache.path().display()
                );
            }
            let api = hf_hub::api::sync::ApiBuilder::from_env()
                .with_progress(false)
                .build()
                .map_err(|err| anyhow!("{name}: {err}"))?;
            api.model(name.to_string())
                .get(file)
                .map_err(|err| anyhow!("{name}: cannot download {file}: {err}"))
        };
        Ok(Self {
            config: fetch("config.json")?,
            weights: fetch("model.safetensors")?,
            tokenizer: fetch("tokenizer.json")?,
        })
    }

    /// The config and the encoder with the checkpoint's weights, on `device`.
    pub fn load(&self, device: &Device) -> Result<(BertConfig, Bert)> {
        let config = BertConfig::load(&self.config)?;
        let (bert, unused) = load_hf_weights(config.init(device), &self.weights)?;
        let unused: Vec<&String> = unused.iter().filter(|k| !k.ends_with("position_ids")).collect();
        if !unused.is_empty() {
            let shown = unused.iter().take(4).map(|s| s.as_str()).collect::<Vec<_>>().join(", ");
            eprintln!(
                "note: {}: {} tensors not used by the encoder ({shown}{})",
                self.weights.display(),
                unused.len(),
                if unused.len() > 4 { ", ..." } else { "" }
            );
        }
        Ok((config, bert))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tiny() -> BertConfig {
        serde_json::from_str(r#"{"vocab_size": 20, "hidden_size": 8, "num_hidden_layers": 2, "num_attention_heads": 2, "intermediate_size": 16, "max_position_embeddings": 10}"#).unwrap()
    }

    #[test]
    fn config_defaults_follow_transformers() {
        let config = tiny();
        assert_eq!(config.hidden_act, HiddenAct::Gelu);
        assert_eq!(config.layer_norm_eps, 1e-12);
        assert_eq!(config.type_vocab_size, 2);
    }

    #[test]
    fn config_rejects_bad_shapes() {
        let mut config = tiny();
        config.num_attention_heads = 3;
        assert!(config.validate().unwrap_err().to_string().contains("not a multiple"));
        let err = serde_json::from_str::<BertConfig>(r#"{"n_embd": 8}"#).unwrap_err().to_string();
        assert!(err.contains("vocab_size"), "{err}");
    }

    #[test]
    fn unknown_activation_or_position_type_is_refused_when_read() {
        let base = r#""vocab_size": 20, "hidden_size": 8, "num_hidden_layers": 2, "num_attention_heads": 2, "intermediate_size": 16"#;
        for (extra, needle) in [
            (r#""hidden_act": "swish""#, "swish"),
            (r#""position_embedding_type": "relative_key""#, "relative_key"),
        ] {
            let err = serde_json::from_str::<BertConfig>(&format!("{{{base}, {extra}}}"))
                .unwrap_err()
                .to_string();
            assert!(err.contains(needle) && err.contains("unknown variant"), "{err}");
        }
        let tanh: BertConfig =
            serde_json::from_str(&format!(r#"{{{base}, "hidden_act": "gelu_new"}}"#)).unwrap();
        assert_eq!(tanh.hidden_act, HiddenAct::GeluNew);
    }

    #[test]
    fn missing_tensors_are_named_as_hugging_face_names_them() {
        let cases = [
            ("embeddings.word_embeddings.weight", "embeddings.word_embeddings.weight"),
            ("embeddings.layer_norm.gamma", "embeddings.LayerNorm.weight"),
            ("embeddings.layer_norm.beta", "embeddings.LayerNorm.bias"),
            ("encoder.layers.0.mha.query.weight", "encoder.layer.0.attention.self.query.weight"),
            ("encoder.layers.11.mha.output.bias", "encoder.layer.11.attention.output.dense.bias"),
            ("encoder.layers.3.norm_1.gamma", "encoder.layer.3.attention.output.LayerNorm.weight"),
            (
                "encoder.layers.3.pwff.linear_inner.weight",
                "encoder.layer.3.intermediate.dense.weight",
            ),
            ("encoder.layers.3.pwff.linear_outer.bias", "encoder.layer.3.output.dense.bias"),
            ("encoder.layers.5.norm_2.beta", "encoder.layer.5.output.LayerNorm.bias"),
            ("pooler.weight", "pooler.dense.weight"),
        ];
        for (ours, theirs) in cases {
            assert_eq!(hf_name(ours), theirs, "{ours}");
        }
    }

    #[test]
    fn pretrained_weights_get_gradients_on_a_training_device() {
        let device = Device::flex().autodiff();
        let files =
            ModelFiles::resolve(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/bert/tiny"))
                .unwrap();
        let (_, bert) = files.load(&device).unwrap();
        let hidden = bert.forward(BertInput::from_ids(&[&[2, 5, 7, 3]], 0, &device));
        let grads = hidden.sum().backward();
        assert!(bert.embeddings.word_embeddings.weight.val().grad(&grads).is_some());
        assert!(bert.encoder.layers[0].pwff.linear_inner.weight.val().grad(&grads).is_some());
        assert!(bert.encoder.layers[0].mha.query.weight.val().grad(&grads).is_some());
    }

    #[test]
    fn padding_does_not_change_real_tokens() {
        let device = Device::flex();
        let bert = tiny().init(&device);
        let alone = bert.forward(BertInput::from_ids(&[&[1, 5, 7]], 0, &device));
        let padded =
            bert.forward(BertInput::from_ids(&[&[1, 5, 7], &[1, 2, 3, 4, 5, 6]], 0, &device));
        let alone = alone.into_data().try_to_vec::<f32>().unwrap();
        let padded = padded.slice([0..1, 0..3, 0..8]).into_data().try_to_vec::<f32>().unwrap();
        let diff = alone.iter().zip(&padded).map(|(a, b)| (a - b).abs()).fold(0.0, f32::max);
        assert!(diff < 1e-5, "max diff {diff}");
    }
}
