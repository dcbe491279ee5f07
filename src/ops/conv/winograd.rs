//! Winograd's minimal filtering F(4x4, 3x3) for 3x3 convolutions with padding 1 (Lavin and
//! Gray, "Fast Algorithms for Convolutional Neural Networks", CVPR 2016), every VGG
//! convolution past the first.
//!
//! Each 4x4 block of outputs (a tile) comes from the 6x6 block of inputs around it as
//! `Y = Aᵀ [(G g Gᵀ) ⊙ (Bᵀ d B)] A`: the sum over input channels costs 36 multiplies per
//! tile where the direct convolution spends 144, four times fewer. Over a block of tiles those
//! sums are 36 matrix products, one per entry ξ of the 6x6 transform: `M_ξ = V_ξ · U_ξ`, `V =
//! Bᵀ d B` the transformed input `[tiles, in]` and `U = G g Gᵀ` the transformed weight `[in,
//! out]`.
//!
//! The backward is the same algebra read backwards, so its two products shrink alike: with
//! `dM = A dY Aᵀ`, the weight gradient is `Gᵀ (Σ V_ξᵀ · dM_ξ) G` and the input gradient is
//! `B (dM_ξ · U_ξᵀ) Bᵀ` added back onto the overlapping 6x6 blocks. The transformed input is
//! recomputed there rather than kept from the forward.
//!
//! The price of the larger tile is rounding: the transforms' coefficients reach 8 and 1/15,
//! so an output's error follows the largest terms of its tile rather than its own size, and
//! an output that cancels to near zero can carry an error above 1e-5 of itself. The tests
//! therefore judge it as oneDNN's benchdnn judges its own Winograd kernels: norm-wise, the
//! output and both gradients within 1e-5 of the exact (f64) convolution in the L2 norm (at
//! most 1.6e-6 on the tests' layers, the direct kernel's at most 3.5e-7), and within 1e-5 of
//! the layer's largest value against the direct kernel; element-wise on a VGG layer.
//!
//! The transforms run on channels-last copies of the images, so each of a tile's 36 values is
//! a contiguous run of channels and the arithmetic is vectorised across channels, whatever
//! the image's size. Only the copies in and out of NCHW are strided.

use rayon::prelude::*;

use super::Geometry;
use super::kernel::{Gradients, Wanted, backward_by_runs, images_per_run, product};
use crate::ops::matmul::View;

/// Outputs along each side of a tile.
const TILE: usize = 4;
/// Inputs along each side of the block a tile reads: the tile and the kernel's reach.
const SIDE: usize = TILE + 2;
/// Entries of a transformed tile (6x6).
const ENTRIES: usize = SIDE * SIDE;

/// Whether a convolution goes through this kernel: 3x3, padding 1 (output the input's
/// size), and enough channels on both sides for the 36 products to run near the GEMM's speed
/// (the first layer of an RGB net has 3 input channels: the direct kernel's one product with
/// 27 rows is faster there).
pub fn applies(g: Geometry) -> bool {
    g.kernel == [3, 3] && g.padding == [1, 1] && g.in_channels >= 16 && g.out_channels >= 16
}

/// Tiles per image and how many images share one set of products.
#[derive(Debug, Clone, Copy)]
pub struct Tiling {
    rows: usize,
    cols: usize,
    images: usize,
}

impl Tiling {
    pub fn of(g: Geometry) -> Self {
        // A block's transformed input or product (36 values per channel and tile) of about 1
        // MiB, this CPU's L2 cache, but at least one image (2.25 MiB at 32x32 with 64
        // channels): products of 28 to 64 rows on VGG's layers. Half or twice this was no
        // faster on any of them, four times slower on all.
        const BLOCK_VALUES: usize = 1 << 18;
        let per_image = ENTRIES
            * g.in_channels.max(g.out_channels)
            * g.height.div_ceil(TILE)
            * g.width.div_ceil(TILE);
        Self::with_images(g, (BLOCK_VALUES / per_image).max(1))
    }

    fn with_images(g: Geometry, images: usize) -> Self {
        Self { rows: g.height.div_ceil(TILE), cols: g.width.div_ceil(TILE), images }
    }

    fn per_image(&self) -> usize {
        self.rows * self.cols
    }

    /// Width of the zero-padded image: a column in front, the image, zeros up to the last
    /// tile's edge.
    fn padded_width(&self) -> usize {
        TILE * self.cols + 2
    }

    fn padded_len(&self, channels: usize) -> usize {
        (TILE * self.rows + 2) * self.padded_width() * channels
    }
}

/// The convolution of a batch `[B, in, H, W]`: `[B, out, H, W]`.
pub fn forward(x: &[f32], weight: &[f32], bias: &[f32], g: Geometry, tiling: Tiling) -> Vec<f32> {
    let transformed = transform_weight(weight, g, Major::In);
    let mut out = vec![0.0f32; g.batch * g.output_len()];
    let per_run = images_per_run(g.batch);
    let runs = g.batch.div_ceil(per_run);
    out.par_chunks_mut(per_run * g.output_len())
        .zip(x.par_chunks(per_run * g.image_len()))
        .for_each(|(out, x)| {
            let mut buffers = Buffers::new(g, tiling);
            let blocks = out
                .chunks_mut(tiling.images * g.output_len())
                .zip(x.chunks(tiling.images * g.image_len()));
            for (out, x) in blocks {
                let tiles = x.len() / g.image_len() * tiling.per_image();
                buffers.transform_input(x, g, tiling);
                let Buffers { input, product: m, .. } = &mut buffers;
                for entry in 0..ENTRIES {
                    let v = entry_matrix(input, entry, tiles, g.in_channels);
                    let u = weight_matrix(&transformed, entry, g.in_channels, g.out_channels);
                    let m = &mut m[entry * tiles * g.out_channels..][..tiles * g.out_channels];
                    product(m, g.out_channels, v, u, false, runs);
                }
                buffers.transform_output(bias, g, tiling, out);
            }
        });
    out
}

