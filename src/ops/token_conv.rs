//! A same-padded 1-d convolution over embedded tokens, with the embedding folded into the
//! convolution's taps: the inference form of `Embedding -> Conv1d`.
//!
//! Step `t` of the convolution is `b + Σ_s W_s e(x[t + s - k / 2])`, with `W_s` tap `s` of
//! the weight and `e` the embedding; each `W_s e(v)` depends on the token alone, so the
//! products can be taken once per vocabulary entry, `T_s = E W_sᵀ` (the tap tables, laid
//! out `[V, k, C]`), and the convolution becomes `k` additions per step: each step's token
//! reads its own `k` rows, one contiguous block, and adds each to the output step it
//! reaches. For the `cnn_lstm` workload (10,000 tokens, 50 x 64 taps, three of them) the
//! tables cost a fifth of one inference batch of 256 sequences, and the batches then need
//! no window copy and no matrix product before the LSTM. Training keeps the unfolded layers: a batch there
//! is smaller than the vocabulary, and the tables would be rebuilt at every step.
//!
//! Token 0 is padding: its row of `E` reads as zero (PyTorch's `padding_idx`), so it has
//! zero rows in the tables, and steps past either end of a sequence read token 0.

use burn::backend::flex::FlexTensor;
use burn::backend::tensor::{FloatTensor, IntTensor};
use burn::backend::{Backend, Dispatch, Flex, backend_extension};
use burn::tensor::module::embedding;
use burn::tensor::{DType, Int, Tensor};
use rayon::prelude::*;

use super::{flex_tensor, fused_on, host_floats, host_indices};

/// The tap tables `[V, k, C]` of `embedding` `[V, E]` (row 0 padding) and a PyTorch
/// `Conv1d` weight `[C, E, k]`.
pub fn tap_tables(embedding: Tensor<2>, conv_weight: Tensor<3>) -> Tensor<3> {
    let [vocabulary, width] = embedding.dims();
    let [channels, _, kernel] = conv_weight.dims();
    let device = embedding.device();
    let unpadded = embedding.slice_assign([0..1, 0..width], Tensor::zeros([1, width], &device));
    // [C, E, k] -> [E, k * C]: every tap in one [V, E] x [E, k * C] product.
    let taps = conv_weight.permute([1, 2, 0]).reshape([width, kernel * channels]);
    unpadded.matmul(taps).reshape([vocabulary, kernel, channels])
}

/// The convolution of `tokens` `[batch, time]` with [`tap_tables`] `taps` `[V, k, C]`, plus
/// `bias` `[C]`: `[batch, time, C]`. Forward only: the fused kernel on burn-flex without
/// autodiff, Burn ops elsewhere.
pub fn conv_from_taps(tokens: Tensor<2, Int>, taps: Tensor<3>, bias: Tensor<1>) -> Tensor<3> {
    let device = taps.device();
    if fused_on(&device) && !device.is_autodiff() && taps.dtype() == DType::F32 {
        Tensor::from_dispatch(Dispatch::conv_from_taps(
            tokens.into_dispatch(),
            taps.into_dispatch(),
            bias.into_dispatch(),
        ))
    } else {
        composed_conv_from_taps(tokens, taps, bias)
    }
}

/// [`conv_from_taps`] from Burn ops, one embedding look-up per tap of the tokens shifted
/// by its offset (padding token 0 shifted in): the path off burn-flex, and the reference.
pub fn composed_conv_from_taps(
    tokens: Tensor<2, Int>,
    taps: Tensor<3>,
    bias: Tensor<1>,
) -> Tensor<3> {
    let [vocabulary, kernel, channels] = taps.dims();
    let [batch, time] = tokens.dims();
    let pad = kernel / 2;
    let device = tokens.device();
    let padded = Tensor::cat(
        vec![
            Tensor::<2, Int>::zeros([batch, pad], &device),
            tokens,
            Tensor::<2, Int>::zeros([batch, kernel - 1 - pad], &device),
        ],
        1,
    );
    let start = bias.reshape([1, 1, channels]).expand([batch, time, channels]);
    (0..kernel).fold(start, |sum, s| {
        let table = taps.clone().narrow(1, s, 1).reshape([vocabulary, channels]);
        sum + embedding(table, padded.clone().narrow(1, s, time))
    })
}

/// The folded convolution as a backend operation, burn-flex only: inference never needs
/// its gradient.
#[backend_extension(Flex)]
pub trait FusedTokenConv: Backend {
    fn conv_from_taps(
        tokens: IntTensor<Self>,
        taps: FloatTensor<Self>,
        bias: FloatTensor<Self>,
    ) -> FloatTensor<Self>;
}

