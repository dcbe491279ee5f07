//! Product images: a VGG-style net trained as a classifier whose penultimate layer is the
//! embedding used for similar-product search.
//!
//! - Training: mini-batches of the train split, augmented on the host (random crop with
//!   padding, horizontal flip) from the trainer's per-epoch generator; cross-entropy.
//! - Metrics on a split: loss, accuracy, macro-F1, and Recall@1/5/10 of retrieval within
//!   the split (each image queries the others by cosine of L2-normalised embeddings; a
//!   hit is a neighbour of the same class among the K nearest).
//! - `shopnet embed` streams a folder, CSV or IDX file through the net a batch at a time
//!   into an index ([`crate::artifacts::embeddings`]); `shopnet similar` searches one.

use std::path::Path;

use anyhow::{Context, Result, anyhow, bail};
use burn::tensor::activation::softmax;
use burn::tensor::{Device, Tensor, TensorData};
use serde::{Deserialize, Serialize};

use super::driver;
use super::family::{BatchJob, Config, Embed, Family, Prepared, Trained};
use super::online::{self, Datatype, Online, Request, Served, Signature, TensorSpec, Values};
use crate::artifacts::embeddings::{self, IndexWriter, l2_normalize};
use crate::artifacts::findings::{
    self, EmbeddingMap, Example, Findings, Neighbours, Outcome, Shown,
};
use crate::artifacts::scores::ClassScoreWriter;
use crate::base::config::ModelKind;
use crate::base::files::sha256_file;
use crate::base::metrics::{self, Metrics};
use crate::base::progress::Progress;
use crate::base::projection::pca_2d;
use crate::base::rng::HostRng;
use crate::base::split::Split;
use crate::base::tensor::{fork_pretrained, label_column, smoothed_cross_entropy, to_host};
use crate::data::images::{
    Catalog, ImageDataConfig, ImageSet, Preprocess, decode_bytes, png_data_uri,
};
use crate::models::vgg::{self, Vgg, VggConfig, VggSpec};
use crate::train::Task;
use crate::train::step::split_examples;

/// Images per forward pass when evaluating, scoring and embedding.
const INFERENCE_BATCH: usize = 256;
/// The cut-offs of the retrieval metrics.
const RECALL_K: [usize; 3] = [1, 5, 10];

pub struct ImageClassification {
    spec: VggSpec,
    data: ImageDataConfig,
    prep: Preprocess,
    set: ImageSet,
    batch_size: usize,
    label_smoothing: f64,
    /// Pretrained weights to start from (on the plain device), instead of a random init.
    start: Option<Vgg>,
}

impl ImageClassification {
    fn num_classes(&self) -> usize {
        self.set.label_names.len()
    }

    fn batch_tensor(
        &self,
        indices: &[u32],
        augment: Option<&mut HostRng>,
        device: &Device,
    ) -> Tensor<4> {
        let images: Vec<&[u8]> = indices.iter().map(|&i| self.set.image(i, &self.prep)).collect();
        let values = self.prep.batch(&images, augment.map(|rng| (&self.data.augment, rng)));
        let s = self.prep.size;
        Tensor::from_data(TensorData::new(values, [indices.len(), 3, s, s]), device)
    }

    /// Normalised embeddings `[n, D]` (row-major) and class probabilities `[n, C]` of `indices`.
    fn infer(&self, model: &Vgg, indices: &[u32]) -> Result<(Vec<f32>, Vec<f32>)> {
        let device = model_device(model);
        let mut embedded = Vec::new();
        let mut probabilities = Vec::new();
        for chunk in indices.chunks(INFERENCE_BATCH) {
            let (embedding, logits) = model.forward(self.batch_tensor(chunk, None, &device), None);
            embedded.extend(to_host(l2_normalize(embedding))?);
            probabilities.extend(to_host(softmax(logits, 1))?);
        }
        Ok((embedded, probabilities))
    }
}

fn model_device(model: &Vgg) -> Device {
    model.features[0].weight.val().device()
}

impl Task for ImageClassification {
    type Model = Vgg;
    type Batch = Vec<u32>;

    fn kind(&self) -> ModelKind {
        ModelKind::Vgg
    }

    fn init_model(&self, seed: u64, device: &Device) -> Result<Vgg> {
        Ok(match &self.start {
            Some(start) => fork_pretrained(start, device),
            None => Vgg::new(&self.spec, self.num_classes(), &mut HostRng::new(seed), device),
        })
    }