/// The gradients of [`forward`] given the output's gradient `grad`.
pub fn backward(
    x: &[f32],
    weight: &[f32],
    grad: &[f32],
    g: Geometry,
    wanted: Wanted,
    tiling: Tiling,
) -> Gradients {
    // The transformed weight serves only the input gradient.
    let transformed = if wanted.x { transform_weight(weight, g, Major::Out) } else { Vec::new() };
    let (d_x, d_transformed, d_bias) =
        backward_by_runs(x, grad, g, wanted, |x, grad, d_x, runs| {
            let run = Run { g, tiling, wanted, runs, transformed: &transformed };
            run.backward(x, grad, d_x)
        });
    let d_weight = if wanted.weight { weight_gradient(&d_transformed, g) } else { Vec::new() };
    Gradients { x: d_x, weight: d_weight, bias: d_bias }
}

/// One thread's share of the backward pass.
struct Run<'a> {
    g: Geometry,
    tiling: Tiling,
    wanted: Wanted,
    runs: usize,
    /// The transformed weight `[out, 36, in]`, when the input gradient is wanted.
    transformed: &'a [f32],
}

impl Run<'_> {
    /// Fills `d_x` (when wanted) for a run of images and returns the run's sum of the
    /// transformed weight's gradient `[in, 36, out]`.
    fn backward(&self, x: &[f32], grad: &[f32], d_x: &mut [f32]) -> Vec<f32> {
        let Self { g, tiling, wanted, .. } = *self;
        let mut d_transformed =
            vec![0.0f32; if wanted.weight { ENTRIES * g.in_channels * g.out_channels } else { 0 }];
        let mut buffers = Buffers::new(g, tiling);
        let mut d_x_blocks = d_x.chunks_mut(tiling.images * g.image_len());
        let blocks = x
            .chunks(tiling.images * g.image_len())
            .zip(grad.chunks(tiling.images * g.output_len()));
        for (x, grad) in blocks {
            let tiles = x.len() / g.image_len() * tiling.per_image();
            buffers.transform_grad(grad, g, tiling);
            if wanted.weight {
                buffers.transform_input(x, g, tiling);
                self.weight_products(&buffers, tiles, &mut d_transformed);
            }
            if let Some(d_x) = d_x_blocks.next() {
                self.input_products(&mut buffers, tiles);
                buffers.transform_input_adjoint(g, tiling, d_x);
            }
        }
        d_transformed
    }

    /// `dU_ξ += V_ξᵀ · dM_ξ` for every entry ξ.
    fn weight_products(&self, buffers: &Buffers, tiles: usize, sum: &mut [f32]) {
        let (c_in, c_out) = (self.g.in_channels, self.g.out_channels);
        for entry in 0..ENTRIES {
            let v = &buffers.input[entry * tiles * c_in..][..tiles * c_in];
            let d_m = entry_matrix(&buffers.product, entry, tiles, c_out);
            let sum = &mut sum[entry * c_out..];
            product(sum, ENTRIES * c_out, View::transposed(v, c_in, tiles), d_m, true, self.runs);
        }
    }

    /// `dV_ξ = dM_ξ · U_ξᵀ` for every entry ξ, into the buffers' transformed input.
    fn input_products(&self, buffers: &mut Buffers, tiles: usize) {
        let (c_in, c_out) = (self.g.in_channels, self.g.out_channels);
        for entry in 0..ENTRIES {
            let u_t = weight_matrix(self.transformed, entry, c_out, c_in);
            let d_m = entry_matrix(&buffers.product, entry, tiles, c_out);
            let d_v = &mut buffers.input[entry * tiles * c_in..][..tiles * c_in];
            product(d_v, c_in, d_m, u_t, false, self.runs);
        }
    }
}

/// Entry ξ of a transformed tensor `[36, rows, cols]`: a row-major `rows x cols` matrix.
fn entry_matrix(values: &[f32], entry: usize, rows: usize, cols: usize) -> View<'_> {
    View::row_major(&values[entry * rows * cols..][..rows * cols], rows, cols)
}

/// Entry ξ of a transformed weight (or its gradient) `[rows, 36, cols]`: a `rows x cols`
/// matrix.
fn weight_matrix(values: &[f32], entry: usize, rows: usize, cols: usize) -> View<'_> {
    View { data: &values[entry * cols..], rows, cols, row_stride: ENTRIES * cols, col_stride: 1 }
}

/// One thread's buffers for a block of images: one image zero-padded channels-last, one
/// output (or output gradient) channels-last, the transformed input `[36, tiles, in]` and the
/// product `[36, tiles, out]` (or their gradients).
struct Buffers {
    padded: Vec<f32>,
    pixels: Vec<f32>,
    input: Vec<f32>,
    product: Vec<f32>,
}

impl Buffers {
    fn new(g: Geometry, tiling: Tiling) -> Self {
        let tiles = tiling.images.min(g.batch) * tiling.per_image();
        Self {
            padded: vec![0.0; tiling.padded_len(g.in_channels)],
            pixels: vec![0.0; g.output_len()],
            input: vec![0.0; ENTRIES * tiles * g.in_channels],
            product: vec![0.0; ENTRIES * tiles * g.out_channels],
        }
    }

    /// `V = Bᵀ d B` of every tile of a block of images `[images, in, H, W]`, tiles numbered
    /// image by image, then row by row.
    fn transform_input(&mut self, x: &[f32], g: Geometry, tiling: Tiling) {
        let tiles = x.len() / g.image_len() * tiling.per_image();
        self.clear_padding(g, tiling);
        for (image, x) in x.chunks_exact(g.image_len()).enumerate() {
            to_channels_last(x, ChannelsLast::padded(g.in_channels, g, tiling), &mut self.padded);
            let place = Place::of(tiling, g.in_channels, tiles, image);
            input_tiles(&self.padded, place, &mut self.input);
        }
    }

