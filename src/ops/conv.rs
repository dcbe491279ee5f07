//! A 2-d convolution with stride 1, no dilation and one group (every convolution of the VGG
//! nets) as one matrix product per image: `out_b = W · im2col(x_b) + bias`, `W` the weight
//! `[out, in · kh · kw]` as stored, so the output comes out in NCHW with no transpose.
//!
//! The backward is two products per image on the same patches: `dW += dout_b ·
//! im2col(x_b)ᵀ` and `dx_b = col2im(Wᵀ · dout_b)`. burn-flex instead computes the weight
//! gradient as a convolution of the input by the output gradient (a product with a few
//! output columns and a `batch · H · W` inner dimension, which its GEMM runs far below
//! speed) and the input gradient as a transposed convolution. Each thread takes a run of
//! images with its own patch buffer and weight-gradient sum, so nothing is shared until the
//! sums are added.
//!
//! 3x3 convolutions with padding 1 and at least 16 channels each side take
//! [`winograd`]'s F(4x4, 3x3) instead, which needs four times fewer multiplies.

use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::backend::flex::FlexTensor;
use burn::backend::tensor::FloatTensor;
use burn::backend::{Autodiff, Backend, Dispatch, Flex, backend_extension};
use burn::nn::PaddingConfig2d;
use burn::nn::conv::Conv2d;
use burn::tensor::Tensor;

use super::{flex_tensor, fused_f32, host_floats};

mod winograd;

/// `conv.forward(x)` for `x` `[batch, in, H, W]`, through the fused kernel where it applies
/// (burn-flex, `f32`, stride 1, no dilation, one group, symmetric padding) and Burn's
/// convolution everywhere else.
pub fn conv2d(x: Tensor<4>, conv: &Conv2d) -> Tensor<4> {
    match fused_padding(&x, conv) {
        Some(padding) => {
            let weight = conv.weight.val();
            let bias = match &conv.bias {
                Some(bias) => bias.val(),
                None => Tensor::zeros([weight.dims()[0]], &weight.device()),
            };
            Tensor::from_dispatch(Dispatch::conv2d_stride1(
                x.into_dispatch(),
                weight.into_dispatch(),
                bias.into_dispatch(),
                padding[0],
                padding[1],
            ))
        }
        None => conv.forward(x),
    }
}

/// The `[height, width]` padding of a convolution the fused kernel computes, or `None`.
fn fused_padding(x: &Tensor<4>, conv: &Conv2d) -> Option<[usize; 2]> {
    let padding = match conv.padding {
        PaddingConfig2d::Valid => [0, 0],
        PaddingConfig2d::Explicit(top, left, bottom, right) if top == bottom && left == right => {
            [top, left]
        }
        _ => return None,
    };
    let [_, channels, height, width] = x.dims();
    let [_, weight_channels, kernel_h, kernel_w] = conv.weight.dims();
    let fits = channels == weight_channels
        && kernel_h <= height + 2 * padding[0]
        && kernel_w <= width + 2 * padding[1];
    let plain = conv.stride == [1, 1] && conv.dilation == [1, 1] && conv.groups == 1;
    (fits && plain && fused_f32(x)).then_some(padding)
}

/// The convolution as a backend operation: burn-flex's kernel, and autodiff over burn-flex
/// with the hand-written backward. Other backends never reach it ([`conv2d`] takes Burn's
/// convolution there).
#[backend_extension(Flex, Autodiff)]
pub trait FusedConvOps: Backend {
    fn conv2d_stride1(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        bias: FloatTensor<Self>,
        pad_h: usize,
        pad_w: usize,
    ) -> FloatTensor<Self>;
}

impl FusedConvOps for Flex {
    fn conv2d_stride1(
        x: FlexTensor,
        weight: FlexTensor,
        bias: FlexTensor,
        pad_h: usize,
        pad_w: usize,
    ) -> FlexTensor {
        let geometry = Geometry::of(&x, &weight, [pad_h, pad_w]);
        let out =
            forward_on_host(&host_floats(&x), &host_floats(&weight), &host_floats(&bias), geometry);
        flex_tensor(out, geometry.output_dims())
    }
}

