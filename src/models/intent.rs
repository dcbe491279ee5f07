//! Purchase-intent net: a CNN + LSTM over a user's event tokens (reference-models.md,
//! section 1; the convolution-then-recurrence pattern of Zhou et al., "A C-LSTM Neural
//! Network for Text Classification", 2015, applied to behaviour sequences).
//!
//! `Embedding(V, 50) -> Conv1d(50 -> 64, k 3, pad 1) + ReLU -> MaxPool1d(2) -> LSTM(64 -> 100)
//! -> last hidden state -> Dropout(0.2) -> Linear(100 -> 1)`: one logit per user.
//!
//! Tensor names and layouts are PyTorch's for the same modules (`embedding.weight`,
//! `conv.weight` `[out, in, k]`, `lstm.weight_ih_l0` `[4H, in]` with gates in i, f, g, o
//! order, `head.weight` `[1, H]`), so a `state_dict` of scripts/intent_torch.py loads
//! with no key table at all.

use burn::module::{Module, Param};
use burn::tensor::module::embedding;
use burn::tensor::{Device, Int, Tensor};
use serde::{Deserialize, Serialize};

use crate::base::rng::{HostRng, dropout};
use crate::ops::linear::dense;
use crate::ops::{lstm, sequence, token_conv};

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct IntentConfig {
    pub embedding_size: usize,
    pub conv_channels: usize,
    /// Odd, so that `kernel_size / 2` padding keeps the sequence length.
    pub kernel_size: usize,
    pub pool: usize,
    pub hidden: usize,
    pub dropout: f64,
    /// Weight of the positive class in the loss (PyTorch's `pos_weight`): above 1 when
    /// buyers are rare and recall on them matters more than calibration.
    pub pos_weight: f64,
}

impl Default for IntentConfig {
    fn default() -> Self {
        Self {
            embedding_size: 50,
            conv_channels: 64,
            kernel_size: 3,
            pool: 2,
            hidden: 100,
            dropout: 0.2,
            pos_weight: 1.0,
        }
    }
}

/// A token table whose row 0 (padding) reads as zero and gets no gradient, as PyTorch's
/// `padding_idx = 0`: the looked-up rows of padding tokens are masked, which costs a pass
/// over the batch rather than over the whole table.
#[derive(Module, Debug)]
pub struct TokenEmbedding {
    pub weight: Param<Tensor<2>>,
}

impl TokenEmbedding {
    fn forward(&self, tokens: Tensor<2, Int>) -> Tensor<3> {
        let not_padding = tokens.clone().not_equal_elem(0).float().unsqueeze_dim::<3>(2);
        embedding(self.weight.val(), tokens) * not_padding
    }
}

#[derive(Module, Debug)]
pub struct Conv {
    pub weight: Param<Tensor<3>>,
    pub bias: Param<Tensor<1>>,
}

/// A one-layer LSTM: every timestep's input is projected in one matrix product, then the
/// recurrence runs as [`crate::ops::lstm::last_hidden`] (one fused op on CPU).
#[derive(Module, Debug)]
pub struct Lstm {
    pub weight_ih_l0: Param<Tensor<2>>,
    pub weight_hh_l0: Param<Tensor<2>>,
    pub bias_ih_l0: Param<Tensor<1>>,
    pub bias_hh_l0: Param<Tensor<1>>,
}

impl Lstm {
    /// `[batch, time, in]` to the last hidden state `[batch, hidden]`.
    fn last_hidden(&self, input: Tensor<3>) -> Tensor<2> {
        let [batch, time, width] = input.dims();
        let [gates, _] = self.weight_hh_l0.dims();
        let bias = self.bias_ih_l0.val() + self.bias_hh_l0.val();
        let input = input.reshape([batch * time, width]);
        let projected =
            dense(input, self.weight_ih_l0.val().transpose(), bias).reshape([batch, time, gates]);
        lstm::last_hidden(projected, self.weight_hh_l0.val())
    }
}

#[derive(Module, Debug)]
pub struct Head {
    pub weight: Param<Tensor<2>>,
    pub bias: Param<Tensor<1>>,
}

#[derive(Module, Debug)]
pub struct IntentNet {
    pub embedding: TokenEmbedding,
    pub conv: Conv,
    pub lstm: Lstm,
    pub head: Head,
    pub pool: usize,
    pub dropout: f64,
}

impl IntentNet {
    /// PyTorch's default initialisation of each module, drawn from `rng`.
    pub fn new(
        config: &IntentConfig,
        num_tokens: usize,
        rng: &mut HostRng,
        device: &Device,
    ) -> Self {
        let (e, c, k, h) =
            (config.embedding_size, config.conv_channels, config.kernel_size, config.hidden);
        let conv_bound = 1.0 / ((e * k) as f64).sqrt();
        let lstm_bound = 1.0 / (h as f64).sqrt();
        let head_bound = 1.0 / (h as f64).sqrt();
        Self {
            embedding: TokenEmbedding { weight: rng.normal_param([num_tokens, e], 1.0, device) },
            conv: Conv {
                weight: rng.uniform([c, e, k], conv_bound, device),
                bias: rng.uniform([c], conv_bound, device),
            },
            lstm: Lstm {
                weight_ih_l0: rng.uniform([4 * h, c], lstm_bound, device),
                weight_hh_l0: rng.uniform([4 * h, h], lstm_bound, device),
                bias_ih_l0: rng.uniform([4 * h], lstm_bound, device),
                bias_hh_l0: rng.uniform([4 * h], lstm_bound, device),
            },
            head: Head {
                weight: rng.uniform([1, h], head_bound, device),
                bias: rng.uniform([1], head_bound, device),
            },
            pool: config.pool,
            dropout: config.dropout,
        }
    }

