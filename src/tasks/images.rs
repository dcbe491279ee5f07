//! Product images: a VGG-style net trained as a classifier whose penultimate layer is the
//! embedding used for similar-product search.
//!
//! - Training: mini-batches of the train split, augmented on the host (random crop with
//!   padding, horizontal flip) from the trainer's per-epoch generator; cross-entropy.
//! - Metrics on a split: loss, accuracy, macro-F1, and Recall@1/5/10 of retrieval within
//!   the split (each image queries the others by cosine of L2-normalised embeddings; a
//!   hit is a neighbour of the same class among the K nearest).
//! - `shopnet embed` streams a folder, CSV or IDX file through the net a batch at a time
//!   into an index ([`crate::embeddings`]); `shopnet similar` searches one.

use std::io::{BufWriter, IsTerminal, Write};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, anyhow, bail};
use burn::module::Module;
use burn::tensor::activation::{log_softmax, softmax};
use burn::tensor::{Device, Int, Tensor, TensorData};
use indicatif::{ProgressBar, ProgressStyle};

use super::{Family, TrainJob, TrainSummary};
use crate::config::{ConfigDoc, ModelKind, RunConfig};
use crate::data::Split;
use crate::data::images::{Catalog, ImageDataConfig, ImageSet, Preprocess};
use crate::embeddings::{self, EmbeddingIndex, IndexWriter};
use crate::metrics::{self, Metrics};
use crate::models::random::HostRng;
use crate::models::vgg::{self, Vgg, VggConfig, VggSpec};
use crate::run_dir::{self, Artifacts};
use crate::score::ClassScoreWriter;
use crate::train::Task;

/// Images per forward pass when evaluating, scoring and embedding.
const INFERENCE_BATCH: usize = 256;
/// The cut-offs of the retrieval metrics.
const RECALL_K: [usize; 3] = [1, 5, 10];

type ImageConfig = RunConfig<VggConfig, ImageDataConfig>;

pub struct ImageClassification {
    spec: VggSpec,
    data: ImageDataConfig,
    prep: Preprocess,
    set: ImageSet,
    batch_size: usize,
    /// Pretrained weights to start from (on the plain device), instead of a random init.
    start: Option<Vgg>,
}

impl ImageClassification {
    fn num_classes(&self) -> usize {
        self.set.label_names.len()
    }

    fn batch_tensor(&self, indices: &[u32], augment: Option<&mut HostRng>, device: &Device) -> Tensor<4> {
        let images: Vec<&[u8]> = indices.iter().map(|&i| self.set.image(i, &self.prep)).collect();
        let values = self.prep.batch(&images, augment.map(|rng| (&self.data.augment, rng)));
        let s = self.prep.size;
        Tensor::from_data(TensorData::new(values, [indices.len(), 3, s, s]), device)
    }

    /// Normalised embeddings `[n, D]` (row-major) and class probabilities `[n, C]` of `indices`.
    fn infer(&self, model: &Vgg, indices: &[u32]) -> (Vec<f32>, Vec<f32>) {
        let device = model_device(model);
        let mut embedded = Vec::new();
        let mut probabilities = Vec::new();
        for chunk in indices.chunks(INFERENCE_BATCH) {
            let (embedding, logits) = model.forward(self.batch_tensor(chunk, None, &device), None);
            embedded.extend(to_vec(embeddings::l2_normalize(embedding)));
            probabilities.extend(to_vec(softmax(logits, 1)));
        }
        (embedded, probabilities)
    }
}

fn model_device(model: &Vgg) -> Device {
    model.features[0].weight.val().device()
}

fn to_vec<const D: usize>(tensor: Tensor<D>) -> Vec<f32> {
    tensor.into_data().try_to_vec::<f32>().expect("f32 tensor")
}

impl Task for ImageClassification {
    type Model = Vgg;
    type Batch = Vec<u32>;

    fn kind(&self) -> ModelKind {
        ModelKind::Vgg
    }

    fn init_model(&self, seed: u64, device: &Device) -> Vgg {
        match &self.start {
            // Loaded tensors arrive without gradient tracking; a training device needs it back.
            Some(start) if device.is_autodiff() => start.clone().fork(device).set_require_grad(true).train(),
            Some(start) => start.clone().fork(device),
            None => Vgg::new(&self.spec, self.num_classes(), &mut HostRng::new(seed), device),
        }
    }

    fn batches_per_epoch(&self) -> usize {
        self.set.splits[&Split::Train].len().div_ceil(self.batch_size)
    }

    fn train_batches(&self, rng: &mut HostRng) -> Vec<Vec<u32>> {
        rng.shuffled_batches(self.set.splits[&Split::Train].clone(), self.batch_size)
    }