impl<C: CheckpointStrategy> FusedConvOps for Autodiff<Flex, C> {
    fn conv2d_stride1(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        bias: FloatTensor<Self>,
        pad_h: usize,
        pad_w: usize,
    ) -> FloatTensor<Self> {
        let geometry = Geometry::of(x.primitive(), weight.primitive(), [pad_h, pad_w]);
        let out = forward_on_host(
            &host_floats(x.primitive()),
            &host_floats(weight.primitive()),
            &host_floats(bias.primitive()),
            geometry,
        );
        let out = flex_tensor(out, geometry.output_dims());
        let prepared = ConvBackward
            .prepare::<C>([x.node(), weight.node(), bias.node()])
            .compute_bound()
            .stateful();
        match prepared {
            OpsKind::Tracked(prep) => {
                let saved = Saved {
                    x: x.primitive().clone(),
                    weight: weight.primitive().clone(),
                    geometry,
                };
                prep.finish(saved, out)
            }
            OpsKind::UnTracked(prep) => prep.finish(out),
        }
    }
}

#[derive(Debug)]
struct ConvBackward;

/// The forward's inputs, shared with it (a burn-flex tensor clone is a reference count).
#[derive(Debug, Clone)]
struct Saved {
    x: FlexTensor,
    weight: FlexTensor,
    geometry: Geometry,
}

impl Backward<Flex, 3> for ConvBackward {
    type State = Saved;

    fn backward(self, ops: Ops<Saved, 3>, grads: &mut Gradients, _: &mut Checkpointer) {
        let Saved { x, weight, geometry } = ops.state;
        let grad = grads.consume::<Flex>(&ops.node);
        let [x_node, weight_node, bias_node] = ops.parents;
        let wanted = kernel::Wanted { x: x_node.is_some(), weight: weight_node.is_some() };
        let gradients = backward_on_host(
            &host_floats(&x),
            &host_floats(&weight),
            &host_floats(&grad),
            geometry,
            wanted,
        );
        if let Some(node) = x_node {
            grads.register::<Flex>(node.id, flex_tensor(gradients.x, geometry.input_dims()));
        }
        if let Some(node) = weight_node {
            grads.register::<Flex>(node.id, flex_tensor(gradients.weight, geometry.weight_dims()));
        }
        if let Some(node) = bias_node {
            grads.register::<Flex>(node.id, flex_tensor(gradients.bias, [geometry.out_channels]));
        }
    }
}

/// The convolution on host buffers: Winograd's F(4x4, 3x3) where it applies, one product
/// per image on its patch matrix elsewhere.
fn forward_on_host(x: &[f32], weight: &[f32], bias: &[f32], g: Geometry) -> Vec<f32> {
    if winograd::applies(g) {
        winograd::forward(x, weight, bias, g, winograd::Tiling::of(g))
    } else {
        kernel::forward(x, weight, bias, g)
    }
}

/// The backward of [`forward_on_host`], by the same kernel.
fn backward_on_host(
    x: &[f32],
    weight: &[f32],
    grad: &[f32],
    g: Geometry,
    wanted: kernel::Wanted,
) -> kernel::Gradients {
    if winograd::applies(g) {
        winograd::backward(x, weight, grad, g, wanted, winograd::Tiling::of(g))
    } else {
        kernel::backward(x, weight, grad, g, wanted)
    }
}

/// Sizes of one convolution.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Geometry {
    pub batch: usize,
    pub in_channels: usize,
    pub height: usize,
    pub width: usize,
    pub out_channels: usize,
    pub kernel: [usize; 2],
    pub padding: [usize; 2],
}

impl Geometry {
    fn of(x: &FlexTensor, weight: &FlexTensor, padding: [usize; 2]) -> Self {
        let x = x.layout().shape();
        let weight = weight.layout().shape();
        Self {
            batch: x[0],
            in_channels: x[1],
            height: x[2],
            width: x[3],
            out_channels: weight[0],
            kernel: [weight[2], weight[3]],
            padding,
        }
    }

    fn out_height(&self) -> usize {
        self.height + 2 * self.padding[0] + 1 - self.kernel[0]
    }

    fn out_width(&self) -> usize {
        self.width + 2 * self.padding[1] + 1 - self.kernel[1]
    }

    /// Output positions per channel.
    fn positions(&self) -> usize {
        self.out_height() * self.out_width()
    }

    /// Length of one patch: a row of the weight matrix.
    fn patch(&self) -> usize {
        self.in_channels * self.kernel[0] * self.kernel[1]
    }

    fn image_len(&self) -> usize {
        self.in_channels * self.height * self.width
    }

    fn output_len(&self) -> usize {
        self.out_channels * self.positions()
    }

    /// Whether the output has the input's height and width (odd kernels, padding half).
    fn keeps_size(&self) -> bool {
        self.out_height() == self.height && self.out_width() == self.width
    }

    /// A 1x1 convolution without padding: the image itself is its patch matrix.
    fn is_pointwise(&self) -> bool {
        self.kernel == [1, 1] && self.padding == [0, 0]
    }

    fn input_dims(&self) -> [usize; 4] {
        [self.batch, self.in_channels, self.height, self.width]
    }