    /// Zeroes the padding around the image in `padded`: the copy in writes only the image,
    /// and the adjoint leaves values all over.
    fn clear_padding(&mut self, g: Geometry, tiling: Tiling) {
        let row_len = tiling.padded_width() * g.in_channels;
        let (top, rows) = self.padded.split_at_mut(row_len);
        top.fill(0.0);
        let (rows, bottom) = rows.split_at_mut(g.height * row_len);
        bottom.fill(0.0);
        for row in rows.chunks_exact_mut(row_len) {
            row[..g.in_channels].fill(0.0);
            row[(g.width + 1) * g.in_channels..].fill(0.0);
        }
    }

    /// The adjoint of [`Buffers::transform_input`]: the transformed input's gradient (in
    /// `input`) back onto the images `d_x` `[images, in, H, W]`.
    fn transform_input_adjoint(&mut self, g: Geometry, tiling: Tiling, d_x: &mut [f32]) {
        let tiles = d_x.len() / g.image_len() * tiling.per_image();
        for (image, d_x) in d_x.chunks_exact_mut(g.image_len()).enumerate() {
            self.padded.fill(0.0);
            let place = Place::of(tiling, g.in_channels, tiles, image);
            input_tiles_adjoint(&self.input, place, &mut self.padded);
            from_channels_last(&self.padded, ChannelsLast::padded(g.in_channels, g, tiling), d_x);
        }
    }

    /// `Y = Aᵀ M A` plus the bias from the product, into `out` `[images, out, H, W]`.
    fn transform_output(&mut self, bias: &[f32], g: Geometry, tiling: Tiling, out: &mut [f32]) {
        let tiles = out.len() / g.output_len() * tiling.per_image();
        for (image, out) in out.chunks_exact_mut(g.output_len()).enumerate() {
            let place = Place::of(tiling, g.out_channels, tiles, image);
            output_tiles(&self.product, bias, place, [g.height, g.width], &mut self.pixels);
            from_channels_last(&self.pixels, ChannelsLast::unpadded(g.out_channels, g), out);
        }
    }

    /// `dM = A dY Aᵀ` of every tile of a block's output gradient `[images, out, H, W]`, into
    /// the product.
    fn transform_grad(&mut self, grad: &[f32], g: Geometry, tiling: Tiling) {
        let tiles = grad.len() / g.output_len() * tiling.per_image();
        for (image, grad) in grad.chunks_exact(g.output_len()).enumerate() {
            to_channels_last(grad, ChannelsLast::unpadded(g.out_channels, g), &mut self.pixels);
            let place = Place::of(tiling, g.out_channels, tiles, image);
            grad_tiles(&self.pixels, place, [g.height, g.width], &mut self.product);
        }
    }
}

/// Copies planes `[channels, H, W]` into a channels-last buffer whose rows are `row_len`
/// pixels wide, starting `margin` rows down and columns in (the padding, left as it is).
fn to_channels_last(planes: &[f32], layout: ChannelsLast, out: &mut [f32]) {
    let (channels, plane_len) = (layout.channels, layout.plane_len());
    layout.for_each_block(|plane_at, at, [channel_run, pixel_run]| {
        let block = [channel_run, pixel_run];
        transpose_block(&planes[plane_at..], plane_len, block, &mut out[at..], channels);
    });
}

/// The inverse of [`to_channels_last`]: the `[channels, H, W]` planes back out of it.
fn from_channels_last(values: &[f32], layout: ChannelsLast, planes: &mut [f32]) {
    let (channels, plane_len) = (layout.channels, layout.plane_len());
    layout.for_each_block(|plane_at, at, [channel_run, pixel_run]| {
        let block = [pixel_run, channel_run];
        transpose_block(&values[at..], channels, block, &mut planes[plane_at..], plane_len);
    });
}

/// Where planes `[channels, H, W]` sit in a channels-last buffer: rows `row_len` pixels
/// wide, the image `margin` rows down and columns in.
#[derive(Clone, Copy)]
struct ChannelsLast {
    channels: usize,
    size: [usize; 2],
    row_len: usize,
    margin: usize,
}

impl ChannelsLast {
    /// The zero-padded input image of the transforms.
    fn padded(channels: usize, g: Geometry, tiling: Tiling) -> Self {
        let size = [g.height, g.width];
        Self { channels, size, row_len: tiling.padded_width(), margin: 1 }
    }

    fn unpadded(channels: usize, g: Geometry) -> Self {
        Self { channels, size: [g.height, g.width], row_len: g.width, margin: 0 }
    }

    fn plane_len(&self) -> usize {
        self.size[0] * self.size[1]
    }

    /// Every block of at most [`BLOCK`] channels by [`BLOCK`] pixels of one image row:
    /// `visit(offset in the planes, offset in the channels-last buffer, [channels,
    /// pixels])`.
    fn for_each_block(&self, mut visit: impl FnMut(usize, usize, [usize; 2])) {
        let [height, width] = self.size;
        for y in 0..height {
            let row = ((y + self.margin) * self.row_len + self.margin) * self.channels;
            for x in (0..width).step_by(BLOCK) {
                for c in (0..self.channels).step_by(BLOCK) {
                    let runs = [BLOCK.min(self.channels - c), BLOCK.min(width - x)];
                    visit(c * self.plane_len() + y * width + x, row + x * self.channels + c, runs);
                }
            }
        }
    }
}

/// The side of the blocks [`transpose_block`] moves at once: one AVX-512 register a row.
const BLOCK: usize = 16;

/// `target[j · target_stride + i] = source[i · source_stride + j]` for `i < rows`, `j <
/// cols`, `[rows, cols]` at most [`BLOCK`] each: through sixteen registers and shuffles
/// where the CPU has AVX-512, one value at a time elsewhere.
fn transpose_block(
    source: &[f32],
    source_stride: usize,
    [rows, cols]: [usize; 2],
    target: &mut [f32],
    target_stride: usize,
) {
    assert!(rows <= BLOCK && cols <= BLOCK && rows > 0 && cols > 0);
    assert!((rows - 1) * source_stride + cols <= source.len(), "transpose source too short");
    assert!((cols - 1) * target_stride + rows <= target.len(), "transpose target too short");
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx512f") {
        // SAFETY: AVX-512F was just detected; the masked loads and stores touch only the
        // `rows x cols` and `cols x rows` entries bounds-checked above.
        unsafe {
            transpose_avx512(
                source.as_ptr(),
                source_stride,
                [rows, cols],
                target.as_mut_ptr(),
                target_stride,
            )
        };
        return;
    }
    for i in 0..rows {
        for j in 0..cols {
            target[j * target_stride + i] = source[i * source_stride + j];
        }
    }
}