    fn train_loss(&self, model: &Vgg, batch: &Vec<u32>, rng: &mut HostRng) -> Tensor<1> {
        let device = model_device(model);
        let images = self.batch_tensor(batch, Some(rng), &device);
        let labels: Vec<i64> = batch.iter().map(|&i| self.set.labels[i as usize] as i64).collect();
        let labels = Tensor::<2, Int>::from_data(TensorData::new(labels, [batch.len(), 1]), &device);
        let (_, logits) = model.forward(images, Some(rng));
        log_softmax(logits, 1).gather(1, labels).mean().neg()
    }

    fn evaluate(&self, model: &Vgg, split: Split) -> Result<Metrics> {
        let indices = &self.set.splits[&split];
        if indices.is_empty() {
            bail!("the {split} split has no images (see data.test_fraction and data.val_fraction)");
        }
        let (embedded, probabilities) = self.infer(model, indices);
        let c = self.num_classes();
        let labels: Vec<u32> = indices.iter().map(|&i| self.set.labels[i as usize]).collect();
        let mut out = metrics::classification(&probabilities, &labels, c);
        let dim = embedded.len() / labels.len();
        let device = model_device(model);
        let index = Tensor::<2>::from_data(TensorData::new(embedded.clone(), [labels.len(), dim]), &device);
        let itself: Vec<usize> = (0..labels.len()).collect();
        let neighbours = embeddings::search(&index, &embedded, Some(&itself), RECALL_K[RECALL_K.len() - 1]);
        for k in RECALL_K {
            out.push(format!("recall@{k}"), embeddings::recall_at_k(&neighbours, &labels, &labels, k));
        }
        Ok(out)
    }
}

#[derive(Default)]
pub struct ImageFamily;

impl ImageFamily {
    fn config(doc: &ConfigDoc) -> Result<(ImageConfig, VggSpec)> {
        let config: ImageConfig = doc.typed()?;
        let spec = config.model.validate()?;
        config.data.validate()?;
        Ok((config, spec))
    }

    /// The trained net of a run, and how its inputs are prepared.
    fn restore(artifacts: &Artifacts, device: &Device) -> Result<(Vgg, ImageConfig, VggSpec, Preprocess)> {
        let (config, spec) = Self::config(&artifacts.config)?;
        let prep = Preprocess::new(&config.data, spec.input_size);
        let net = Vgg::new(&spec, artifacts.info.labels.len(), &mut HostRng::new(config.train.seed), device);
        let net = run_dir::load_weights(net, ModelKind::Vgg, &artifacts.weights)?;
        Ok((net, config, spec, prep))
    }

    fn task(config: &ImageConfig, spec: &VggSpec, known_labels: Option<&[String]>, device: &Device) -> Result<ImageClassification> {
        let prep = Preprocess::new(&config.data, spec.input_size);
        let set = ImageSet::load(&config.data, &prep, known_labels)?;
        let start = match &config.model.pretrained {
            Some(path) => {
                let net = Vgg::new(spec, set.label_names.len(), &mut HostRng::new(config.train.seed), device);
                let loaded = vgg::load_torchvision(net, Path::new(path)).context("model.pretrained")?;
                eprintln!(
                    "loaded {} tensors from {path}; {} keep their initial values{}",
                    loaded.loaded,
                    loaded.kept.len(),
                    if loaded.kept.is_empty() { String::new() } else { format!(" ({})", loaded.kept.join(", ")) }
                );
                Some(loaded.net)
            }
            None => None,
        };
        Ok(ImageClassification { spec: spec.clone(), data: config.data.clone(), prep, set, batch_size: config.train.batch_size.max(1), start })
    }
}

/// Streams `catalog` through `net` in batches, calling `visit(entries, embeddings, probabilities)`
/// per batch (embeddings L2-normalised, row-major); a progress bar on a terminal.
fn stream(
    catalog: &Catalog,
    net: &Vgg,
    prep: &Preprocess,
    skip_bad: bool,
    mut visit: impl FnMut(&[usize], &[f32], &[f32]) -> Result<()>,
) -> Result<usize> {
    let device = model_device(net);
    let total = catalog.entries.len();
    let bar = std::io::stderr().is_terminal().then(|| {
        let bar = ProgressBar::new(total as u64);
        bar.set_style(ProgressStyle::with_template("{bar:30} {pos}/{len} images [{elapsed} < {eta}]").expect("static template"));
        bar
    });
    let mut skipped = Vec::new();
    let all: Vec<usize> = (0..total).collect();
    for chunk in all.chunks(INFERENCE_BATCH) {
        let decoded = catalog.decode(chunk, prep, skip_bad)?;
        skipped.extend(decoded.skipped);
        if !decoded.images.is_empty() {
            let images: Vec<&[u8]> = decoded.images.iter().map(|(_, p)| p.as_slice()).collect();
            let s = prep.size;
            let batch = Tensor::<4>::from_data(TensorData::new(prep.batch(&images, None), [images.len(), 3, s, s]), &device);
            let (embedding, logits) = net.forward(batch, None);
            let rows: Vec<usize> = decoded.images.iter().map(|(i, _)| *i).collect();
            visit(&rows, &to_vec(embeddings::l2_normalize(embedding)), &to_vec(softmax(logits, 1)))?;
        }
        if let Some(bar) = &bar {
            bar.inc(chunk.len() as u64);
        }
    }
    if let Some(bar) = bar {
        bar.finish_and_clear();
    }
    if let Some(first) = skipped.first() {
        eprintln!("note: skipped {} images that do not decode (first: {first})", skipped.len());
    }
    Ok(total - skipped.len())
}