    fn weight_dims(&self) -> [usize; 4] {
        [self.out_channels, self.in_channels, self.kernel[0], self.kernel[1]]
    }

    fn output_dims(&self) -> [usize; 4] {
        [self.batch, self.out_channels, self.out_height(), self.out_width()]
    }
}

/// The kernels on plain row-major `f32` buffers.
mod kernel {
    use rayon::prelude::*;

    use super::Geometry;
    use crate::ops::matmul::{View, matmul_into, matmul_into_serial};

    /// Images per thread: the batch cut into one run per thread.
    pub(super) fn images_per_run(batch: usize) -> usize {
        batch.div_ceil(rayon::current_num_threads()).max(1)
    }

    /// A product inside one run of images: on this thread when every thread has a run,
    /// threaded when a single run leaves threads idle.
    pub(super) fn product(
        dst: &mut [f32],
        stride: usize,
        lhs: View,
        rhs: View,
        accumulate: bool,
        runs: usize,
    ) {
        if runs > 1 {
            matmul_into_serial(dst, stride, lhs, rhs, accumulate);
        } else {
            matmul_into(dst, stride, lhs, rhs, accumulate);
        }
    }

    /// One output row's worth of a patch row: patch row `row` (for input channel `channel`),
    /// output row `oy`; the columns `lo..hi` read pixels `from..from + hi - lo` of the
    /// channel's plane, the rest (or all, when `from` is `None`) read padding.
    struct Segment {
        channel: usize,
        row: usize,
        oy: usize,
        lo: usize,
        hi: usize,
        from: Option<usize>,
    }

    /// Every [`Segment`] of an image's patch matrix, in order.
    fn for_each_segment(g: Geometry, mut visit: impl FnMut(Segment)) {
        let [kernel_h, kernel_w] = g.kernel;
        let [pad_h, pad_w] = g.padding;
        for channel in 0..g.in_channels {
            for i in 0..kernel_h {
                for j in 0..kernel_w {
                    let row = (channel * kernel_h + i) * kernel_w + j;
                    let (lo, hi) = valid_columns(j, pad_w, g.width, g.out_width());
                    for oy in 0..g.out_height() {
                        let from = (oy + i)
                            .checked_sub(pad_h)
                            .filter(|&iy| iy < g.height && lo < hi)
                            .map(|iy| iy * g.width + lo + j - pad_w);
                        visit(Segment { channel, row, oy, lo, hi, from });
                    }
                }
            }
        }
    }

    /// Patch matrix `[in · kh · kw, positions]` of one image `[in, H, W]`: row `(c, i, j)`
    /// holds `x[c, oy + i - pad_h, ox + j - pad_w]` (zero outside) at column `oy · W' + ox`.
    pub fn im2col(image: &[f32], g: Geometry, cols: &mut [f32]) {
        if g.keeps_size() {
            im2col_shifted(image, g, cols);
        } else {
            im2col_segments(image, g, cols);
        }
    }

    /// [`im2col`] of any geometry, one copy per output row of each patch row.
    pub fn im2col_segments(image: &[f32], g: Geometry, cols: &mut [f32]) {
        let (out_w, plane_len) = (g.out_width(), g.height * g.width);
        for_each_segment(g, |Segment { channel, row, oy, lo, hi, from }| {
            let out = &mut cols[row * g.positions() + oy * out_w..][..out_w];
            match from {
                Some(from) => {
                    out[..lo].fill(0.0);
                    out[hi..].fill(0.0);
                    out[lo..hi].copy_from_slice(&image[channel * plane_len + from..][..hi - lo]);
                }
                None => out.fill(0.0),
            }
        });
    }

    /// [`im2col`] when the output has the input's size (a "same" convolution, as all of
    /// VGG's): patch row `(c, i, j)` is then plane `c` shifted by `(i - pad_h) · W + j -
    /// pad_w` as one flat run, so each row is one copy, zeros for the rows shifted past
    /// either end, and the columns that wrapped around a row edge cleared, rather than
    /// [`im2col_segments`]' one short copy per output row.
    pub fn im2col_shifted(image: &[f32], g: Geometry, cols: &mut [f32]) {
        let plane_len = g.positions();
        for (row, out) in cols.chunks_exact_mut(plane_len).enumerate() {
            let Shift { channel, flat, lo, hi, dx } = Shift::of(row, g);
            let plane = &image[channel * plane_len..][..plane_len];
            out[..lo].fill(0.0);
            out[hi..].fill(0.0);
            if lo < hi {
                out[lo..hi].copy_from_slice(&plane[lo.wrapping_add_signed(flat)..][..hi - lo]);
            }
            clear_wrapped(out, g.width, dx);
        }
    }