/// The 16x16 transpose in three rounds of shuffles (pairs of lanes, then 128-bit and
/// 256-bit halves), rows past `rows` read as zeros and columns past `cols` not stored.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn transpose_avx512(
    source: *const f32,
    source_stride: usize,
    [rows, cols]: [usize; 2],
    target: *mut f32,
    target_stride: usize,
) {
    use std::arch::x86_64::*;
    let load_mask = ((1u32 << cols) - 1) as u16;
    let store_mask = ((1u32 << rows) - 1) as u16;
    let mut r = [_mm512_setzero_ps(); 16];
    for (i, row) in r.iter_mut().enumerate().take(rows) {
        // SAFETY: row `i < rows`, columns under `cols`, within the checked source.
        *row = unsafe { _mm512_maskz_loadu_ps(load_mask, source.add(i * source_stride)) };
    }
    let mut t = [_mm512_setzero_ps(); 16];
    for k in 0..8 {
        t[2 * k] = _mm512_unpacklo_ps(r[2 * k], r[2 * k + 1]);
        t[2 * k + 1] = _mm512_unpackhi_ps(r[2 * k], r[2 * k + 1]);
    }
    for k in 0..4 {
        let (a, b, c, d) = (t[4 * k], t[4 * k + 1], t[4 * k + 2], t[4 * k + 3]);
        r[4 * k] = _mm512_shuffle_ps::<0x44>(a, c);
        r[4 * k + 1] = _mm512_shuffle_ps::<0xEE>(a, c);
        r[4 * k + 2] = _mm512_shuffle_ps::<0x44>(b, d);
        r[4 * k + 3] = _mm512_shuffle_ps::<0xEE>(b, d);
    }
    for k in 0..2 {
        for m in 0..4 {
            let (a, b) = (r[8 * k + m], r[8 * k + m + 4]);
            t[8 * k + m] = _mm512_shuffle_f32x4::<0x88>(a, b);
            t[8 * k + m + 4] = _mm512_shuffle_f32x4::<0xDD>(a, b);
        }
    }
    for m in 0..8 {
        r[m] = _mm512_shuffle_f32x4::<0x88>(t[m], t[m + 8]);
        r[m + 8] = _mm512_shuffle_f32x4::<0xDD>(t[m], t[m + 8]);
    }
    for (j, row) in r.iter().enumerate().take(cols) {
        // SAFETY: row `j < cols`, entries under `rows`, within the checked target.
        unsafe { _mm512_mask_storeu_ps(target.add(j * target_stride), store_mask, *row) };
    }
}

/// Where one image's tiles go in a transformed tensor `[36, tiles, channels]`: its first
/// tile's number.
#[derive(Clone, Copy)]
pub struct Place {
    tiling: Tiling,
    channels: usize,
    tiles: usize,
    first: usize,
}

impl Place {
    /// Image `image` of a block of `tiles` tiles.
    fn of(tiling: Tiling, channels: usize, tiles: usize, image: usize) -> Self {
        Self { tiling, channels, tiles, first: image * tiling.per_image() }
    }

    /// Offset of entry `entry`, tile `(ty, tx)` of the image, channel `channel`.
    #[inline(always)]
    fn at(&self, entry: usize, ty: usize, tx: usize, channel: usize) -> usize {
        (entry * self.tiles + self.first + ty * self.tiling.cols + tx) * self.channels + channel
    }
}

/// Channels the transforms take at a time: one AVX-512 register.
const LANES: usize = 16;
type Lanes = [f32; LANES];

/// `n` (at most [`LANES`]) values from `at`, zeros after them.
#[inline(always)]
fn load(values: &[f32], at: usize, n: usize) -> Lanes {
    let mut lanes = [0.0; LANES];
    if n == LANES {
        lanes.copy_from_slice(&values[at..at + LANES]);
    } else {
        lanes[..n].copy_from_slice(&values[at..at + n]);
    }
    lanes
}

#[inline(always)]
fn store(values: &mut [f32], at: usize, n: usize, lanes: &Lanes) {
    if n == LANES {
        values[at..at + LANES].copy_from_slice(lanes);
    } else {
        values[at..at + n].copy_from_slice(&lanes[..n]);
    }
}

#[inline(always)]
fn add_to(values: &mut [f32], at: usize, n: usize, lanes: &Lanes) {
    let mut sum = load(values, at, n);
    for (sum, lane) in sum.iter_mut().zip(lanes) {
        *sum += lane;
    }
    store(values, at, n, &sum);
}

/// `Bᵀ` of six rows of lanes, for the interpolation points 0, 1, -1, 1/2, -2 and infinity
/// (Barabasz et al., "Error analysis and improving the accuracy of Winograd convolution for
/// deep neural networks", 2020: of the usual choices the one with the smallest fp32 error;
/// Lavin and Gray's 0, ±1, ±2 left errors twice the 1e-5 forward bar on 128 channels).
#[inline(always)]
fn b_t(d: &[Lanes; SIDE]) -> [Lanes; SIDE] {
    let mut v = [[0.0; LANES]; SIDE];
    for i in 0..LANES {
        let [d0, d1, d2, d3, d4, d5] = std::array::from_fn(|k| d[k][i]);
        v[0][i] = d0 - 1.5 * d1 - 2.0 * d2 + 1.5 * d3 + d4;
        v[1][i] = -d1 + 0.5 * d2 + 2.5 * d3 + d4;
        v[2][i] = d1 - 2.5 * d2 + 0.5 * d3 + d4;
        v[3][i] = -2.0 * d1 - d2 + 2.0 * d3 + d4;
        v[4][i] = 0.5 * d1 - d2 - 0.5 * d3 + d4;
        v[5][i] = d1 - 1.5 * d2 - 2.0 * d3 + 1.5 * d4 + d5;
    }
    v
}