    fn split_batch(&self, batch: &Vec<u32>, parts: usize) -> Option<Vec<(Vec<u32>, f64)>> {
        Some(split_examples(batch, parts))
    }

    fn batches_per_epoch(&self) -> usize {
        self.set.splits.train.len().div_ceil(self.batch_size)
    }

    fn train_batches(&self, rng: &mut HostRng) -> Result<Vec<Vec<u32>>> {
        Ok(rng.shuffled_batches(self.set.splits.train.clone(), self.batch_size))
    }

    fn train_loss(&self, model: &Vgg, batch: &Vec<u32>, rng: &mut HostRng) -> Result<Tensor<1>> {
        let device = model_device(model);
        let images = self.batch_tensor(batch, Some(rng), &device);
        let labels = label_column(batch.iter().map(|&i| self.set.labels[i as usize]), &device);
        let (_, logits) = model.forward(images, Some(rng));
        Ok(smoothed_cross_entropy(logits, labels, self.label_smoothing))
    }

    fn evaluate(&self, model: &Vgg, split: Split) -> Result<Metrics> {
        let outputs = self.split_outputs(model, split)?;
        let mut out =
            metrics::classification(&outputs.probabilities, &outputs.labels, self.num_classes());
        out.extend(outputs.retrieval_metrics());
        Ok(out)
    }

    fn findings(&self, model: &Vgg, split: Split) -> Result<Findings> {
        let outputs = self.split_outputs(model, split)?;
        let indices = outputs.indices;
        let (mut metrics, mut outcome) = findings::classifier(
            &outputs.probabilities,
            &outputs.labels,
            self.num_classes(),
            |row| self.shown(indices[row]),
        )?;
        metrics.extend(outputs.retrieval_metrics());
        outcome.embedding = Some(self.embedding_map(&outputs)?);
        Ok(Findings { split, metrics, outcome: Outcome::Classes(outcome) })
    }
}

/// A split run through the net: what its metrics and findings are read from.
struct SplitOutputs<'a> {
    indices: &'a [u32],
    labels: Vec<u32>,
    /// L2-normalised, `[n, D]` row-major.
    embedded: Vec<f32>,
    probabilities: Vec<f32>,
    /// Each image's nearest others in the split, best first.
    neighbours: Vec<Vec<(u32, f32)>>,
}

impl SplitOutputs<'_> {
    fn retrieval_metrics(&self) -> Metrics {
        let mut out = Metrics::default();
        for k in RECALL_K {
            out.push(
                format!("recall@{k}"),
                embeddings::recall_at_k(&self.neighbours, &self.labels, &self.labels, k),
            );
        }
        out
    }
}

impl ImageClassification {
    fn split_outputs<'a>(&'a self, model: &Vgg, split: Split) -> Result<SplitOutputs<'a>> {
        let indices = self.set.splits.get(split);
        if indices.is_empty() {
            bail!("the {split} split has no images (see data.test_fraction and data.val_fraction)");
        }
        let (embedded, probabilities) = self.infer(model, indices)?;
        let labels: Vec<u32> = indices.iter().map(|&i| self.set.labels[i as usize]).collect();
        let dim = embedded.len() / labels.len();
        let index = Tensor::<2>::from_data(
            TensorData::new(embedded.clone(), [labels.len(), dim]),
            &model_device(model),
        );
        let itself: Vec<usize> = (0..labels.len()).collect();
        let deepest = RECALL_K[RECALL_K.len() - 1].max(findings::NEIGHBOURS_SHOWN);
        let neighbours = embeddings::search(&index, &embedded, Some(&itself), deepest)?;
        Ok(SplitOutputs { indices, labels, embedded, probabilities, neighbours })
    }

    /// An image as a report shows it: its id and a thumbnail.
    fn shown(&self, index: u32) -> Result<Shown> {
        let mut shown = Shown::id(&self.set.ids[index as usize]);
        shown.image = Some(png_data_uri(self.set.image(index, &self.prep), self.prep.size)?);
        Ok(shown)
    }

    /// The split's embeddings projected to 2-D, and a few queries spread over the split
    /// with their nearest neighbours.
    fn embedding_map(&self, outputs: &SplitOutputs<'_>) -> Result<EmbeddingMap> {
        let n = outputs.labels.len();
        let drawn = n.min(findings::PROJECTED_POINTS);
        let dim = outputs.embedded.len() / n;
        let (points, explained) = pca_2d(&outputs.embedded[..drawn * dim], dim);
        let queries = n.min(findings::NEIGHBOUR_QUERIES);
        let neighbours = (0..queries)
            .map(|q| {
                let row = q * n / queries;
                let example = |row: usize, score: f32| -> Result<Example> {
                    let shown = self.shown(outputs.indices[row])?;
                    Ok(Example {
                        id: shown.id,
                        truth: outputs.labels[row],
                        predicted: outputs.labels[row],
                        score,
                        text: None,
                        image: shown.image,
                    })
                };
                let found = outputs.neighbours[row]
                    .iter()
                    .take(findings::NEIGHBOURS_SHOWN)
                    .map(|&(other, score)| example(other as usize, score))
                    .collect::<Result<_>>()?;
                Ok(Neighbours { query: example(row, 1.0)?, found })
            })
            .collect::<Result<_>>()?;
        Ok(EmbeddingMap {
            points,
            classes: outputs.labels[..drawn].to_vec(),
            explained,
            neighbours,
        })
    }
}

