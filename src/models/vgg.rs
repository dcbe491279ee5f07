//! VGG-style image net (Simonyan and Zisserman, "Very Deep Convolutional Networks for
//! Large-Scale Image Recognition", ICLR 2015), as an embedder with a classifier head.
//!
//! Two heads share the convolutional trunk:
//! - `pooled` (the shopnet reference net): global average pool, `embedding` Linear to the
//!   embedding size, `classifier.0` Linear to the classes.
//! - `torchvision`: adaptive average pool to `pool_size` x `pool_size`, flatten, then
//!   torchvision's `classifier` (Linear, ReLU, Dropout, Linear, ReLU, Dropout, Linear); the
//!   embedding is the second ReLU's output (fc7), the classic retrieval feature.
//!
//! Tensor names follow torchvision's `VGG` with the gaps of its `nn.Sequential` closed up:
//! torchvision's `features.0, 2, 5, ...` convolutions are `features.0, 1, 2, ...` here and
//! `classifier.0, 3, 6` are `classifier.0, 1, 2`. burn-store's contiguous index mapping is
//! exactly that renumbering, so a torchvision `vgg16` state dict loads with no key table
//! ([`load_torchvision`]). BatchNorm layers live in `norms.N` (torchvision's `vgg*_bn`
//! interleaves them with the convolutions in `features`, which has no such mapping).

use std::path::Path;

use anyhow::{Result, anyhow, bail};
use burn::module::Module;
use burn::nn::conv::Conv2d;
use burn::nn::{BatchNorm, BatchNormConfig, Linear, PaddingConfig2d};
use burn::store::{ModuleSnapshot, PyTorchToBurnAdapter, SafetensorsStore};
use burn::tensor::activation::relu;
use burn::tensor::{Device, Tensor};
use serde::{Deserialize, Serialize};

use crate::base::config::{check_fraction, check_positive};
use crate::base::rng::{HostRng, dropout};
use crate::base::tensor::zeros_param;
use crate::ops::batch_norm::batch_norm_relu;
use crate::ops::conv::conv2d;
use crate::ops::pool::max_pool_2x2;