/// The transpose of [`b_t`].
#[inline(always)]
fn b(v: &[Lanes; SIDE]) -> [Lanes; SIDE] {
    let mut d = [[0.0; LANES]; SIDE];
    for i in 0..LANES {
        let [v0, v1, v2, v3, v4, v5] = std::array::from_fn(|k| v[k][i]);
        d[0][i] = v0;
        d[1][i] = -1.5 * v0 - v1 + v2 - 2.0 * v3 + 0.5 * v4 + v5;
        d[2][i] = -2.0 * v0 + 0.5 * v1 - 2.5 * v2 - v3 - v4 - 1.5 * v5;
        d[3][i] = 1.5 * v0 + 2.5 * v1 + 0.5 * v2 + 2.0 * v3 - 0.5 * v4 - 2.0 * v5;
        d[4][i] = v0 + v1 + v2 + v3 + v4 + 1.5 * v5;
        d[5][i] = v5;
    }
    d
}

/// `Aᵀ` of six rows of lanes: the product's values at the points, back to four outputs.
#[inline(always)]
fn a_t(m: &[Lanes; SIDE]) -> [Lanes; TILE] {
    let mut y = [[0.0; LANES]; TILE];
    for i in 0..LANES {
        let [m0, m1, m2, m3, m4, m5] = std::array::from_fn(|k| m[k][i]);
        let (sum_12, difference_12) = (m1 + m2, m1 - m2);
        y[0][i] = m0 + sum_12 + m3 + m4;
        y[1][i] = difference_12 + 0.5 * m3 - 2.0 * m4;
        y[2][i] = sum_12 + 0.25 * m3 + 4.0 * m4;
        y[3][i] = difference_12 + 0.125 * m3 - 8.0 * m4 + m5;
    }
    y
}

/// The transpose of [`a_t`].
#[inline(always)]
fn a(y: &[Lanes; TILE]) -> [Lanes; SIDE] {
    let mut m = [[0.0; LANES]; SIDE];
    for i in 0..LANES {
        let [y0, y1, y2, y3] = std::array::from_fn(|k| y[k][i]);
        let (even, odd) = (y0 + y2, y1 + y3);
        m[0][i] = y0;
        m[1][i] = even + odd;
        m[2][i] = even - odd;
        m[3][i] = y0 + 0.5 * y1 + 0.25 * y2 + 0.125 * y3;
        m[4][i] = y0 - 2.0 * y1 + 4.0 * y2 - 8.0 * y3;
        m[5][i] = y3;
    }
    m
}

/// `T X Tᵀ` for a square block `X` of lanes and a 1-d transform `T` (`transform` applies
/// it to one column): the columns first, then the rows.
#[inline(always)]
fn both_ways<const R: usize, const S: usize>(
    block: &[[Lanes; R]; R],
    transform: impl Fn(&[Lanes; R]) -> [Lanes; S],
) -> [[Lanes; S]; S] {
    let mut columns = [[[0.0; LANES]; S]; R];
    for (c, column_out) in columns.iter_mut().enumerate() {
        let mut column = [[0.0; LANES]; R];
        for (r, lanes) in column.iter_mut().enumerate() {
            *lanes = block[r][c];
        }
        *column_out = transform(&column);
    }
    let mut out = [[[0.0; LANES]; S]; S];
    for (s, row_out) in out.iter_mut().enumerate() {
        let mut row = [[0.0; LANES]; R];
        for (c, lanes) in row.iter_mut().enumerate() {
            *lanes = columns[c][s];
        }
        *row_out = transform(&row);
    }
    out
}

// The four tile kernels below spell out their loops over tiles and channel runs rather than
// share a visitor taking a closure: a closure is compiled without the kernel's SIMD target
// features unless inlined, which left the transforms three times slower.
widest_simd! {
    /// `Bᵀ d B` of every tile of one zero-padded channels-last image into `input`.
    pub fn input_tiles(padded: &[f32], place: Place, input: &mut [f32]) {
        let (channels, row_len) = (place.channels, place.tiling.padded_width());
        for ty in 0..place.tiling.rows {
            for tx in 0..place.tiling.cols {
                for c in (0..place.channels).step_by(LANES) {
                    let n = LANES.min(place.channels - c);
                    let mut d = [[[0.0; LANES]; SIDE]; SIDE];
                    for (k, row) in d.iter_mut().enumerate() {
                        for (l, lanes) in row.iter_mut().enumerate() {
                            *lanes = load(padded, ((TILE * ty + k) * row_len + TILE * tx + l) * channels + c, n);
                        }
                    }
                    let v = both_ways(&d, b_t);
                    for (entry, lanes) in v.as_flattened().iter().enumerate() {
                        store(input, place.at(entry, ty, tx, c), n, lanes);
                    }
                }
            }
        }
    }
}

widest_simd! {
    /// The adjoint of [`input_tiles`]: `B dV Bᵀ` of every tile added onto `padded`.
    pub fn input_tiles_adjoint(d_input: &[f32], place: Place, padded: &mut [f32]) {
        let (channels, row_len) = (place.channels, place.tiling.padded_width());
        for ty in 0..place.tiling.rows {
            for tx in 0..place.tiling.cols {
                for c in (0..place.channels).step_by(LANES) {
                    let n = LANES.min(place.channels - c);
                    let mut d_v = [[[0.0; LANES]; SIDE]; SIDE];
                    for (entry, lanes) in d_v.as_flattened_mut().iter_mut().enumerate() {
                        *lanes = load(d_input, place.at(entry, ty, tx, c), n);
                    }
                    let d_d = both_ways(&d_v, b);
                    for (k, row) in d_d.iter().enumerate() {
                        for (l, lanes) in row.iter().enumerate() {
                            add_to(padded, ((TILE * ty + k) * row_len + TILE * tx + l) * channels + c, n, lanes);
                        }
                    }
                }
            }
        }
    }
}