pub struct ImageFamily;

/// What `run.json` keeps: the input side and the embedding width.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ImageInput {
    pub input_size: usize,
    pub embedding_size: usize,
    pub skipped_images: usize,
}

impl ImageFamily {
    /// The task over `config`'s images; `known_labels` fixes a trained model's classes.
    fn task(
        config: &Config<Self>,
        known_labels: Option<&[String]>,
        device: &Device,
    ) -> Result<ImageClassification> {
        let spec = config.model.validate()?;
        let prep = Preprocess::new(&config.data, spec.input_size);
        let set = ImageSet::load(&config.data, &prep, known_labels)?;
        let start = match &config.model.pretrained {
            Some(path) => Some(Self::pretrained(
                &spec,
                set.label_names.len(),
                config.train.seed,
                path,
                device,
            )?),
            None => None,
        };
        let data = config.data.clone();
        Ok(ImageClassification {
            spec,
            data,
            prep,
            set,
            batch_size: config.train.batch_size,
            label_smoothing: config.train.label_smoothing,
            start,
        })
    }

    fn pretrained(
        spec: &VggSpec,
        classes: usize,
        seed: u64,
        path: &str,
        device: &Device,
    ) -> Result<Vgg> {
        let net = Vgg::new(spec, classes, &mut HostRng::new(seed), device);
        let loaded = vgg::load_torchvision(net, Path::new(path)).context("model.pretrained")?;
        let kept = if loaded.kept.is_empty() {
            String::new()
        } else {
            format!(" ({})", loaded.kept.join(", "))
        };
        eprintln!(
            "loaded {} tensors from {path}; {} keep their initial values{kept}",
            loaded.loaded,
            loaded.kept.len()
        );
        Ok(loaded.net)
    }

    /// The images of a job's input that belong to its shard.
    fn catalog(trained: &Trained<Self>, job: &BatchJob<'_>) -> Result<Catalog> {
        let mut catalog = Catalog::open(job.input, &trained.config.data.label_column, None)?;
        catalog.entries.retain(|entry| job.shard.holds(&entry.id));
        Ok(catalog)
    }

    fn preprocess(trained: &Trained<Self>) -> Preprocess {
        Preprocess::new(&trained.config.data, trained.input.input_size)
    }

    /// Streams `catalog` through `net` in batches, calling `visit(entries, embeddings,
    /// probabilities)` per batch (embeddings L2-normalised, row-major).
    fn stream(
        trained: &Trained<Self>,
        catalog: &Catalog,
        net: &Vgg,
        mut visit: impl FnMut(&[usize], &[f32], &[f32]) -> Result<()>,
    ) -> Result<usize> {
        let prep = Self::preprocess(trained);
        let total = catalog.entries.len();
        let progress = Progress::new(Some(total as u64), 0, "images");
        let mut skipped = Vec::new();
        let all: Vec<usize> = (0..total).collect();
        for chunk in all.chunks(INFERENCE_BATCH) {
            let decoded = catalog.decode(chunk, &prep, trained.config.data.skip_bad_images)?;
            skipped.extend(decoded.skipped);
            if !decoded.images.is_empty() {
                let images: Vec<&[u8]> = decoded.images.iter().map(|(_, p)| p.as_slice()).collect();
                let (embedded, probabilities) = embed_batch(net, &prep, &images)?;
                let rows: Vec<usize> = decoded.images.iter().map(|(i, _)| *i).collect();
                visit(&rows, &embedded, &probabilities)?;
            }
            progress.advance(chunk.len() as u64, None);
        }
        progress.finish();
        if let Some(first) = skipped.first() {
            eprintln!("note: skipped {} images that do not decode (first: {first})", skipped.len());
        }
        Ok(total - skipped.len())
    }
}