impl FusedTokenConv for Flex {
    fn conv_from_taps(tokens: FlexTensor, taps: FlexTensor, bias: FlexTensor) -> FlexTensor {
        let dims = taps.layout().shape();
        let (vocabulary, kernel, channels) = (dims[0], dims[1], dims[2]);
        let token_dims = tokens.layout().shape();
        let (batch, time) = (token_dims[0], token_dims[1]);
        let tokens = host_indices(tokens.into_data(), vocabulary)
            .unwrap_or_else(|id| panic!("token id {id} outside a vocabulary of {vocabulary}"));
        let taps = host_floats(&taps);
        let bias = host_floats(&bias);
        let shape = kernel::Shape { time, kernel, channels };
        let mut out = vec![0.0f32; batch * time * channels];
        if time > 0 && channels > 0 {
            out.par_chunks_mut(time * channels)
                .zip(tokens.par_chunks(time))
                .for_each(|(out, tokens)| kernel::sequence(out, tokens, &taps, &bias, shape));
        }
        flex_tensor(out, [batch, time, channels])
    }
}

mod kernel {
    /// One call's sizes: the tables are `[vocabulary, kernel, channels]`.
    #[derive(Clone, Copy)]
    pub struct Shape {
        pub time: usize,
        pub kernel: usize,
        pub channels: usize,
    }

    widest_simd! {
        /// One sequence: `out` `[time, channels]` from its `tokens` `[time]`. Step `p`'s
        /// token adds its tap `s` to output step `p + k / 2 - s`, where that is inside.
        pub fn sequence(out: &mut [f32], tokens: &[u32], taps: &[f32], bias: &[f32], shape: Shape) {
            let Shape { time, kernel, channels } = shape;
            let pad = kernel / 2;
            for out in out.chunks_exact_mut(channels) {
                out.copy_from_slice(bias);
            }
            for (p, &token) in tokens.iter().enumerate() {
                if token == 0 {
                    continue;
                }
                let block = &taps[token as usize * kernel * channels..][..kernel * channels];
                let reached = (p + pad + 1).saturating_sub(time)..kernel.min(p + pad + 1);
                for s in reached {
                    let out = &mut out[(p + pad - s) * channels..][..channels];
                    for (o, value) in out.iter_mut().zip(&block[s * channels..][..channels]) {
                        *o += value;
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use burn::tensor::{Device, TensorData};

    use super::*;
    use crate::ops::test_support::{assert_close, spread, values};

    /// Tokens with padding at the start, the end and inside, on `[3, 7]`.
    fn tokens(device: &Device) -> Tensor<2, Int> {
        let ids = vec![0i64, 0, 3, 5, 1, 2, 4, 6, 6, 0, 2, 3, 3, 1, 5, 4, 2, 1, 0, 0, 0];
        Tensor::from_data(TensorData::new(ids, [3, 7]), device)
    }

    /// The unfolded layers: masked embedding, then a zero-padded `conv1d`.
    fn unfolded(
        tokens: Tensor<2, Int>,
        table: Tensor<2>,
        weight: Tensor<3>,
        bias: Tensor<1>,
    ) -> Tensor<3> {
        use burn::tensor::module::conv1d;
        use burn::tensor::ops::ConvOptions;
        let [_, _, kernel] = weight.dims();
        let not_padding = tokens.clone().not_equal_elem(0).float().unsqueeze_dim::<3>(2);
        let embedded = embedding(table, tokens) * not_padding;
        let options = ConvOptions::new([1], [kernel / 2], [1], 1);
        conv1d(embedded.swap_dims(1, 2), weight, Some(bias), options).swap_dims(1, 2)
    }

    #[test]
    fn folded_convolution_matches_embedding_then_conv1d() {
        let device = Device::flex();
        let (vocabulary, width, channels) = (7, 5, 4);
        let table = spread([vocabulary, width], 0, &device);
        let bias = spread([channels], 2, &device);
        for kernel in [1, 3, 5] {
            let weight = spread([channels, width, kernel], 1, &device);
            let reference =
                values(unfolded(tokens(&device), table.clone(), weight.clone(), bias.clone()));
            let taps = tap_tables(table.clone(), weight);
            let fused = conv_from_taps(tokens(&device), taps.clone(), bias.clone());
            let composed = composed_conv_from_taps(tokens(&device), taps, bias.clone());
            assert_eq!(fused.dims(), [3, 7, channels]);
            let what = format!("kernel {kernel}");
            assert_close(&values(fused), &reference, 1e-5, &format!("fused, {what}"));
            assert_close(&values(composed), &reference, 1e-5, &format!("composed, {what}"));
        }
    }

    #[test]
    #[should_panic(expected = "outside a vocabulary of 7")]
    fn a_token_outside_the_tables_is_refused() {
        let device = Device::flex();
        let ids = Tensor::<2, Int>::from_data(TensorData::new(vec![1i64, 7], [1, 2]), &device);
        let taps = tap_tables(spread([7, 2], 0, &device), spread([3, 2, 3], 1, &device));
        conv_from_taps(ids, taps, spread([3], 2, &device));
    }
}