widest_simd! {
    /// `Aᵀ M A` plus `bias` of every tile of one image, into `pixels` `[H, W, channels]`.
    pub fn output_tiles(product: &[f32], bias: &[f32], place: Place, size: [usize; 2], pixels: &mut [f32]) {
        let [height, width] = size;
        let channels = place.channels;
        for ty in 0..place.tiling.rows {
            for tx in 0..place.tiling.cols {
                for c in (0..place.channels).step_by(LANES) {
                    let n = LANES.min(place.channels - c);
                    let bias = load(bias, c, n);
                    let mut m = [[[0.0; LANES]; SIDE]; SIDE];
                    for (entry, lanes) in m.as_flattened_mut().iter_mut().enumerate() {
                        *lanes = load(product, place.at(entry, ty, tx, c), n);
                    }
                    let y = both_ways(&m, a_t);
                    for (i, row) in y.iter().enumerate().take(height - TILE * ty) {
                        for (j, lanes) in row.iter().enumerate().take(width - TILE * tx) {
                            let mut value = *lanes;
                            for (value, bias) in value.iter_mut().zip(&bias) {
                                *value += bias;
                            }
                            store(pixels, ((TILE * ty + i) * width + TILE * tx + j) * channels + c, n, &value);
                        }
                    }
                }
            }
        }
    }
}

widest_simd! {
    /// `A dY Aᵀ` of every tile of one image's output gradient `pixels` `[H, W, channels]`
    /// (zero past its edge), into `d_m`.
    pub fn grad_tiles(pixels: &[f32], place: Place, size: [usize; 2], d_m: &mut [f32]) {
        let [height, width] = size;
        let channels = place.channels;
        for ty in 0..place.tiling.rows {
            for tx in 0..place.tiling.cols {
                for c in (0..place.channels).step_by(LANES) {
                    let n = LANES.min(place.channels - c);
                    let mut d_y = [[[0.0; LANES]; TILE]; TILE];
                    for (i, row) in d_y.iter_mut().enumerate().take(height - TILE * ty) {
                        for (j, lanes) in row.iter_mut().enumerate().take(width - TILE * tx) {
                            *lanes = load(pixels, ((TILE * ty + i) * width + TILE * tx + j) * channels + c, n);
                        }
                    }
                    let d_m_tile = both_ways(&d_y, a);
                    for (entry, lanes) in d_m_tile.as_flattened().iter().enumerate() {
                        store(d_m, place.at(entry, ty, tx, c), n, lanes);
                    }
                }
            }
        }
    }
}

/// `G` of three values, the weight transform's 1-d form: the kernel's values at the points.
#[inline(always)]
fn g_of([g0, g1, g2]: [f32; 3]) -> [f32; SIDE] {
    [
        g0,
        (g0 + g1 + g2) / 3.0,
        (-g0 + g1 - g2) / 3.0,
        -(16.0 * g0 + 8.0 * g1 + 4.0 * g2) / 15.0,
        (g0 - 2.0 * g1 + 4.0 * g2) / 15.0,
        g2,
    ]
}

/// The transpose of [`g_of`].
#[inline(always)]
fn g_transposed([u0, u1, u2, u3, u4, u5]: [f32; SIDE]) -> [f32; 3] {
    [
        u0 + (u1 - u2) / 3.0 + (u4 - 16.0 * u3) / 15.0,
        (u1 + u2) / 3.0 - (8.0 * u3 + 2.0 * u4) / 15.0,
        (u1 - u2) / 3.0 + (4.0 * u4 - 4.0 * u3) / 15.0 + u5,
    ]
}

/// Which channels lead a transformed weight's layout.
#[derive(Clone, Copy)]
enum Major {
    /// `[in, 36, out]`: each `U_ξ` an `in x out` matrix, the forward's.
    In,
    /// `[out, 36, in]`: each `U_ξᵀ`, the input gradient's. The product packs its right-hand
    /// side row by row; read transposed from the forward's layout, that packing alone took a
    /// fifth of a VGG epoch.
    Out,
}

/// `U = G g Gᵀ` of every `(out, in)` pair from the weight `[out, in, 3, 3]`, laid out by
/// `major` so that each thread writes its own rows; the products read each entry's matrix
/// with a row stride.
fn transform_weight(weight: &[f32], g: Geometry, major: Major) -> Vec<f32> {
    let (c_in, c_out) = (g.in_channels, g.out_channels);
    let minor_len = match major {
        Major::In => c_out,
        Major::Out => c_in,
    };
    let mut transformed = vec![0.0f32; c_in * ENTRIES * c_out];
    transformed.par_chunks_mut(ENTRIES * minor_len).enumerate().for_each(|(leading, entries)| {
        for minor in 0..minor_len {
            let (out, channel) = match major {
                Major::In => (minor, leading),
                Major::Out => (leading, minor),
            };
            let kernel = &weight[(out * c_in + channel) * 9..][..9];
            let rows: [[f32; SIDE]; 3] = std::array::from_fn(|i| {
                g_of([kernel[3 * i], kernel[3 * i + 1], kernel[3 * i + 2]])
            });
            for b in 0..SIDE {
                let column = g_of([rows[0][b], rows[1][b], rows[2][b]]);
                for (a, value) in column.into_iter().enumerate() {
                    entries[(SIDE * a + b) * minor_len + minor] = value;
                }
            }
        }
    });
    transformed
}