    /// Where patch row `row` of a same-size convolution reads its plane: `channel`, the
    /// flat offset `flat` from an output position to its pixel, the positions `lo..hi`
    /// whose flat pixel is inside the plane, and the kernel's column offset `dx`.
    struct Shift {
        channel: usize,
        flat: isize,
        lo: usize,
        hi: usize,
        dx: isize,
    }

    impl Shift {
        fn of(row: usize, g: Geometry) -> Self {
            let [kernel_h, kernel_w] = g.kernel;
            let (channel, i, j) =
                (row / (kernel_h * kernel_w), row / kernel_w % kernel_h, row % kernel_w);
            let dy = i as isize - g.padding[0] as isize;
            let dx = j as isize - g.padding[1] as isize;
            let flat = dy * g.width as isize + dx;
            let len = g.positions() as isize;
            let lo = (-flat).clamp(0, len) as usize;
            let hi = (len - flat).clamp(0, len) as usize;
            Self { channel, flat, lo, hi: hi.max(lo), dx }
        }
    }

    /// Zeroes the entries of a same-size patch row, kernel column offset `dx`, whose flat
    /// pixel index lands in the plane but on the wrong row: the first or last `|dx|` columns
    /// of each output row.
    fn clear_wrapped(values: &mut [f32], width: usize, dx: isize) {
        if dx == 0 {
            return;
        }
        let wrapped = dx.unsigned_abs().min(width);
        let columns = if dx < 0 { 0..wrapped } else { width - wrapped..width };
        for line in values.chunks_exact_mut(width) {
            line[columns.clone()].fill(0.0);
        }
    }

    /// The adjoint of [`im2col`]: every patch entry added back onto the pixel it was read
    /// from; `image` is overwritten. `cols` is used as scratch.
    pub fn col2im(cols: &mut [f32], g: Geometry, image: &mut [f32]) {
        if g.keeps_size() {
            col2im_shifted(cols, g, image);
        } else {
            col2im_segments(cols, g, image);
        }
    }

    /// [`col2im`] of any geometry, one run per output row of each patch row.
    pub fn col2im_segments(cols: &[f32], g: Geometry, image: &mut [f32]) {
        let (out_w, plane_len) = (g.out_width(), g.height * g.width);
        image.fill(0.0);
        for_each_segment(g, |Segment { channel, row, oy, lo, hi, from }| {
            if let Some(from) = from {
                let values = &cols[row * g.positions() + oy * out_w + lo..][..hi - lo];
                let pixels = &mut image[channel * plane_len + from..][..hi - lo];
                for (pixel, value) in pixels.iter_mut().zip(values) {
                    *pixel += value;
                }
            }
        });
    }

    /// [`col2im`] of a same-size convolution, the adjoint of [`im2col_shifted`]: the
    /// entries that read padding are zeroed in `cols`, then each patch row is added onto
    /// its plane as one flat shifted run.
    pub fn col2im_shifted(cols: &mut [f32], g: Geometry, image: &mut [f32]) {
        let plane_len = g.positions();
        image.fill(0.0);
        for (row, values) in cols.chunks_exact_mut(plane_len).enumerate() {
            let Shift { channel, flat, lo, hi, dx } = Shift::of(row, g);
            clear_wrapped(values, g.width, dx);
            if lo < hi {
                let pixels = &mut image[channel * plane_len..][..plane_len];
                let pixels = &mut pixels[lo.wrapping_add_signed(flat)..][..hi - lo];
                for (pixel, value) in pixels.iter_mut().zip(&values[lo..hi]) {
                    *pixel += value;
                }
            }
        }
    }

    /// Output columns `lo..hi` whose kernel column `j` lands inside the image.
    fn valid_columns(j: usize, pad_w: usize, width: usize, out_w: usize) -> (usize, usize) {
        let lo = pad_w.saturating_sub(j);
        let hi = out_w.min((width + pad_w).saturating_sub(j));
        (lo, hi.max(lo))
    }