/// One entry of `model.blocks`: a 3x3 convolution's output channels, or `"M"`, a 2x2 max-pool.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Block {
    Conv(usize),
    Pool(PoolMark),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum PoolMark {
    M,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Head {
    /// Global average pool, `embedding` Linear, `classifier.0` Linear.
    Pooled,
    /// torchvision's VGG classifier; the embedding is its second hidden layer.
    Torchvision,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Preset {
    /// The shopnet reference net (see the README): defaults below.
    Reference,
    /// torchvision's `vgg16` layout: 13 convolutions without BatchNorm, the torchvision
    /// head with 4096 hidden units, 224 x 224 input.
    Vgg16,
}

/// The net's `[model]` settings. Unset keys take the preset's value.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct VggConfig {
    pub preset: Preset,
    /// Convolution widths and `"M"` pools, e.g. `[64, 64, "M", 128, 128, "M"]`.
    pub blocks: Option<Vec<Block>>,
    /// BatchNorm after every convolution.
    pub batch_norm: Option<bool>,
    pub head: Option<Head>,
    /// Input side in pixels: images are resized and centre-cropped to this square.
    pub input_size: Option<usize>,
    /// Embedding width: the `pooled` head's Linear output, the `torchvision` head's hidden width.
    pub embedding_size: Option<usize>,
    /// `torchvision` head: side of the adaptive average pool before the classifier.
    pub pool_size: Option<usize>,
    /// `torchvision` head: dropout before each hidden Linear's successor.
    pub dropout: f64,
    /// Initial weights from a torchvision state dict (`.safetensors`, or `.pth` / `.pt`):
    /// every tensor whose name and shape fit is loaded; the rest keep their random init
    /// (typically the last classifier layer when the class count differs).
    pub pretrained: Option<String>,
}

impl Default for VggConfig {
    fn default() -> Self {
        Self {
            preset: Preset::Reference,
            blocks: None,
            batch_norm: None,
            head: None,
            input_size: None,
            embedding_size: None,
            pool_size: None,
            dropout: 0.5,
            pretrained: None,
        }
    }
}

/// A [`VggConfig`] with the preset applied: every size fixed.
#[derive(Debug, Clone, PartialEq)]
pub struct VggSpec {
    pub blocks: Vec<Block>,
    pub batch_norm: bool,
    pub head: Head,
    pub input_size: usize,
    pub embedding_size: usize,
    pub pool_size: usize,
    pub dropout: f64,
}

/// A `"M"` entry of `model.blocks`.
pub const POOL: Block = Block::Pool(PoolMark::M);

impl VggConfig {
    pub fn spec(&self) -> VggSpec {
        let c = Block::Conv;
        let (blocks, batch_norm, head, input_size, embedding_size) = match self.preset {
            Preset::Reference => (
                vec![c(64), c(64), POOL, c(128), c(128), POOL, c(256), c(256), POOL],
                true,
                Head::Pooled,
                32,
                128,
            ),
            Preset::Vgg16 => (
                vec![
                    c(64),
                    c(64),
                    POOL,
                    c(128),
                    c(128),
                    POOL,
                    c(256),
                    c(256),
                    c(256),
                    POOL,
                    c(512),
                    c(512),
                    c(512),
                    POOL,
                    c(512),
                    c(512),
                    c(512),
                    POOL,
                ],
                false,
                Head::Torchvision,
                224,
                4096,
            ),
        };
        VggSpec {
            blocks: self.blocks.clone().unwrap_or(blocks),
            batch_norm: self.batch_norm.unwrap_or(batch_norm),
            head: self.head.unwrap_or(head),
            input_size: self.input_size.unwrap_or(input_size),
            embedding_size: self.embedding_size.unwrap_or(embedding_size),
            pool_size: self.pool_size.unwrap_or(7),
            dropout: self.dropout,
        }
    }

    /// Checks the values a config author can get wrong, naming the key.
    pub fn validate(&self) -> Result<VggSpec> {
        let spec = self.spec();
        let convs = spec.blocks.iter().filter(|b| matches!(b, Block::Conv(_))).count();
        if convs == 0 {
            bail!("model.blocks: needs at least one convolution width, e.g. [64, \"M\", 128]");
        }
        if spec.blocks.contains(&Block::Conv(0)) {
            bail!("model.blocks: a convolution width must be at least 1");
        }
        check_positive("model.embedding_size", spec.embedding_size)?;
        check_positive("model.pool_size", spec.pool_size)?;
        check_fraction("model.dropout", spec.dropout)?;
        let pools = spec.blocks.iter().filter(|b| **b == POOL).count() as u32;
        if spec.input_size.checked_shr(pools).unwrap_or(0) == 0 {
            bail!(
                "model.input_size: {} pixels do not survive the {pools} 2x2 pools of model.blocks",
                spec.input_size
            );
        }
        if spec.input_size > MAX_SIDE {
            bail!("model.input_size: at most {MAX_SIDE} pixels, got {}", spec.input_size);
        }
        ensure_fits(&spec)?;
        Ok(spec)
    }
}

/// The largest image side the net takes (and `data.resize` accepts).
pub const MAX_SIDE: usize = 4096;

/// Refuses a net that cannot be trained here: its weights with Adam's state, and a batch
/// of 64 images' activations through the widest layers, kept for backward.
fn ensure_fits(spec: &VggSpec) -> Result<()> {
    let widths: Vec<u128> = spec
        .blocks
        .iter()
        .filter_map(|b| if let Block::Conv(c) = b { Some(*c as u128) } else { None })
        .collect();
    let mut previous = 3u128;
    let mut weights = 0u128;
    for &width in &widths {
        weights = weights.saturating_add(previous.saturating_mul(width).saturating_mul(9));
        previous = width;
    }
    let embedding = spec.embedding_size as u128;
    let pooled = (spec.pool_size as u128).saturating_pow(2);
    weights = weights.saturating_add(
        previous.saturating_mul(pooled).saturating_add(embedding).saturating_mul(embedding),
    );
    let side = (spec.input_size as u128).saturating_pow(2);
    let widest = widths.iter().copied().max().unwrap_or(1);
    let activations =
        side.saturating_mul(widest).saturating_mul(widths.len() as u128).saturating_mul(64 * 4 * 3);
    let bytes =
        weights.saturating_mul(crate::base::memory::TRAINED_F32).saturating_add(activations);
    let what = format!(
        "model.blocks (widest {widest}), model.input_size = {}, model.embedding_size = {}",
        spec.input_size, spec.embedding_size
    );
    crate::base::memory::ensure_fits(&what, bytes)
}

/// The net. `plan` walks the trunk: `false` is the next convolution (with its norm and
/// ReLU), `true` a 2x2 max-pool.
#[derive(Module, Debug)]
pub struct Vgg {
    pub features: Vec<Conv2d>,
    pub norms: Vec<BatchNorm>,
    pub embedding: Option<Linear>,
    pub classifier: Vec<Linear>,
    pub plan: Vec<bool>,
    pub pool_size: usize,
    pub dropout: f64,
}

impl Vgg {
    /// A freshly initialised net as torchvision's `VGG._initialize_weights` does it:
    /// convolutions Kaiming-normal (fan-out, ReLU gain), BatchNorm 1 and 0, Linear
    /// weights N(0, 0.01), biases 0; drawn on the host from `rng`.
    pub fn new(spec: &VggSpec, num_classes: usize, rng: &mut HostRng, device: &Device) -> Self {
        let mut features = Vec::new();
        let mut norms = Vec::new();
        let mut plan = Vec::new();
        let mut channels = 3;
        for block in &spec.blocks {
            match *block {
                Block::Conv(width) => {
                    features.push(conv3x3(channels, width, rng, device));
                    if spec.batch_norm {
                        norms.push(BatchNormConfig::new(width).init(device));
                    }
                    plan.push(false);
                    channels = width;
                }
                Block::Pool(_) => plan.push(true),
            }
        }
        let mut linear = |d_in: usize, d_out: usize| Linear {
            weight: rng.normal_param([d_in, d_out], 0.01, device),
            bias: Some(zeros_param([d_out], device)),
        };
        let (embedding, classifier) = match spec.head {
            Head::Pooled => (
                Some(linear(channels, spec.embedding_size)),
                vec![linear(spec.embedding_size, num_classes)],
            ),
            Head::Torchvision => {
                let flat = channels * spec.pool_size * spec.pool_size;
                let hidden = spec.embedding_size;
                (
                    None,
                    vec![linear(flat, hidden), linear(hidden, hidden), linear(hidden, num_classes)],
                )
            }
        };
        Self {
            features,
            norms,
            embedding,
            classifier,
            plan,
            pool_size: spec.pool_size,
            dropout: spec.dropout,
        }
    }

    /// The convolutional trunk: `[B, 3, H, W]` to `[B, C, h, w]`.
    fn trunk(&self, mut x: Tensor<4>) -> Tensor<4> {
        let mut conv = 0;
        for &is_pool in &self.plan {
            if is_pool {
                x = max_pool_2x2(x);
                continue;
            }
            x = conv2d(x, &self.features[conv]);
            x = match self.norms.get(conv) {
                Some(norm) => batch_norm_relu(x, norm),
                None => relu(x),
            };
            conv += 1;
        }
        x
    }

    /// The embedding (not normalised) and the class logits of a batch `[B, 3, H, W]`.
    /// `rng` is `Some` in training (dropout on, torchvision head only).
    pub fn forward(
        &self,
        images: Tensor<4>,
        mut rng: Option<&mut HostRng>,
    ) -> (Tensor<2>, Tensor<2>) {
        let x = self.trunk(images);
        match &self.embedding {
            Some(embedding) => {
                let pooled: Tensor<2> = x.mean_dim(3).mean_dim(2).flatten(1, 3);
                let embedded = embedding.forward(pooled);
                let logits = self.classifier[0].forward(embedded.clone());
                (embedded, logits)
            }
            None => {
                let x: Tensor<2> =
                    burn::tensor::module::adaptive_avg_pool2d(x, [self.pool_size, self.pool_size])
                        .flatten(1, 3);
                let x =
                    dropout(relu(self.classifier[0].forward(x)), self.dropout, rng.as_deref_mut());
                let hidden = relu(self.classifier[1].forward(x));
                let logits = self.classifier[2].forward(dropout(hidden.clone(), self.dropout, rng));
                (hidden, logits)
            }
        }
    }

    pub fn num_classes(&self) -> usize {
        self.classifier.last().map_or(0, |layer| layer.weight.dims()[1])
    }
}

fn conv3x3(d_in: usize, d_out: usize, rng: &mut HostRng, device: &Device) -> Conv2d {
    // Kaiming normal, mode fan_out, ReLU gain: std = sqrt(2 / (out * 3 * 3)).
    let std = (2.0 / (d_out * 9) as f64).sqrt();
    Conv2d {
        weight: rng.normal_param([d_out, d_in, 3, 3], std, device),
        bias: Some(zeros_param([d_out], device)),
        stride: [1, 1],
        kernel_size: [3, 3],
        dilation: [1, 1],
        groups: 1,
        padding: PaddingConfig2d::Explicit(1, 1, 1, 1),
    }
}

/// What loading a torchvision state dict did.
pub struct Pretrained {
    pub net: Vgg,
    pub loaded: usize,
    /// Tensors of the net the file did not provide (or provided with another shape).
    pub kept: Vec<String>,
}

/// Loads a torchvision VGG state dict (`features.N.weight`, `classifier.N.weight`, ...)
/// into `net`: PyTorch's `[out, in]` Linear weights are transposed, nn.Sequential indices
/// renumbered. Tensors whose shape differs (a classifier for another class count) are
/// left as initialised and listed in [`Pretrained::kept`].
pub fn load_torchvision(net: Vgg, path: &Path) -> Result<Pretrained> {
    if !path.is_file() {
        bail!("{}: no such pretrained weights file", path.display());
    }
    let extension =
        path.extension().and_then(|e| e.to_str()).unwrap_or_default().to_ascii_lowercase();
    match extension.as_str() {
        "safetensors" => {
            let store = SafetensorsStore::from_file(path)
                .with_from_adapter(PyTorchToBurnAdapter)
                .map_indices_contiguous(true)
                .allow_partial(true)
                .validate(false);
            apply(net, store, path)
        }
        "pth" | "pt" | "bin" => {
            let store = burn::store::PytorchStore::from_file(path)
                .map_indices_contiguous(true)
                .allow_partial(true)
                .validate(false);
            apply(net, store, path)
        }
        _ => bail!("{}: expected a torchvision state dict as .safetensors or .pth", path.display()),
    }
}

fn apply(
    mut net: Vgg,
    mut store: impl burn::store::ModuleStore,
    path: &Path,
) -> Result<Pretrained> {
    let result = net
        .load_from(&mut store)
        .map_err(|err| anyhow!("{}: cannot load weights: {err}", path.display()))?;
    let mut kept: Vec<String> = result.missing.iter().map(|(name, _)| name.clone()).collect();
    kept.extend(result.errors.iter().map(|err| err.to_string()));
    if result.applied.is_empty() {
        bail!(
            "{}: no tensor fits this net (expected torchvision names such as features.0.weight)",
            path.display()
        );
    }
    Ok(Pretrained { net, loaded: result.applied.len(), kept })
}

#[cfg(test)]
mod tests {
    use burn::module::Param;

    use super::*;

    fn tiny_spec(head: Head) -> VggSpec {
        VggSpec {
            blocks: vec![Block::Conv(4), POOL, Block::Conv(6), POOL],
            batch_norm: head == Head::Pooled,
            head,
            input_size: 8,
            embedding_size: 5,
            pool_size: 2,
            dropout: 0.5,
        }
    }

    #[test]
    fn blocks_read_numbers_and_pool_marks() {
        let text = "blocks = [8, \"M\", 16]\n";
        let config: VggConfig = toml::from_str(text).unwrap();
        assert_eq!(config.spec().blocks, vec![Block::Conv(8), POOL, Block::Conv(16)]);
        assert!(toml::from_str::<VggConfig>("blocks = [8, \"X\"]").is_err());
    }

    #[test]
    fn presets_fill_unset_keys() {
        let spec = VggConfig::default().spec();
        assert_eq!(
            (spec.input_size, spec.embedding_size, spec.head, spec.batch_norm),
            (32, 128, Head::Pooled, true)
        );
        let vgg16 =
            VggConfig { preset: Preset::Vgg16, embedding_size: Some(64), ..VggConfig::default() }
                .spec();
        assert_eq!(vgg16.blocks.iter().filter(|b| matches!(b, Block::Conv(_))).count(), 13);
        assert_eq!(
            (vgg16.embedding_size, vgg16.head, vgg16.batch_norm),
            (64, Head::Torchvision, false)
        );
    }

    #[test]
    fn validation_names_the_key() {
        let err = VggConfig { input_size: Some(4), ..VggConfig::default() }
            .validate()
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("model.input_size:"), "{err}");
        let err = VggConfig { blocks: Some(vec![POOL]), ..VggConfig::default() }
            .validate()
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("model.blocks:"), "{err}");
    }

    #[test]
    fn shapes_of_both_heads() {
        let device = Device::flex();
        for (head, width) in [(Head::Pooled, 5), (Head::Torchvision, 5)] {
            let net = Vgg::new(&tiny_spec(head), 3, &mut HostRng::new(1), &device);
            let (embedding, logits) =
                net.valid().forward(Tensor::ones([2, 3, 8, 8], &device), None);
            assert_eq!(embedding.dims(), [2, width]);
            assert_eq!(logits.dims(), [2, 3]);
            assert_eq!(net.num_classes(), 3);
        }
    }

    #[test]
    fn pooled_head_is_mean_then_linear() {
        // With one 1x1-input conv whose output is ReLU(x * w + b) and no norm, the
        // embedding is Linear(mean over pixels) of it: check on a 2x2 image by hand.
        let device = Device::flex();
        let spec = VggSpec {
            blocks: vec![Block::Conv(1)],
            batch_norm: false,
            head: Head::Pooled,
            input_size: 2,
            embedding_size: 1,
            pool_size: 1,
            dropout: 0.0,
        };
        let mut net = Vgg::new(&spec, 1, &mut HostRng::new(0), &device);
        let mut kernel = vec![0.0f32; 27];
        kernel[4] = 2.0; // centre tap of input channel 0
        net.features[0].weight = Param::from_tensor(Tensor::from_data(
            burn::tensor::TensorData::new(kernel, [1, 3, 3, 3]),
            &device,
        ));
        net.features[0].bias = Some(Param::from_tensor(Tensor::from_floats([-1.0], &device)));
        let embedding = net.embedding.as_mut().unwrap();
        embedding.weight = Param::from_tensor(Tensor::from_floats([[3.0]], &device));
        embedding.bias = Some(Param::from_tensor(Tensor::from_floats([0.5], &device)));
        let mut pixels = vec![0.0f32; 12];
        pixels[..4].copy_from_slice(&[0.0, 1.0, 2.0, 0.25]);
        let image = Tensor::from_data(burn::tensor::TensorData::new(pixels, [1, 3, 2, 2]), &device);
        let (embedding, _) = net.forward(image, None);
        // ReLU(2x - 1) = [0, 1, 3, 0], mean 1, then 3 * 1 + 0.5.
        let got = embedding.into_data().try_to_vec::<f32>().unwrap();
        assert!((got[0] - 3.5).abs() < 1e-6, "{got:?}");
    }
}