/// The weight gradient `[out, in, 3, 3]` from the transformed weight's `[in, 36, out]`: `dg =
/// Gᵀ dU G`.
fn weight_gradient(d_transformed: &[f32], g: Geometry) -> Vec<f32> {
    let (c_in, c_out) = (g.in_channels, g.out_channels);
    let mut d_weight = vec![0.0f32; 9 * c_out * c_in];
    d_weight.par_chunks_mut(9 * c_in).enumerate().for_each(|(out, kernels)| {
        for (channel, d_kernel) in kernels.chunks_exact_mut(9).enumerate() {
            let d_u = |entry: usize| d_transformed[(channel * ENTRIES + entry) * c_out + out];
            let rows: [[f32; 3]; SIDE] =
                std::array::from_fn(|a| g_transposed(std::array::from_fn(|b| d_u(SIDE * a + b))));
            for j in 0..3 {
                let column = g_transposed(std::array::from_fn(|a| rows[a][j]));
                for (i, value) in column.into_iter().enumerate() {
                    d_kernel[3 * i + j] = value;
                }
            }
        }
    });
    d_weight
}

#[cfg(test)]
mod tests {
    use super::super::kernel;
    use super::*;
    use crate::ops::test_support::{assert_close, assert_close_to_scale, assert_relative_l2};

    fn geometry(
        batch: usize,
        in_channels: usize,
        out_channels: usize,
        [height, width]: [usize; 2],
    ) -> Geometry {
        Geometry {
            batch,
            in_channels,
            height,
            width,
            out_channels,
            kernel: [3, 3],
            padding: [1, 1],
        }
    }

    /// Deterministic values spread over about [-1, 1], different for each `which`.
    fn spread(len: usize, which: usize) -> Vec<f32> {
        (0..len).map(|i| ((i * 37 + which * 1013) as f32 * 0.618_034).sin()).collect()
    }

    /// The forward and every gradient against the direct kernel (itself checked against
    /// Burn's convolution and central differences) and, norm-wise, against the exact
    /// convolution, on even and odd sizes, a 1x1 and a one-tile image, and blocks that split
    /// the batch unevenly.
    #[test]
    fn forward_and_gradients_match_the_direct_convolution() {
        for (g, images_per_block) in [
            (geometry(3, 4, 5, [6, 8]), 2),
            (geometry(5, 3, 2, [5, 7]), 2),
            (geometry(2, 2, 3, [1, 1]), 1),
            (geometry(4, 2, 2, [2, 3]), 3),
            (geometry(2, 16, 16, [8, 8]), 16),
        ] {
            let tiling = Tiling::with_images(g, images_per_block);
            let x = spread(g.batch * g.image_len(), 0);
            let weight = spread(g.out_channels * g.patch(), 1);
            let bias = spread(g.out_channels, 2);
            let grad = spread(g.batch * g.output_len(), 3);
            let what = |part: &str| format!("{part} of {g:?}");
            let output = forward(&x, &weight, &bias, g, tiling);
            let direct_output = kernel::forward(&x, &weight, &bias, g);
            assert_close_to_scale(&output, &direct_output, 1e-5, &what("output"));
            let wanted = kernel::Wanted { x: true, weight: true };
            let ours = backward(&x, &weight, &grad, g, wanted, tiling);
            let direct = kernel::backward(&x, &weight, &grad, g, wanted);
            assert_close_to_scale(&ours.x, &direct.x, 1e-5, &what("d x"));
            assert_close_to_scale(&ours.weight, &direct.weight, 1e-5, &what("d weight"));
            assert_close(&ours.bias, &direct.bias, 1e-5, &what("d bias"));
            Exact::of(&x, &weight, &bias, &grad, g).assert_matched_by(&output, &ours, 1e-5);
            let only_x =
                backward(&x, &weight, &grad, g, kernel::Wanted { x: true, weight: false }, tiling);
            assert_eq!(only_x.x, ours.x, "{}", what("d x alone"));
            assert!(only_x.weight.is_empty());
        }
    }

    #[test]
    fn gradients_match_finite_differences() {
        // Linear in each input, so central differences are exact up to rounding.
        let g = geometry(2, 2, 3, [3, 5]);
        let tiling = Tiling::with_images(g, 1);
        let inputs = [
            spread(g.batch * g.image_len(), 4),
            spread(g.out_channels * g.patch(), 5),
            spread(g.out_channels, 6),
        ];
        let probe = spread(g.batch * g.output_len(), 7);
        let loss = |[x, w, b]: &[Vec<f32>; 3]| -> f64 {
            let out = forward(x, w, b, g, tiling);
            out.iter().zip(&probe).map(|(o, p)| f64::from(o * p)).sum()
        };
        let wanted = kernel::Wanted { x: true, weight: true };
        let grads = backward(&inputs[0], &inputs[1], &probe, g, wanted, tiling);
        // A large step: the loss is linear in each input, and rounding shrinks with the step.
        let step = 0.25f32;
        for (which, analytic) in [&grads.x, &grads.weight, &grads.bias].into_iter().enumerate() {
            for (k, value) in analytic.iter().enumerate() {
                let (mut up, mut down) = (inputs.clone(), inputs.clone());
                up[which][k] += step;
                down[which][k] -= step;
                let numeric = (loss(&up) - loss(&down)) / (2.0 * f64::from(step));
                assert!(
                    (f64::from(*value) - numeric).abs() < 1e-4,
                    "input {which}[{k}]: {value} vs {numeric}"
                );
            }
        }
    }

    #[test]
    fn a_centre_tap_kernel_copies_the_image() {
        // Only g[1][1] = 1: the output is the input, whatever the transforms do in between
        // (up to their rounding: G's thirds and fifteenths are not exact in binary).
        let g = geometry(1, 1, 1, [3, 4]);
        let x: Vec<f32> = (0..12).map(|k| k as f32).collect();
        let weight = [0.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 0.0];
        let expected: Vec<f32> = x.iter().map(|v| v + 0.5).collect();
        assert_close(&forward(&x, &weight, &[0.5], g, Tiling::of(g)), &expected, 1e-6, "copy");
    }

    /// Uniform in `[low, high)`, from a fixed xorshift stream.
    fn uniform(len: usize, seed: u64, [low, high]: [f32; 2]) -> Vec<f32> {
        let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
        (0..len)
            .map(|_| {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                low + (high - low) * (state >> 40) as f32 / (1u64 << 24) as f32
            })
            .collect()
    }