    /// The convolution of a batch `[B, in, H, W]`: `[B, out, H', W']`.
    pub fn forward(x: &[f32], weight: &[f32], bias: &[f32], g: Geometry) -> Vec<f32> {
        let mut out = vec![0.0f32; g.batch * g.output_len()];
        let per_run = images_per_run(g.batch);
        let runs = g.batch.div_ceil(per_run);
        let weights = View::row_major(weight, g.out_channels, g.patch());
        out.par_chunks_mut(per_run * g.output_len())
            .zip(x.par_chunks(per_run * g.image_len()))
            .for_each(|(out, x)| {
                let mut cols =
                    vec![0.0f32; if g.is_pointwise() { 0 } else { g.patch() * g.positions() }];
                for (out, image) in
                    out.chunks_exact_mut(g.output_len()).zip(x.chunks_exact(g.image_len()))
                {
                    let patches = if g.is_pointwise() {
                        image
                    } else {
                        im2col(image, g, &mut cols);
                        &cols
                    };
                    for (row, b) in out.chunks_exact_mut(g.positions()).zip(bias) {
                        row.fill(*b);
                    }
                    let patches = View::row_major(patches, g.patch(), g.positions());
                    product(out, g.positions(), weights, patches, true, runs);
                }
            });
        out
    }

    /// Which inputs the backward pass computes a gradient for (the bias's is always cheap).
    #[derive(Debug, Clone, Copy)]
    pub struct Wanted {
        pub x: bool,
        pub weight: bool,
    }

    /// The gradients of [`backward`]; `x` and `weight` are empty when not wanted.
    pub struct Gradients {
        pub x: Vec<f32>,
        pub weight: Vec<f32>,
        pub bias: Vec<f32>,
    }

    /// The gradients of a convolution given its inputs and the output's gradient `grad`.
    pub fn backward(
        x: &[f32],
        weight: &[f32],
        grad: &[f32],
        g: Geometry,
        wanted: Wanted,
    ) -> Gradients {
        let (x, weight, bias) = backward_by_runs(x, grad, g, wanted, |x, grad, d_x, runs| {
            backward_run(x, weight, grad, d_x, g, wanted, runs)
        });
        Gradients { x, weight, bias }
    }

    /// The backward pass split into one run of images per thread: `run(x, grad, d_x, runs)`
    /// fills the run's input gradient `d_x` (empty when not wanted) and returns its sum of
    /// a weight-shaped gradient; returns the input gradient, that sum over the batch and
    /// the bias gradient.
    pub(super) fn backward_by_runs(
        x: &[f32],
        grad: &[f32],
        g: Geometry,
        wanted: Wanted,
        run: impl Fn(&[f32], &[f32], &mut [f32], usize) -> Vec<f32> + Sync,
    ) -> (Vec<f32>, Vec<f32>, Vec<f32>) {
        let per_run = images_per_run(g.batch);
        let runs = g.batch.div_ceil(per_run);
        let mut d_x = vec![0.0f32; if wanted.x { g.batch * g.image_len() } else { 0 }];
        let d_x_runs: Vec<&mut [f32]> = if wanted.x {
            d_x.chunks_mut(per_run * g.image_len()).collect()
        } else {
            (0..runs).map(|_| <&mut [f32]>::default()).collect()
        };
        let sums: Vec<(Vec<f32>, Vec<f32>)> = d_x_runs
            .into_par_iter()
            .enumerate()
            .map(|(index, d_x)| {
                let images = index * per_run..g.batch.min((index + 1) * per_run);
                let x = &x[images.start * g.image_len()..images.end * g.image_len()];
                let grad = &grad[images.start * g.output_len()..images.end * g.output_len()];
                (run(x, grad, d_x, runs), bias_sums(grad, g))
            })
            .collect();
        let mut sums = sums.into_iter();
        let (mut d_weight, mut d_bias) = sums.next().unwrap_or_default();
        for (w, b) in sums {
            add_into(&mut d_weight, &w);
            add_into(&mut d_bias, &b);
        }
        (d_x, d_weight, d_bias)
    }

    /// The bias gradient of a run of images: each output channel's gradient summed.
    fn bias_sums(grad: &[f32], g: Geometry) -> Vec<f32> {
        let mut sums = vec![0.0f32; g.out_channels];
        for image in grad.chunks_exact(g.output_len()) {
            for (sum, plane) in sums.iter_mut().zip(image.chunks_exact(g.positions())) {
                *sum += lane_sum(plane);
            }
        }
        sums
    }

    /// `Σ values` in sixteen running sums side by side, which the compiler vectorises (a
    /// plain `sum()` keeps the sequential order and stays scalar, four cycles an element).
    fn lane_sum(values: &[f32]) -> f32 {
        let mut lanes = [0.0f32; 16];
        let chunks = values.chunks_exact(16);
        let rest: f32 = chunks.remainder().iter().sum();
        for chunk in chunks {
            for (lane, value) in lanes.iter_mut().zip(chunk) {
                *lane += value;
            }
        }
        lanes.iter().sum::<f32>() + rest
    }

    fn add_into(sum: &mut [f32], part: &[f32]) {
        for (s, p) in sum.iter_mut().zip(part) {
            *s += p;
        }
    }