/// L2-normalised embeddings and class probabilities of decoded images.
fn embed_batch(net: &Vgg, prep: &Preprocess, images: &[&[u8]]) -> Result<(Vec<f32>, Vec<f32>)> {
    let s = prep.size;
    let batch = Tensor::<4>::from_data(
        TensorData::new(prep.batch(images, None), [images.len(), 3, s, s]),
        &model_device(net),
    );
    let (embedding, logits) = net.forward(batch, None);
    Ok((to_host(l2_normalize(embedding))?, to_host(softmax(logits, 1))?))
}

/// The largest encoded image a request may hold.
const MAX_IMAGE_BYTES: usize = 16 << 20;

/// The trained net answering `image` requests (encoded PNG, JPEG or WebP bytes).
struct OnlineImages {
    signature: Signature,
    net: Vgg,
    prep: Preprocess,
    labels: Vec<String>,
}

impl Online for OnlineImages {
    /// The image's preprocessed pixels, as `score` lays out a decoded file.
    type Example = Vec<u8>;

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn parse(&self, request: &Request) -> std::result::Result<Vec<Vec<u8>>, String> {
        online::byte_strings(request.input("image"), MAX_IMAGE_BYTES)?
            .into_iter()
            .enumerate()
            .map(|(at, bytes)| {
                decode_bytes(bytes)
                    .map(|image| self.prep.pixels(image))
                    .map_err(|err| format!("input \"image\"[{at}]: not a decodable image ({err})"))
            })
            .collect()
    }

    fn predict(&self, examples: &[Vec<u8>]) -> Result<Vec<Vec<Values>>> {
        let mut out = Vec::with_capacity(examples.len());
        for chunk in examples.chunks(INFERENCE_BATCH) {
            let views: Vec<&[u8]> = chunk.iter().map(Vec::as_slice).collect();
            let (embedded, probabilities) = embed_batch(&self.net, &self.prep, &views)?;
            let width = embedded.len() / chunk.len();
            for (p, e) in probabilities.chunks(self.labels.len()).zip(embedded.chunks(width)) {
                let mut prediction = online::class_prediction(p, &self.labels);
                prediction.push(Values::Fp32(e.to_vec()));
                out.push(prediction);
            }
        }
        Ok(out)
    }

    fn warmup_example(&self) -> Vec<u8> {
        vec![0; self.prep.image_len()]
    }
}

impl Family for ImageFamily {
    const KIND: ModelKind = ModelKind::Vgg;
    type Model = VggConfig;
    type Data = ImageDataConfig;
    type Input = ImageInput;
    type Task = ImageClassification;

    fn validate(config: &Config<Self>) -> Result<()> {
        config.model.validate()?;
        config.data.validate()
    }

    fn metric_names(_config: &Config<Self>) -> Vec<String> {
        let retrieval = RECALL_K.map(|k| format!("recall@{k}"));
        metrics::CLASSIFICATION.map(String::from).into_iter().chain(retrieval).collect()
    }

    fn prepare(
        config: &Config<Self>,
        device: &Device,
        _resume_from: Option<&Path>,
    ) -> Result<Prepared<Self>> {
        let task = Self::task(config, None, device)?;
        let splits = &task.set.splits;
        eprintln!(
            "{} images in {} classes: {} train, {} validation, {} test",
            task.set.labels.len(),
            task.num_classes(),
            splits.train.len(),
            splits.val.len(),
            splits.test.len()
        );
        let input = ImageInput {
            input_size: task.spec.input_size,
            embedding_size: task.spec.embedding_size,
            skipped_images: task.set.skipped,
        };
        Ok(Prepared { labels: task.set.label_names.clone(), task, input, run_files: Vec::new() })
    }