    /// Token ids `[batch, L]` (left-padded with 0) to purchase logits `[batch]`; `rng`
    /// drives dropout and is `None` in inference.
    pub fn forward(&self, tokens: Tensor<2, Int>, rng: Option<&mut HostRng>) -> Tensor<1> {
        let convolved = self.conv.forward(self.embedding.forward(tokens));
        self.logits_of_convolved(convolved, rng)
    }

    /// Everything after the convolution: `[batch, time, channels]` to logits `[batch]`.
    fn logits_of_convolved(&self, convolved: Tensor<3>, rng: Option<&mut HostRng>) -> Tensor<1> {
        let [batch, _, _] = convolved.dims();
        let last = self.lstm.last_hidden(sequence::relu_max_pool_time(convolved, self.pool));
        let last = dropout(last, self.dropout, rng);
        (last.matmul(self.head.weight.val().transpose()) + self.head.bias.val().unsqueeze_dim(0))
            .reshape([batch])
    }
}

/// The net as inference runs it: the embedding folded into the convolution's taps
/// ([`token_conv`]), once for every batch scored after. The same logits as
/// [`IntentNet::forward`] without dropout, up to rounding. Build one per set of weights:
/// it does not follow later changes to the net's.
#[derive(Clone)]
pub struct IntentInference {
    net: IntentNet,
    taps: Tensor<3>,
}

impl IntentInference {
    pub fn new(net: &IntentNet) -> Self {
        let taps = token_conv::tap_tables(net.embedding.weight.val(), net.conv.weight.val());
        Self { net: net.clone(), taps }
    }

    /// Token ids `[batch, L]` (left-padded with 0) to purchase logits `[batch]`.
    pub fn logits(&self, tokens: Tensor<2, Int>) -> Tensor<1> {
        let convolved =
            token_conv::conv_from_taps(tokens, self.taps.clone(), self.net.conv.bias.val());
        self.net.logits_of_convolved(convolved, None)
    }
}

impl Conv {
    /// A same-padded 1-d convolution over time on `[batch, time, channels]`, computed as
    /// one matrix product of the input's sliding windows (im2col): on burn-flex this is
    /// faster than `conv1d` and needs no transposes, since the embedding, the pooling and
    /// the LSTM all work time-major.
    fn forward(&self, x: Tensor<3>) -> Tensor<3> {
        let [batch, time, width] = x.dims();
        let [channels, _, kernel] = self.weight.dims();
        let columns = sequence::time_windows(x, kernel);
        // [out, in, k] -> [k * in, out], matching the column order (shift-major).
        let weight = self.weight.val().permute([2, 1, 0]).reshape([kernel * width, channels]);
        dense(columns, weight, self.bias.val()).reshape([batch, time, channels])
    }
}

#[cfg(test)]
mod tests {
    use burn::tensor::TensorData;

    use super::*;

    /// A net whose every weight is zero except the ones a test sets.
    fn zero_net(config: &IntentConfig, num_tokens: usize, device: &Device) -> IntentNet {
        let zeros = |len: usize| vec![0.0f32; len];
        let (e, c, k, h) =
            (config.embedding_size, config.conv_channels, config.kernel_size, config.hidden);
        let p2 = |values: Vec<f32>, shape: [usize; 2]| {
            Param::from_tensor(Tensor::from_data(TensorData::new(values, shape), device))
        };
        let p1 = |values: Vec<f32>| {
            Param::from_tensor(Tensor::from_data(
                TensorData::new(values.clone(), [values.len()]),
                device,
            ))
        };
        IntentNet {
            embedding: TokenEmbedding { weight: p2(zeros(num_tokens * e), [num_tokens, e]) },
            conv: Conv {
                weight: Param::from_tensor(Tensor::from_data(
                    TensorData::new(zeros(c * e * k), [c, e, k]),
                    device,
                )),
                bias: p1(zeros(c)),
            },
            lstm: Lstm {
                weight_ih_l0: p2(zeros(4 * h * c), [4 * h, c]),
                weight_hh_l0: p2(zeros(4 * h * h), [4 * h, h]),
                bias_ih_l0: p1(zeros(4 * h)),
                bias_hh_l0: p1(zeros(4 * h)),
            },
            head: Head { weight: p2(vec![1.0; h], [1, h]), bias: p1(vec![0.0]) },
            pool: config.pool,
            dropout: 0.0,
        }
    }