    /// The backward pass over one run of images: fills `d_x` (when wanted) and returns the
    /// run's weight and bias gradient sums.
    ///
    /// The weight gradient is `dout_b · patches_bᵀ`, whose operands both run along the
    /// positions: from [`im2col`]'s layout gemm would transpose (pack) the whole patch
    /// matrix of every image, a third of the product's time. [`position_patches`] lays the
    /// patches out transposed instead, in `(i, j, c)` order, so the sum comes out as
    /// `[out, kh, kw, in]` and is put in the weight's order once per run.
    fn backward_run(
        x: &[f32],
        weight: &[f32],
        grad: &[f32],
        d_x: &mut [f32],
        g: Geometry,
        wanted: Wanted,
        runs: usize,
    ) -> Vec<f32> {
        let (patch, positions) = (g.patch(), g.positions());
        let mut d_weight = vec![0.0f32; if wanted.weight { g.out_channels * patch } else { 0 }];
        let mut scratch = vec![0.0f32; patch * positions];
        let mut channels_last = vec![0.0f32; if wanted.weight { g.image_len() } else { 0 }];
        let mut d_x_images = d_x.chunks_exact_mut(g.image_len());
        for (image, grad) in x.chunks_exact(g.image_len()).zip(grad.chunks_exact(g.output_len())) {
            let grad = View::row_major(grad, g.out_channels, positions);
            if wanted.weight {
                position_patches(image, g, &mut channels_last, &mut scratch);
                let patches = View::row_major(&scratch, positions, patch);
                product(&mut d_weight, patch, grad, patches, true, runs);
            }
            if let Some(d_image) = d_x_images.next() {
                let weights_t = View::transposed(weight, patch, g.out_channels);
                if g.is_pointwise() {
                    product(d_image, positions, weights_t, grad, false, runs);
                } else {
                    product(&mut scratch, positions, weights_t, grad, false, runs);
                    col2im(&mut scratch, g, d_image);
                }
            }
        }
        channel_major(&d_weight, g)
    }

    /// The patches of one image one position per row, `[positions, kh · kw · in]`: entry
    /// `(i, j, c)` of row `oy · W' + ox` holds `x[c, oy + i - pad_h, ox + j - pad_w]` (zero
    /// outside). The image goes channels-last into `channels_last` first, so that each
    /// kernel tap is one copy of `in` values.
    pub fn position_patches(
        image: &[f32],
        g: Geometry,
        channels_last: &mut [f32],
        out: &mut [f32],
    ) {
        let (channels, plane_len) = (g.in_channels, g.height * g.width);
        for (channel, plane) in image.chunks_exact(plane_len).enumerate() {
            for (pixel, value) in plane.iter().enumerate() {
                channels_last[pixel * channels + channel] = *value;
            }
        }
        let kernel_w = g.kernel[1];
        let [pad_h, pad_w] = g.padding;
        let rows = out.chunks_exact_mut(g.patch());
        for (position, row) in rows.enumerate() {
            let (oy, ox) = (position / g.out_width(), position % g.out_width());
            for (tap, taps) in row.chunks_exact_mut(channels).enumerate() {
                let iy = (oy + tap / kernel_w).checked_sub(pad_h).filter(|&y| y < g.height);
                let ix = (ox + tap % kernel_w).checked_sub(pad_w).filter(|&x| x < g.width);
                match (iy, ix) {
                    (Some(iy), Some(ix)) => taps.copy_from_slice(
                        &channels_last[(iy * g.width + ix) * channels..][..channels],
                    ),
                    _ => taps.fill(0.0),
                }
            }
        }
    }