    fn net(trained: &Trained<Self>, device: &Device) -> Result<Vgg> {
        let spec = trained.config.model.validate()?;
        Ok(Vgg::new(
            &spec,
            trained.labels().len(),
            &mut HostRng::new(trained.config.train.seed),
            device,
        ))
    }

    fn restore(trained: &Trained<Self>, device: &Device) -> Result<ImageClassification> {
        let mut config = trained.config.clone();
        // The trained weights replace the start: no need to read the pretrained file again.
        config.model.settings.pretrained = None;
        Self::task(&config, Some(trained.labels()), device)
    }

    fn score(trained: &Trained<Self>, job: &BatchJob<'_>, device: &Device) -> Result<usize> {
        let net = driver::load_net(trained, device)?;
        let catalog = Self::catalog(trained, job)?;
        let labels = trained.labels();
        let mut writer = ClassScoreWriter::create(job.output, "id", labels)?;
        Self::stream(trained, &catalog, &net, |rows, _, probabilities| {
            for (row, p) in rows.iter().zip(probabilities.chunks(labels.len())) {
                writer.write(&catalog.entries[*row].id, p)?;
            }
            Ok(())
        })?;
        writer.finish()
    }

    fn schema(trained: &Trained<Self>) -> serde_json::Value {
        serde_json::json!({
            "input": {
                "format": "a folder of images (optionally one sub-folder per class), a CSV with a path column, or an IDX image file; PNG, JPEG or WebP",
                "sizes": trained.input,
            },
            "output": ClassScoreWriter::columns("id", trained.labels()),
        })
    }

    fn online(trained: Trained<Self>, device: &Device) -> Result<Box<dyn Served>> {
        let labels = trained.labels().to_vec();
        let mut outputs = online::class_outputs(labels.len());
        let width = trained.input.embedding_size as i64;
        outputs.push(TensorSpec::new("embedding", Datatype::Fp32, &[-1, width]));
        let signature = Signature {
            inputs: vec![TensorSpec::new("image", Datatype::Bytes, &[-1])],
            outputs,
            parameters: Vec::new(),
        };
        Ok(Box::new(OnlineImages {
            signature,
            net: driver::load_net(&trained, device)?,
            prep: Self::preprocess(&trained),
            labels,
        }))
    }
}

impl Embed for ImageFamily {
    fn embed(trained: &Trained<Self>, job: &BatchJob<'_>, device: &Device) -> Result<usize> {
        let net = driver::load_net(trained, device)?;
        let catalog = Self::catalog(trained, job)?;
        let artifacts = &trained.artifacts;
        let metadata = [
            (embeddings::META_KIND, ModelKind::Vgg.to_string()),
            (embeddings::META_RUN, artifacts.dir.display().to_string()),
            (embeddings::META_WEIGHTS, sha256_file(&artifacts.weights)?),
        ];
        let mut writer = IndexWriter::create(
            job.output,
            catalog.entries.len(),
            trained.input.embedding_size,
            &metadata,
        )?;
        Self::stream(trained, &catalog, &net, |rows, embedded, _| {
            let ids: Vec<(&str, Option<&str>)> = rows
                .iter()
                .map(|&r| (catalog.entries[r].id.as_str(), catalog.entries[r].label.as_deref()))
                .collect();
            writer.append(&ids, embedded)
        })?;
        writer.finish()
    }

    fn embed_files(trained: &Trained<Self>, files: &[String], device: &Device) -> Result<Vec<f32>> {
        let net = driver::load_net(trained, device)?;
        let prep = Self::preprocess(trained);
        let mut out = Vec::with_capacity(files.len() * trained.input.embedding_size);
        for chunk in files.chunks(INFERENCE_BATCH) {
            let mut pixels = Vec::with_capacity(chunk.len());
            for file in chunk {
                let decoded = Catalog::open(file, "label", None)?.decode(&[0], &prep, false)?;
                pixels.push(
                    decoded
                        .images
                        .into_iter()
                        .next()
                        .map(|(_, p)| p)
                        .ok_or_else(|| anyhow!("{file}: cannot decode"))?,
                );
            }
            let views: Vec<&[u8]> = pixels.iter().map(Vec::as_slice).collect();
            out.extend(embed_batch(&net, &prep, &views)?.0);
        }
        Ok(out)
    }
}