    #[test]
    fn lstm_with_zero_weights_follows_the_gate_equations() {
        // With all weights zero and gate biases b: i = f = o = sigmoid(b), g = tanh(b); over T
        // steps c_t = f c_{t-1} + i g and h_T = o tanh(c_T), the same for every unit.
        let device = Device::flex();
        let config = IntentConfig {
            embedding_size: 2,
            conv_channels: 2,
            hidden: 3,
            ..IntentConfig::default()
        };
        let mut net = zero_net(&config, 5, &device);
        let b = 0.5f32;
        net.lstm.bias_ih_l0 =
            Param::from_tensor(Tensor::from_data(TensorData::new(vec![b; 12], [12]), &device));
        let tokens = Tensor::<2, Int>::from_data(
            TensorData::new(vec![0i64, 0, 3, 4, 1, 2], [1, 6]),
            &device,
        );
        let logit = net.forward(tokens, None).into_data().try_to_vec::<f32>().unwrap()[0];
        let (s, g) = (1.0 / (1.0 + (-b).exp()), b.tanh());
        let mut c = 0.0f32;
        for _ in 0..3 {
            c = s * c + s * g;
        }
        let expected = 3.0 * s * c.tanh();
        assert!((logit - expected).abs() < 1e-5, "{logit} vs {expected}");
    }

    #[test]
    fn convolution_and_pooling_match_burns_reference_ops() {
        use burn::tensor::module::{conv1d, max_pool1d};
        use burn::tensor::ops::{ConvOptions, MaxPoolOptions};
        let device = Device::flex();
        let mut rng = HostRng::new(3);
        let conv = Conv {
            weight: rng.uniform([4, 3, 3], 1.0, &device),
            bias: rng.uniform([4], 1.0, &device),
        };
        let x: Tensor<3> = rng.uniform([2, 7, 3], 1.0, &device).val();
        let ours = sequence::relu_max_pool_time(conv.forward(x.clone()), 2).swap_dims(1, 2);
        let reference = conv1d(
            x.swap_dims(1, 2),
            conv.weight.val(),
            Some(conv.bias.val()),
            ConvOptions::new([1], [1], [1], 1),
        );
        let reference =
            max_pool1d(burn::tensor::activation::relu(reference), MaxPoolOptions::new([2]));
        assert_eq!(ours.dims(), [2, 4, 3]);
        let (ours, reference) = (
            ours.into_data().try_to_vec::<f32>().unwrap(),
            reference.into_data().try_to_vec::<f32>().unwrap(),
        );
        assert!(
            ours.iter().zip(&reference).all(|(a, b)| (a - b).abs() < 1e-5),
            "{ours:?} vs {reference:?}"
        );
    }

    #[test]
    fn inference_form_gives_the_logits_of_the_forward_pass() {
        // A random net (the padding row of its table non-zero, as training leaves it) on
        // sequences left-padded to different lengths.
        let device = Device::flex();
        let config = IntentConfig {
            hidden: 7,
            conv_channels: 6,
            embedding_size: 5,
            ..IntentConfig::default()
        };
        let net = IntentNet::new(&config, 11, &mut HostRng::new(4), &device);
        let ids: Vec<i64> = (0..4 * 9)
            .map(|k| if k % 9 < k / 9 * 2 { 0 } else { (k * 7 % 10 + 1) as i64 })
            .collect();
        let tokens = Tensor::<2, Int>::from_data(TensorData::new(ids, [4, 9]), &device);
        let forward = net.forward(tokens.clone(), None).into_data().try_to_vec::<f32>().unwrap();
        let inference =
            IntentInference::new(&net).logits(tokens).into_data().try_to_vec::<f32>().unwrap();
        assert_eq!(inference.len(), 4);
        for (a, b) in inference.iter().zip(&forward) {
            assert!((a - b).abs() <= 1e-5 * (1.0 + b.abs()), "{inference:?} vs {forward:?}");
        }
    }

    #[test]
    fn padding_rows_contribute_nothing() {
        // Only the embedding of token 0 is non-zero and the convolution sums its inputs: a
        // sequence of padding must give the same logit as the all-zero net.
        let device = Device::flex();
        let config = IntentConfig {
            embedding_size: 1,
            conv_channels: 1,
            hidden: 1,
            kernel_size: 1,
            ..IntentConfig::default()
        };
        let mut net = zero_net(&config, 3, &device);
        net.embedding.weight = Param::from_tensor(Tensor::from_data(
            TensorData::new(vec![5.0f32, 0.0, 0.0], [3, 1]),
            &device,
        ));
        net.conv.weight = Param::from_tensor(Tensor::from_data(
            TensorData::new(vec![1.0f32], [1, 1, 1]),
            &device,
        ));
        net.lstm.weight_ih_l0 = Param::from_tensor(Tensor::from_data(
            TensorData::new(vec![1.0f32; 4], [4, 1]),
            &device,
        ));
        let tokens = Tensor::<2, Int>::from_data(TensorData::new(vec![0i64; 4], [1, 4]), &device);
        let logit = net.forward(tokens, None).into_data().try_to_vec::<f32>().unwrap()[0];
        // All-zero gates: i = f = o = 1/2, g = 0, so c stays 0 and h = 0.
        assert!(logit.abs() < 1e-7, "{logit}");
    }
}