impl Family for ImageFamily {
    fn train(&self, job: TrainJob<'_>) -> Result<TrainSummary> {
        let (config, spec) = Self::config(job.config)?;
        let task = Self::task(&config, &spec, None, job.device)?;
        let sizes = |s: Split| task.set.splits[&s].len();
        eprintln!(
            "{} images in {} classes: {} train, {} validation, {} test",
            task.set.labels.len(),
            task.num_classes(),
            sizes(Split::Train),
            sizes(Split::Val),
            sizes(Split::Test)
        );
        let input = serde_json::json!({ "input_size": spec.input_size, "embedding_size": spec.embedding_size, "skipped_images": task.set.skipped });
        super::train_task(&job, &config, &task, task.set.label_names.clone(), input)
    }

    fn evaluate(&self, artifacts: &Artifacts, split: Split, device: &Device) -> Result<Metrics> {
        let (net, config, spec, _) = Self::restore(artifacts, device)?;
        let task = Self::task(&ImageConfig { model: VggConfig { pretrained: None, ..config.model.clone() }, ..config }, &spec, Some(&artifacts.info.labels), device)?;
        task.evaluate(&net, split)
    }

    fn score(&self, artifacts: &Artifacts, input: &str, output: &Path, device: &Device) -> Result<usize> {
        let (net, config, _, prep) = Self::restore(artifacts, device)?;
        let catalog = Catalog::open(input, &config.data.label_column, None)?;
        let labels = &artifacts.info.labels;
        let mut writer = ClassScoreWriter::create(output, "id", labels)?;
        stream(&catalog, &net, &prep, config.data.skip_bad_images, |rows, _, probabilities| {
            for (row, p) in rows.iter().zip(probabilities.chunks(labels.len())) {
                writer.write(&catalog.entries[*row].id, p)?;
            }
            Ok(())
        })?;
        writer.finish()
    }

    fn embed(&self, artifacts: &Artifacts, input: &str, output: &Path, device: &Device) -> Result<usize> {
        let (net, config, spec, prep) = Self::restore(artifacts, device)?;
        let catalog = Catalog::open(input, &config.data.label_column, None)?;
        let metadata = [
            (embeddings::META_KIND, ModelKind::Vgg.name().to_string()),
            (embeddings::META_RUN, artifacts.dir.display().to_string()),
            (embeddings::META_WEIGHTS, embeddings::fingerprint(&artifacts.weights)?),
        ];
        let mut writer = IndexWriter::create(output, catalog.entries.len(), spec.embedding_size, &metadata)?;
        stream(&catalog, &net, &prep, config.data.skip_bad_images, |rows, embedded, _| {
            let ids: Vec<(&str, Option<&str>)> = rows.iter().map(|&r| (catalog.entries[r].id.as_str(), catalog.entries[r].label.as_deref())).collect();
            writer.append(&ids, embedded)
        })?;
        writer.finish()
    }

    fn schema(&self, artifacts: &Artifacts) -> serde_json::Value {
        serde_json::json!({
            "input": {
                "format": "a folder of images (optionally one sub-folder per class), a CSV with a path column, or an IDX image file; PNG, JPEG or WebP",
                "sizes": artifacts.info.input,
            },
            "output": ClassScoreWriter::columns("id", &artifacts.info.labels),
        })
    }
}

/// What `shopnet similar` was asked.
pub struct SimilarJob<'a> {
    pub index: &'a Path,
    /// Image paths or index ids.
    pub queries: Vec<String>,
    pub k: usize,
    /// The run that embeds query images; by default the one that built the index.
    pub run: Option<&'a Path>,
    pub output: Option<&'a Path>,
    pub device_flag: Option<&'a str>,
}