    /// The 3x3, padding-1 convolution and both gradients summed in f64: the exact values, up
    /// to f64 rounding.
    struct Exact {
        output: Vec<f32>,
        d_x: Vec<f32>,
        d_weight: Vec<f32>,
    }

    impl Exact {
        fn of(x: &[f32], weight: &[f32], bias: &[f32], grad: &[f32], g: Geometry) -> Self {
            let (h, w, c_in) = (g.height, g.width, g.in_channels);
            let mut output = vec![0.0f64; g.batch * g.output_len()];
            let mut d_x = vec![0.0f64; x.len()];
            let mut d_weight = vec![0.0f64; weight.len()];
            for n in 0..g.batch {
                for (o, kernels) in weight.chunks_exact(g.patch()).enumerate() {
                    for (y, x_at) in (0..h).flat_map(|y| (0..w).map(move |x_at| (y, x_at))) {
                        let at = ((n * g.out_channels + o) * h + y) * w + x_at;
                        let d_out = f64::from(grad[at]);
                        let mut sum = f64::from(bias[o]);
                        for (c, (i, j)) in
                            (0..c_in).flat_map(|c| (0..9).map(move |t| (c, (t / 3, t % 3))))
                        {
                            let (row, column) =
                                ((y + i).wrapping_sub(1), (x_at + j).wrapping_sub(1));
                            if row < h && column < w {
                                let pixel_at = ((n * c_in + c) * h + row) * w + column;
                                let tap = c * 9 + i * 3 + j;
                                let (pixel, tap_weight) =
                                    (f64::from(x[pixel_at]), f64::from(kernels[tap]));
                                sum += pixel * tap_weight;
                                d_x[pixel_at] += d_out * tap_weight;
                                d_weight[o * g.patch() + tap] += d_out * pixel;
                            }
                        }
                        output[at] = sum;
                    }
                }
            }
            let rounded = |values: Vec<f64>| values.into_iter().map(|v| v as f32).collect();
            Self { output: rounded(output), d_x: rounded(d_x), d_weight: rounded(d_weight) }
        }

        /// Forward and both gradients within `tolerance` of the exact values in the L2 norm.
        fn assert_matched_by(&self, ours: &[f32], gradients: &Gradients, tolerance: f64) {
            assert_relative_l2(ours, &self.output, tolerance, "output, exact");
            assert_relative_l2(&gradients.x, &self.d_x, tolerance, "d x, exact");
            assert_relative_l2(&gradients.weight, &self.d_weight, tolerance, "d weight, exact");
        }
    }

    /// A layer as VGG trains it, 256 channels into 128: rectified inputs, Kaiming-uniform
    /// weights. The widest sums and the largest transformed values, so the largest rounding.
    /// Against the direct kernel relative to the layer's scale, and element-wise against the
    /// exact convolution: F(4x4)'s rounding is 4-5 times the direct kernel's (5.5e-6 against
    /// 1.6e-6 of `1 + |y|` at worst here), within 1e-5 of each output on this layer; on the
    /// 16-channel `spread` case above, whose correlated inputs cancel, it reaches 1.1e-5 (the
    /// direct kernel 2.2e-6), which is why the comparisons there are norm-wise. The L2 check
    /// fails on a transform whose 1/3 is off by 1e-5 (0.33333): 1.9e-5 here.
    #[test]
    fn a_vgg_layer_matches_the_direct_and_the_exact_convolution() {
        let g = geometry(2, 256, 128, [8, 8]);
        let bound = (6.0 / g.patch() as f32).sqrt();
        let x = uniform(g.batch * g.image_len(), 1, [0.0, 1.0]);
        let weight = uniform(g.out_channels * g.patch(), 2, [-bound, bound]);
        let bias = uniform(g.out_channels, 3, [-0.1, 0.1]);
        let grad = uniform(g.batch * g.output_len(), 4, [-1.0, 1.0]);
        let tiling = Tiling::of(g);
        let output = forward(&x, &weight, &bias, g, tiling);
        let direct_output = kernel::forward(&x, &weight, &bias, g);
        assert_close_to_scale(&output, &direct_output, 1e-5, "output");
        let exact = Exact::of(&x, &weight, &bias, &grad, g);
        assert_close(&output, &exact.output, 1e-5, "output, exact");
        assert_close(&direct_output, &exact.output, 2e-6, "direct output, exact");
        let wanted = kernel::Wanted { x: true, weight: true };
        let ours = backward(&x, &weight, &grad, g, wanted, tiling);
        let direct = kernel::backward(&x, &weight, &grad, g, wanted);
        assert_close_to_scale(&ours.x, &direct.x, 1e-5, "d x");
        assert_close_to_scale(&ours.weight, &direct.weight, 1e-5, "d weight");
        exact.assert_matched_by(&output, &ours, 1e-5);
    }

    #[test]
    fn blocks_transpose_whole_and_cut() {
        let source: Vec<f32> = (0..20 * 24).map(|k| k as f32).collect();
        for [rows, cols] in [[16, 16], [16, 8], [5, 16], [3, 7], [1, 1]] {
            let mut target = vec![-1.0f32; 16 * 30];
            transpose_block(&source[2..], 24, [rows, cols], &mut target, 30);
            for j in 0..16 {
                for i in 0..30 {
                    let expected = if i < rows && j < cols { source[2 + i * 24 + j] } else { -1.0 };
                    assert_eq!(
                        target[j * 30 + i],
                        expected,
                        "{rows}x{cols} block, target ({j}, {i})"
                    );
                }
            }
        }
    }

    #[test]
    fn blocks_hold_a_mebibyte_or_one_image() {
        // VGG's layers: 64 channels at 32x32 one image a block (over the size), 128 at
        // 16x16 three, 256 at 8x8 seven.
        for (channels, size, images) in [(64, 32, 1), (128, 16, 3), (256, 8, 7)] {
            let g = geometry(64, channels, channels, [size, size]);
            assert_eq!(Tiling::of(g).images, images, "{channels} channels at {size}x{size}");
        }
    }
}