    /// A weight-shaped sum in `[out, kh, kw, in]` order put in the weight's `[out, in, kh,
    /// kw]` order.
    fn channel_major(by_tap: &[f32], g: Geometry) -> Vec<f32> {
        let taps = g.kernel[0] * g.kernel[1];
        let mut out = vec![0.0f32; by_tap.len()];
        for (dst, src) in out.chunks_exact_mut(g.patch()).zip(by_tap.chunks_exact(g.patch())) {
            for (tap, values) in src.chunks_exact(g.in_channels).enumerate() {
                for (channel, value) in values.iter().enumerate() {
                    dst[channel * taps + tap] = *value;
                }
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use burn::module::Param;
    use burn::tensor::module::conv2d as burn_conv2d;
    use burn::tensor::ops::ConvOptions;
    use burn::tensor::{Device, Distribution};

    use super::*;
    use crate::ops::test_support::{assert_close, assert_close_to_scale, values};

    fn random<const D: usize>(shape: [usize; D], device: &Device) -> Tensor<D> {
        Tensor::random(shape, Distribution::Uniform(-1.0, 1.0), device)
    }

    fn layer(weight: Tensor<4>, bias: Tensor<1>, padding: [usize; 2]) -> Conv2d {
        let [_, _, kernel_h, kernel_w] = weight.dims();
        Conv2d {
            weight: Param::from_tensor(weight),
            bias: Some(Param::from_tensor(bias)),
            stride: [1, 1],
            kernel_size: [kernel_h, kernel_w],
            dilation: [1, 1],
            groups: 1,
            padding: PaddingConfig2d::Explicit(padding[0], padding[1], padding[0], padding[1]),
        }
    }

    /// Output and the three gradients of `sum(conv(x) * probe)`, fused and through Burn's
    /// convolution, for every shape the nets use: 3x3 padded (with 16 channels, through
    /// Winograd's kernel), a kernel wider than tall with less padding than it needs to keep
    /// the size, and 1x1.
    #[test]
    fn forward_and_gradients_match_burns_convolution() {
        let device = Device::flex().autodiff();
        for (batch, c_in, c_out, [h, w], kernel, padding) in [
            (3, 2, 4, [5, 6], [3, 3], [1, 1]),
            (2, 16, 16, [5, 7], [3, 3], [1, 1]),
            (2, 3, 2, [4, 7], [2, 3], [0, 1]),
            (5, 4, 3, [3, 3], [1, 1], [0, 0]),
            (1, 2, 3, [4, 4], [3, 3], [2, 2]),
        ] {
            let x = random([batch, c_in, h, w], &device);
            let weight = random([c_out, c_in, kernel[0], kernel[1]], &device);
            let bias = random([c_out], &device);
            let run = |fused: bool| {
                let (x, weight, bias) = (
                    x.clone().require_grad(),
                    weight.clone().require_grad(),
                    bias.clone().require_grad(),
                );
                let out = if fused {
                    conv2d(x.clone(), &layer(weight.clone(), bias.clone(), padding))
                } else {
                    let options = ConvOptions::new([1, 1], padding, [1, 1], 1);
                    burn_conv2d(x.clone(), weight.clone(), Some(bias.clone()), options)
                };
                let probe = random(out.dims(), &device);
                (out, probe, x, weight, bias)
            };
            let (out, probe, x_f, w_f, b_f) = run(true);
            let (reference, _, x_r, w_r, b_r) = run(false);
            assert_eq!(out.dims(), reference.dims(), "output shape");
            let (out_values, reference_values) = (values(out.clone()), values(reference.clone()));
            let g = Geometry {
                batch,
                in_channels: c_in,
                height: h,
                width: w,
                out_channels: c_out,
                kernel,
                padding,
            };
            if winograd::applies(g) {
                // Winograd's rounding follows the layer's largest terms (see its module).
                assert_close_to_scale(&out_values, &reference_values, 1e-5, "output");
            } else {
                assert_close(&out_values, &reference_values, 1e-5, "output");
            }
            let fused = (out * probe.clone()).sum().backward();
            let composed = (reference * probe).sum().backward();
            for (name, ours, theirs) in [
                ("d x", values(x_f.grad(&fused).unwrap()), values(x_r.grad(&composed).unwrap())),
                (
                    "d weight",
                    values(w_f.grad(&fused).unwrap()),
                    values(w_r.grad(&composed).unwrap()),
                ),
            ] {
                assert_close(&ours, &theirs, 1e-4, name);
            }
            assert_close(
                &values(b_f.grad(&fused).unwrap()),
                &values(b_r.grad(&composed).unwrap()),
                1e-4,
                "d bias",
            );
        }
    }

    #[test]
    fn gradients_match_finite_differences() {
        // The convolution is linear in each input, so central differences are exact up to
        // rounding. x [1, 1, 3, 2], weight [2, 1, 2, 2], padding [1, 0]: output [1, 2, 4, 1].
        let g = Geometry {
            batch: 1,
            in_channels: 1,
            height: 3,
            width: 2,
            out_channels: 2,
            kernel: [2, 2],
            padding: [1, 0],
        };
        let x = [0.5f32, -1.0, 2.0, 0.25, -0.75, 1.5];
        let weight = [1.0f32, -0.5, 0.25, 2.0, -1.5, 0.75, 0.5, -0.25];
        let bias = [0.1f32, -0.2];
        let probe = [1.0f32, -2.0, 0.5, 3.0, -1.0, 0.25, 2.0, -0.5];
        let loss = |x: &[f32], w: &[f32], b: &[f32]| -> f64 {
            let out = kernel::forward(x, w, b, g);
            out.iter().zip(&probe).map(|(o, p)| f64::from(o * p)).sum()
        };
        let wanted = kernel::Wanted { x: true, weight: true };
        let grads = kernel::backward(&x, &weight, &probe, g, wanted);
        let step = 1e-2f32;
        let numeric = |k: usize, which: usize| {
            let (mut up, mut down) = (
                [x.to_vec(), weight.to_vec(), bias.to_vec()],
                [x.to_vec(), weight.to_vec(), bias.to_vec()],
            );
            up[which][k] += step;
            down[which][k] -= step;
            (loss(&up[0], &up[1], &up[2]) - loss(&down[0], &down[1], &down[2]))
                / (2.0 * f64::from(step))
        };
        for (which, analytic) in [&grads.x, &grads.weight, &grads.bias].into_iter().enumerate() {
            for (k, value) in analytic.iter().enumerate() {
                assert!((f64::from(*value) - numeric(k, which)).abs() < 1e-4, "input {which}[{k}]");
            }
        }
    }

    fn same_size(in_channels: usize, [height, width]: [usize; 2], kernel: [usize; 2]) -> Geometry {
        let padding = [kernel[0] / 2, kernel[1] / 2];
        Geometry { batch: 1, in_channels, height, width, out_channels: 1, kernel, padding }
    }

    #[test]
    fn shifted_patches_and_their_adjoint_match_the_per_row_ones() {
        // Same-size geometries, including kernels as wide as (or wider than) the image.
        for g in [
            same_size(2, [5, 6], [3, 3]),
            same_size(1, [4, 4], [5, 5]),
            same_size(3, [3, 2], [1, 3]),
            same_size(1, [2, 1], [3, 5]),
        ] {
            assert!(g.keeps_size());
            let image: Vec<f32> = (0..g.image_len()).map(|k| k as f32 + 1.0).collect();
            let len = g.patch() * g.positions();
            let (mut shifted, mut segments) = (vec![f32::NAN; len], vec![f32::NAN; len]);
            kernel::im2col_shifted(&image, g, &mut shifted);
            kernel::im2col_segments(&image, g, &mut segments);
            assert_eq!(shifted, segments, "patches of {g:?}");
            let cols: Vec<f32> = (0..len).map(|k| (k % 7) as f32 - 3.0).collect();
            let (mut back_shifted, mut back_segments) =
                (vec![f32::NAN; g.image_len()], vec![f32::NAN; g.image_len()]);
            kernel::col2im_shifted(&mut cols.clone(), g, &mut back_shifted);
            kernel::col2im_segments(&cols, g, &mut back_segments);
            assert_eq!(back_shifted, back_segments, "adjoint of {g:?}");
        }
    }

    #[test]
    fn position_patches_are_the_patch_matrix_transposed_tap_major() {
        let g = Geometry { out_channels: 1, ..same_size(3, [4, 5], [3, 3]) };
        for g in [g, Geometry { padding: [0, 1], kernel: [2, 3], ..g }] {
            let image: Vec<f32> = (0..g.image_len()).map(|k| k as f32 * 0.5 - 7.0).collect();
            let mut cols = vec![f32::NAN; g.patch() * g.positions()];
            kernel::im2col_segments(&image, g, &mut cols);
            let mut by_position = vec![f32::NAN; cols.len()];
            kernel::position_patches(&image, g, &mut vec![0.0; g.image_len()], &mut by_position);
            let taps = g.kernel[0] * g.kernel[1];
            for position in 0..g.positions() {
                for channel in 0..g.in_channels {
                    for tap in 0..taps {
                        assert_eq!(
                            by_position[(position * taps + tap) * g.in_channels + channel],
                            cols[(channel * taps + tap) * g.positions() + position],
                            "{g:?}: position {position}, channel {channel}, tap {tap}"
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn patches_of_a_padded_image_are_the_textbook_ones() {
        // One 2x2 image, 3x3 kernel, padding 1: the centre row (i = j = 1) is the image
        // itself, the top-left row (i = j = 0) sees only pixel (0, 0) at output (1, 1).
        let g = Geometry {
            batch: 1,
            in_channels: 1,
            height: 2,
            width: 2,
            out_channels: 1,
            kernel: [3, 3],
            padding: [1, 1],
        };
        let image = [1.0f32, 2.0, 3.0, 4.0];
        let mut cols = vec![f32::NAN; 9 * 4];
        kernel::im2col(&image, g, &mut cols);
        assert_eq!(&cols[4 * 4..5 * 4], &image);
        assert_eq!(&cols[..4], &[0.0, 0.0, 0.0, 1.0]);
        assert_eq!(&cols[8 * 4..], &[4.0, 0.0, 0.0, 0.0]);
    }
}
