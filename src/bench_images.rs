//! `shopnet bench-vgg`: the reference image workload (one training epoch over generated
//! 3 x 32 x 32 images, then inference over the same images), timed the way `shopnet
//! train` runs it: host-built batches, forward, backward, Adam step, loss read back.
//! `scripts/vgg_torch.py` times the same net in PyTorch for the ratio.

use std::time::Instant;

use burn::module::Module;
use burn::optim::GradientsParams;
use burn::tensor::activation::log_softmax;
use burn::tensor::{Device, Int, Tensor, TensorData};
use rand::RngExt;

use crate::config::TrainConfig;
use crate::models::random::HostRng;
use crate::models::vgg::{Vgg, VggConfig};
use crate::train::optim;

pub struct VggBench {
    pub images: usize,
    pub train_batch: usize,
    pub infer_batch: usize,
    pub classes: usize,
}

pub struct VggTimes {
    pub train_s: f64,
    pub infer_s: f64,
}

/// Times one epoch of training and one pass of inference of the reference net.
pub fn time_vgg(bench: &VggBench, device: &Device) -> VggTimes {
    let spec = VggConfig::default().spec();
    let side = spec.input_size;
    let per_image = 3 * side * side;
    let mut rng = HostRng::new(0);
    let pixels: Vec<f32> = (0..bench.images * per_image).map(|_| rng.inner().random_range(-1.0..1.0)).collect();
    let labels: Vec<i64> = (0..bench.images).map(|_| rng.inner().random_range(0..bench.classes as i64)).collect();
    let batch = |device: &Device, start: usize, len: usize| {
        let x = Tensor::<4>::from_data(TensorData::new(pixels[start * per_image..(start + len) * per_image].to_vec(), [len, 3, side, side]), device);
        let y = Tensor::<2, Int>::from_data(TensorData::new(labels[start..start + len].to_vec(), [len, 1]), device);
        (x, y)
    };

    let train_device = device.clone().autodiff();
    let mut model = Vgg::new(&spec, bench.classes, &mut HostRng::new(0), &train_device);
    let config = TrainConfig::default();
    let mut optimizer = optim::build(&config);
    let started = Instant::now();
    for start in (0..bench.images).step_by(bench.train_batch) {
        let len = bench.train_batch.min(bench.images - start);
        let (x, y) = batch(&train_device, start, len);
        let (_, logits) = model.forward(x, None);
        let loss = log_softmax(logits, 1).gather(1, y).mean().neg();
        let _: f32 = loss.clone().into_scalar();
        let grads = GradientsParams::from_grads(loss.backward(), &model);
        model = optimizer.step(config.lr, model, grads);
    }
    let _ = device.sync();
    let train_s = started.elapsed().as_secs_f64();

    let model = model.valid();
    let started = Instant::now();
    for start in (0..bench.images).step_by(bench.infer_batch) {
        let len = bench.infer_batch.min(bench.images - start);
        let (x, _) = batch(device, start, len);
        let (embedding, _) = model.forward(x, None);
        let _ = embedding.into_data();
    }
    VggTimes { train_s, infer_s: started.elapsed().as_secs_f64() }
}