/// Answers each query with its `k` most similar index items. A query that names an id
/// in the index uses that row (and never returns it); any other query must be an image
/// file, embedded with the model that built the index. Writes `query,rank,id,label,score`;
/// returns the row count and the seconds the search itself took.
pub fn similar(job: SimilarJob<'_>) -> Result<(usize, f64)> {
    let index = EmbeddingIndex::load(job.index)?;
    let built_by = index.metadata.get(embeddings::META_RUN).cloned().unwrap_or_default();
    let by_id = index.rows_by_id();
    let mut rows: Vec<Option<usize>> = job.queries.iter().map(|q| by_id.get(q.as_str()).copied()).collect();
    let images: Vec<usize> = rows.iter().enumerate().filter(|(_, r)| r.is_none()).map(|(i, _)| i).collect();
    let mut vectors = vec![0.0f32; job.queries.len() * index.dim];
    let mut device = None;
    if !images.is_empty() {
        let run_dir = job.run.map(Path::to_path_buf).unwrap_or_else(|| PathBuf::from(&built_by));
        let artifacts = Artifacts::open(&run_dir).with_context(|| format!("{}: the model that embeds query images", run_dir.display()))?;
        let stored = index.metadata.get(embeddings::META_WEIGHTS).cloned().unwrap_or_default();
        if artifacts.info.kind != ModelKind::Vgg || embeddings::fingerprint(&artifacts.weights)? != stored {
            bail!(
                "{}: the index was built by another model ({built_by}) than {}; embed the catalogue again with shopnet embed --run {}",
                job.index.display(),
                run_dir.display(),
                run_dir.display()
            );
        }
        let opened = crate::cli::open_device(job.device_flag, &artifacts.config)?;
        let (net, _, _, prep) = ImageFamily::restore(&artifacts, &opened)?;
        for &q in &images {
            let query = &job.queries[q];
            if !Path::new(query).is_file() {
                bail!("{query}: neither an id in {} nor an image file", job.index.display());
            }
        }
        let files: Vec<String> = images.iter().map(|&q| job.queries[q].clone()).collect();
        for (chunk_start, chunk) in files.chunks(INFERENCE_BATCH).enumerate().map(|(i, c)| (i * INFERENCE_BATCH, c)) {
            let mut pixels = Vec::with_capacity(chunk.len());
            for file in chunk {
                let catalog = Catalog::open(file, "label", None)?;
                let decoded = catalog.decode(&[0], &prep, false)?;
                pixels.push(decoded.images.into_iter().next().map(|(_, p)| p).ok_or_else(|| anyhow!("{file}: cannot decode"))?);
            }
            let views: Vec<&[u8]> = pixels.iter().map(Vec::as_slice).collect();
            let s = prep.size;
            let batch = Tensor::<4>::from_data(TensorData::new(prep.batch(&views, None), [views.len(), 3, s, s]), &opened);
            let embedded = to_vec(embeddings::l2_normalize(net.forward(batch, None).0));
            if embedded.len() != chunk.len() * index.dim {
                bail!("{}: the index holds {}-wide embeddings, the model makes {}-wide ones", job.index.display(), index.dim, embedded.len() / chunk.len());
            }
            for (j, row) in embedded.chunks(index.dim).enumerate() {
                let q = images[chunk_start + j];
                vectors[q * index.dim..(q + 1) * index.dim].copy_from_slice(row);
            }
        }
        device = Some(opened);
    }
    for (q, row) in rows.iter_mut().enumerate() {
        if let Some(r) = row {
            vectors[q * index.dim..(q + 1) * index.dim].copy_from_slice(&index.values[*r * index.dim..(*r + 1) * index.dim]);
        }
    }
    let device = match device {
        Some(d) => d,
        None => crate::backend::open(&crate::backend::DeviceSpec::parse(job.device_flag.unwrap_or("cpu"))?)?,
    };
    // An id query skips its own row; an image query has none (usize::MAX never matches).
    let exclude: Vec<usize> = rows.iter().map(|r| r.unwrap_or(usize::MAX)).collect();
    let started = std::time::Instant::now();
    let neighbours = embeddings::search(&index.tensor(&device), &vectors, Some(&exclude), job.k);
    let search_seconds = started.elapsed().as_secs_f64();

    let sink: Box<dyn Write> = match job.output {
        Some(path) => Box::new(BufWriter::new(std::fs::File::create(path).with_context(|| format!("{}: cannot create", path.display()))?)),
        None => Box::new(std::io::stdout().lock()),
    };
    let mut writer = csv::Writer::from_writer(sink);
    writer.write_record(["query", "rank", "id", "label", "score"])?;
    let mut written = 0;
    for (query, found) in job.queries.iter().zip(&neighbours) {
        for (rank, &(row, score)) in found.iter().enumerate() {
            let row = row as usize;
            writer.write_record([query.as_str(), &(rank + 1).to_string(), &index.ids[row], &index.labels[row], &format!("{score:.6}")])?;
            written += 1;
        }
    }
    writer.flush()?;
    Ok((written, search_seconds))
}
