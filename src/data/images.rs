//! Image input: a folder with one sub-folder per class, a CSV of `path,label`, or IDX
//! files (the MNIST / Fashion-MNIST format).
//!
//! Listing ([`Catalog::open`]) only stats files, so errors name the CSV line or folder
//! before any decoding starts. Decoding runs on rayon's threads, a batch of files at a
//! time ([`Catalog::decode`]), so a caller that streams (`shopnet embed`) holds one batch
//! of pixels at once. An image becomes `3 x S x S` bytes: converted to RGB (grayscale is
//! repeated to 3 channels), its shorter side resized to `resize` (bilinear), centre-cropped
//! to `S`. Normalisation and training augmentation happen when a batch tensor is built.

use std::collections::{BTreeSet, HashMap};
use std::fs::File;
use std::io::Read;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, anyhow, bail};
use image::imageops::{self, FilterType};
use image::{DynamicImage, GrayImage, RgbImage};
use rand::RngExt;
use rand::SeedableRng;
use rand::seq::SliceRandom;
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;
use serde::{Deserialize, Serialize};
use zune_png::PngDecoder;
use zune_png::zune_core::bytestream::ZCursor;
use zune_png::zune_core::colorspace::ColorSpace;
use zune_png::zune_core::options::DecoderOptions;

use super::records::CsvSource;
use crate::base::config::check_fraction;
use crate::base::rng::HostRng;
use crate::base::split::Splits;

/// `[data]` for image models.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ImageDataConfig {
    /// A folder with one sub-folder per class, a `.csv` file with a `path` column (paths
    /// relative to the CSV's folder), or an IDX image file (`*-images-idx3-ubyte`).
    pub source: String,
    /// IDX only: the labels file; by default the source's name with `images-idx3`
    /// replaced by `labels-idx1`, when that file exists.
    pub labels: Option<String>,
    /// CSV only: the column holding the class (`label`, or e.g. `class_name`).
    pub label_column: String,
    /// Shorter side after resizing, before the centre crop to `model.input_size`;
    /// unset: the input size itself (the whole image, squashed to a square only if it is not one).
    pub resize: Option<usize>,
    /// Per-channel mean and standard deviation of pixel values in [0, 1] (RGB order).
    pub mean: [f32; 3],
    pub std: [f32; 3],
    pub augment: AugmentConfig,
    /// Skip files that do not decode (counted and reported) instead of stopping with an error.
    pub skip_bad_images: bool,
    /// The seeded stratified split: per class, `test_fraction` of the images form the
    /// test split, then `val_fraction` of the rest the validation split, the others train.
    pub test_fraction: f64,
    pub val_fraction: f64,
    pub split_seed: u64,
}

impl Default for ImageDataConfig {
    fn default() -> Self {
        Self {
            source: String::new(),
            labels: None,
            label_column: "label".into(),
            resize: None,
            mean: [0.485, 0.456, 0.406],
            std: [0.229, 0.224, 0.225],
            augment: AugmentConfig::default(),
            skip_bad_images: false,
            test_fraction: 0.2,
            val_fraction: 0.1,
            split_seed: 0,
        }
    }
}

/// Training-time augmentation, drawn from the trainer's per-epoch generator.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AugmentConfig {
    /// Random crop: pad each side by this many black pixels, then crop back to the input size at a random offset.
    pub crop_padding: usize,
    /// Mirror left-right with probability 1/2.
    pub horizontal_flip: bool,
}

impl ImageDataConfig {
    pub fn validate(&self) -> Result<()> {
        if self.source.is_empty() {
            bail!(
                "data.source: missing (a class folder, a CSV of path,label, or an IDX image file)"
            );
        }
        if self.std.iter().any(|&s| s.is_nan() || s <= 0.0) {
            bail!("data.std: every value must be above 0, got {:?}", self.std);
        }
        check_fraction("data.test_fraction", self.test_fraction)?;
        check_fraction("data.val_fraction", self.val_fraction)?;
        if let Some(resize) = self.resize
            && !(1..=4096).contains(&resize)
        {
            bail!("data.resize: must be in [1, 4096], got {resize}");
        }
        if self.mean.iter().any(|m| !m.is_finite()) {
            bail!("data.mean: every value must be a finite number, got {:?}", self.mean);
        }
        if self.augment.crop_padding > 1024 {
            bail!(
                "data.augment.crop_padding: at most 1024 pixels, got {}",
                self.augment.crop_padding
            );
        }
        Ok(())
    }
}

/// How a decoded image becomes the net's input.
#[derive(Debug, Clone)]
pub struct Preprocess {
    pub size: usize,
    pub resize: usize,
    pub mean: [f32; 3],
    pub std: [f32; 3],
}

impl Preprocess {
    pub fn new(config: &ImageDataConfig, input_size: usize) -> Self {
        Self {
            size: input_size,
            resize: config.resize.unwrap_or(input_size).max(input_size),
            mean: config.mean,
            std: config.std,
        }
    }

    /// Bytes per preprocessed image (`3 x S x S`).
    pub fn image_len(&self) -> usize {
        3 * self.size * self.size
    }

    /// Resize the shorter side to `resize`, centre-crop to `size`, lay out as CHW bytes.
    pub fn pixels(&self, image: DynamicImage) -> Vec<u8> {
        let rgb: RgbImage = image.into_rgb8();
        let (w, h) = rgb.dimensions();
        let target = self.resize as u32;
        let rgb = if w == h {
            if w == target {
                rgb
            } else {
                imageops::resize(&rgb, target, target, FilterType::Triangle)
            }
        } else {
            let scale = target as f64 / w.min(h) as f64;
            let (nw, nh) = (
                ((w as f64 * scale).round() as u32).max(target),
                ((h as f64 * scale).round() as u32).max(target),
            );
            imageops::resize(&rgb, nw, nh, FilterType::Triangle)
        };
        let size = self.size as u32;
        let (w, h) = rgb.dimensions();
        let rgb = if (w, h) == (size, size) {
            rgb
        } else {
            imageops::crop_imm(&rgb, (w - size) / 2, (h - size) / 2, size, size).to_image()
        };
        let plane = self.size * self.size;
        let mut out = vec![0u8; 3 * plane];
        for (i, pixel) in rgb.pixels().enumerate() {
            for c in 0..3 {
                out[c * plane + i] = pixel[c];
            }
        }
        out
    }

    /// A `[B, 3, S, S]` batch, normalised; with `augment`, each image is randomly
    /// cropped from its zero-padded self and mirrored, drawn from `rng`.
    pub fn batch(
        &self,
        images: &[&[u8]],
        augment: Option<(&AugmentConfig, &mut HostRng)>,
    ) -> Vec<f32> {
        let s = self.size;
        let plane = s * s;
        let mut out = Vec::with_capacity(images.len() * 3 * plane);
        let mut augment = augment;
        for image in images {
            let (dx, dy, flip) = match augment.as_mut() {
                Some((config, rng)) => {
                    let pad = config.crop_padding as i64;
                    let rng = rng.inner();
                    let dx = if pad > 0 { rng.random_range(-pad..=pad) } else { 0 };
                    let dy = if pad > 0 { rng.random_range(-pad..=pad) } else { 0 };
                    (dx, dy, config.horizontal_flip && rng.random_bool(0.5))
                }
                None => (0, 0, false),
            };
            for c in 0..3 {
                let scale = 1.0 / (255.0 * self.std[c]);
                let shift = self.mean[c] / self.std[c];
                for y in 0..s as i64 {
                    for x in 0..s as i64 {
                        let sx = if flip { s as i64 - 1 - x } else { x } + dx;
                        let sy = y + dy;
                        let value = if (0..s as i64).contains(&sx) && (0..s as i64).contains(&sy) {
                            image[c * plane + sy as usize * s + sx as usize]
                        } else {
                            0
                        };
                        out.push(value as f32 * scale - shift);
                    }
                }
            }
        }
        out
    }
}

/// A preprocessed image (`3 x size x size` CHW bytes) as a `data:image/png;base64,...`
/// URI, for a page that must carry its pictures inside it.
pub fn png_data_uri(chw: &[u8], size: usize) -> Result<String> {
    use base64::Engine;
    use zune_png::PngEncoder;
    use zune_png::zune_core::bit_depth::BitDepth;
    use zune_png::zune_core::options::EncoderOptions;

    let plane = size * size;
    let interleaved: Vec<u8> =
        (0..plane).flat_map(|i| [0, 1, 2].map(|c| chw[c * plane + i])).collect();
    let options = EncoderOptions::new(size, size, ColorSpace::RGB, BitDepth::Eight);
    let mut png = Vec::new();
    PngEncoder::new(&interleaved, options)
        .encode(&mut png)
        .map_err(|err| anyhow!("cannot encode a {size}x{size} thumbnail: {err:?}"))?;
    Ok(format!("data:image/png;base64,{}", base64::engine::general_purpose::STANDARD.encode(png)))
}

/// Where one image's pixels come from.
#[derive(Debug, Clone)]
enum Location {
    File(PathBuf),
    Idx(usize),
}

#[derive(Debug, Clone)]
pub struct Entry {
    /// What output files call the image: its path as listed, or its IDX index.
    pub id: String,
    pub label: Option<String>,
    location: Location,
}

/// The images of one source, listed but not decoded.
pub struct Catalog {
    pub origin: String,
    pub entries: Vec<Entry>,
    idx: Option<IdxImages>,
}

/// Decoded pixels of a batch, and what was skipped.
pub struct Decoded {
    /// `(entry index, 3 x S x S bytes)` in entry order.
    pub images: Vec<(usize, Vec<u8>)>,
    pub skipped: Vec<String>,
}

const EXTENSIONS: &[&str] = &["png", "jpg", "jpeg", "webp"];

fn is_image(path: &Path) -> bool {
    path.extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| EXTENSIONS.contains(&e.to_ascii_lowercase().as_str()))
}

impl Catalog {
    /// Lists `source` (folder, CSV or IDX). `label_column` and `labels` are the CSV and
    /// IDX settings of [`ImageDataConfig`].
    pub fn open(source: &str, label_column: &str, labels: Option<&str>) -> Result<Self> {
        let path = Path::new(source);
        if path.is_dir() {
            return Self::folder(path);
        }
        if !path.is_file() {
            bail!("{source}: no such image folder or file");
        }
        if path.extension().and_then(|e| e.to_str()).is_some_and(|e| e.eq_ignore_ascii_case("csv"))
        {
            return Self::csv(path, label_column);
        }
        if is_image(path) {
            let entry = Entry {
                id: source.to_string(),
                label: None,
                location: Location::File(path.to_path_buf()),
            };
            return Ok(Self { origin: source.to_string(), entries: vec![entry], idx: None });
        }
        Self::idx(path, labels)
    }

    /// Class folders (`root/<class>/*.png`) and images directly in `root` (unlabelled).
    fn folder(root: &Path) -> Result<Self> {
        let mut entries = Vec::new();
        let mut children: Vec<PathBuf> = std::fs::read_dir(root)
            .with_context(|| format!("{}: cannot read folder", root.display()))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| !p.file_name().and_then(|n| n.to_str()).is_some_and(|n| n.starts_with('.')))
            .collect();
        children.sort();
        for child in children {
            if child.is_dir() {
                let class =
                    child.file_name().and_then(|n| n.to_str()).unwrap_or_default().to_string();
                let mut files: Vec<PathBuf> = std::fs::read_dir(&child)
                    .with_context(|| format!("{}: cannot read folder", child.display()))?
                    .filter_map(|e| e.ok().map(|e| e.path()))
                    .filter(|p| p.is_file() && is_image(p))
                    .collect();
                if files.is_empty() {
                    bail!(
                        "{}: class folder {class:?} holds no images (.png, .jpg, .jpeg or .webp)",
                        child.display()
                    );
                }
                files.sort();
                for file in files {
                    let id = file.strip_prefix(root).unwrap_or(&file).display().to_string();
                    entries.push(Entry {
                        id,
                        label: Some(class.clone()),
                        location: Location::File(file),
                    });
                }
            } else if is_image(&child) {
                let id = child.strip_prefix(root).unwrap_or(&child).display().to_string();
                entries.push(Entry { id, label: None, location: Location::File(child) });
            }
        }
        if entries.is_empty() {
            bail!(
                "{}: no images (expected one sub-folder per class, or .png, .jpg, .jpeg, .webp files)",
                root.display()
            );
        }
        Ok(Self { origin: root.display().to_string(), entries, idx: None })
    }

    fn csv(path: &Path, label_column: &str) -> Result<Self> {
        let name = path.display().to_string();
        let file = File::open(path).with_context(|| format!("{name}: cannot open"))?;
        let mut source = CsvSource::new(name.clone(), file, &["path"])?;
        let path_index = source.column("path").expect("required column");
        let label_index = source.column(label_column);
        let base = path.parent().unwrap_or(Path::new("."));
        let mut entries = Vec::new();
        source.for_each(|row| {
            let listed = row.text(path_index, "path")?;
            if listed.is_empty() {
                return Err(row.error("path: empty"));
            }
            let file = base.join(listed);
            if !file.is_file() {
                return Err(row.error(format!("{listed}: no such image file ({})", file.display())));
            }
            let label = match label_index {
                Some(i) => Some(row.text(i, label_column)?.to_string()).filter(|l| !l.is_empty()),
                None => None,
            };
            entries.push(Entry { id: listed.to_string(), label, location: Location::File(file) });
            Ok(())
        })?;
        if entries.is_empty() {
            bail!("{name}: no image rows");
        }
        Ok(Self { origin: name, entries, idx: None })
    }

    fn idx(path: &Path, labels: Option<&str>) -> Result<Self> {
        let images = IdxImages::open(path)?;
        let labels_path = match labels {
            Some(l) => Some(PathBuf::from(l)),
            None => {
                let name = path.file_name().and_then(|n| n.to_str()).unwrap_or_default();
                let sibling = path.with_file_name(name.replace("images-idx3", "labels-idx1"));
                (name.contains("images-idx3") && sibling.is_file()).then_some(sibling)
            }
        };
        let labels = match labels_path {
            Some(l) => Some(read_idx_labels(&l, images.count)?),
            None => None,
        };
        let entries = (0..images.count)
            .map(|i| Entry {
                id: i.to_string(),
                label: labels.as_ref().map(|l| l[i].to_string()),
                location: Location::Idx(i),
            })
            .collect();
        Ok(Self { origin: path.display().to_string(), entries, idx: Some(images) })
    }

    /// Class names in output order: numeric names numerically, others alphabetically.
    pub fn label_names(&self) -> Result<Vec<String>> {
        let mut names: BTreeSet<&str> = BTreeSet::new();
        for entry in &self.entries {
            let label = entry.label.as_deref().ok_or_else(|| {
                anyhow!(
                    "{}: image {} has no label (training needs one per image)",
                    self.origin,
                    entry.id
                )
            })?;
            names.insert(label);
        }
        let mut names: Vec<String> = names.into_iter().map(str::to_string).collect();
        if names.iter().all(|n| n.parse::<u64>().is_ok()) {
            names.sort_by_key(|n| n.parse::<u64>().unwrap_or(0));
        }
        if names.len() < 2 {
            bail!("{}: training needs at least 2 classes, found {}", self.origin, names.len());
        }
        Ok(names)
    }

    /// Decodes `indices` on rayon's threads. A file that does not decode is an error
    /// naming it, or with `skip_bad` is left out and listed in [`Decoded::skipped`].
    pub fn decode(&self, indices: &[usize], prep: &Preprocess, skip_bad: bool) -> Result<Decoded> {
        let results: Vec<(usize, Result<Vec<u8>>)> =
            indices.par_iter().map(|&i| (i, self.decode_one(i, prep))).collect();
        let mut decoded =
            Decoded { images: Vec::with_capacity(results.len()), skipped: Vec::new() };
        for (i, result) in results {
            match result {
                Ok(pixels) => decoded.images.push((i, pixels)),
                Err(err) if skip_bad => decoded.skipped.push(format!("{err:#}")),
                Err(err) => bail!("{err:#} (set data.skip_bad_images = true to skip such files)"),
            }
        }
        Ok(decoded)
    }

    fn decode_one(&self, index: usize, prep: &Preprocess) -> Result<Vec<u8>> {
        let image = match &self.entries[index].location {
            Location::File(path) => {
                let mut bytes = Vec::new();
                File::open(path)
                    .and_then(|mut f| f.read_to_end(&mut bytes))
                    .with_context(|| format!("{}: cannot read image", path.display()))?;
                decode_bytes(&bytes)
                    .map_err(|err| anyhow!("{}: not a decodable image ({err})", path.display()))?
            }
            Location::Idx(i) => DynamicImage::ImageLuma8(
                self.idx.as_ref().expect("IDX entries have IDX images").read(*i)?,
            ),
        };
        Ok(prep.pixels(image))
    }
}

/// PNG through zune-png, JPEG and WebP through the `image` crate. The image crate's own
/// PNG decoder brings flate2, which turns on features of the miniz_oxide that Burn
/// already depends on, and so recompiles all of Burn; zune-png shares nothing with it.
pub fn decode_bytes(bytes: &[u8]) -> std::result::Result<DynamicImage, String> {
    if !bytes.starts_with(b"\x89PNG\r\n\x1a\n") {
        return image::load_from_memory(bytes).map_err(|err| err.to_string());
    }
    let options = DecoderOptions::default().png_set_strip_to_8bit(true);
    let mut decoder = PngDecoder::new_with_options(ZCursor::new(bytes), options);
    let pixels = decoder.decode_raw().map_err(|err| err.to_string())?;
    let (w, h) = decoder.dimensions().ok_or("PNG without dimensions")?;
    let (w, h) = (w as u32, h as u32);
    let image = match decoder.colorspace() {
        Some(ColorSpace::Luma) => GrayImage::from_raw(w, h, pixels).map(DynamicImage::ImageLuma8),
        Some(ColorSpace::LumaA) => {
            image::GrayAlphaImage::from_raw(w, h, pixels).map(DynamicImage::ImageLumaA8)
        }
        Some(ColorSpace::RGB) => RgbImage::from_raw(w, h, pixels).map(DynamicImage::ImageRgb8),
        Some(ColorSpace::RGBA) => {
            image::RgbaImage::from_raw(w, h, pixels).map(DynamicImage::ImageRgba8)
        }
        other => return Err(format!("unsupported PNG colour space {other:?}")),
    };
    image.ok_or_else(|| "PNG pixel data shorter than its dimensions".to_string())
}

/// An IDX image file read image by image (positional reads, so threads share it).
struct IdxImages {
    file: File,
    name: String,
    count: usize,
    rows: usize,
    cols: usize,
}

impl IdxImages {
    fn open(path: &Path) -> Result<Self> {
        let name = path.display().to_string();
        let mut file = File::open(path).with_context(|| format!("{name}: cannot open"))?;
        let mut header = [0u8; 16];
        file.read_exact(&mut header)
            .map_err(|_| anyhow!("{name}: not an IDX image file (shorter than its header)"))?;
        let word =
            |i: usize| u32::from_be_bytes(header[i..i + 4].try_into().expect("4 bytes")) as usize;
        if word(0) != 0x0803 {
            bail!(
                "{name}: not an image file this loader reads (expected a class folder, a .csv, a .png/.jpg/.webp or an IDX file of uint8 images, magic 2051; got magic {})",
                word(0)
            );
        }
        let (count, rows, cols) = (word(4), word(8), word(12));
        let pixels =
            (count as u64).checked_mul(rows as u64).and_then(|n| n.checked_mul(cols as u64));
        let expected = pixels.and_then(|n| n.checked_add(16));
        let actual = file.metadata()?.len();
        // One image above 2^26 pixels is no image this net reads; it also keeps the
        // per-image buffer and offsets far from overflow.
        if expected.is_none_or(|expected| actual < expected)
            || rows == 0
            || cols == 0
            || rows * cols > 1 << 26
        {
            let size = expected.map_or("more than 2^64".to_string(), |n| n.to_string());
            bail!(
                "{name}: IDX header says {count} images of {rows}x{cols} ({size} bytes) but the file has {actual} bytes"
            );
        }
        Ok(Self { file, name, count, rows, cols })
    }

    fn read(&self, index: usize) -> Result<GrayImage> {
        let len = self.rows * self.cols;
        let mut pixels = vec![0u8; len];
        self.file
            .read_exact_at(&mut pixels, 16 + (index * len) as u64)
            .with_context(|| format!("{}: cannot read image {index}", self.name))?;
        Ok(GrayImage::from_raw(self.cols as u32, self.rows as u32, pixels)
            .expect("buffer sized to the image"))
    }
}

fn read_idx_labels(path: &Path, count: usize) -> Result<Vec<u8>> {
    let name = path.display().to_string();
    let bytes = std::fs::read(path).with_context(|| format!("{name}: cannot read IDX labels"))?;
    if bytes.len() < 8 || u32::from_be_bytes(bytes[0..4].try_into().expect("4 bytes")) != 0x0801 {
        bail!("{name}: not an IDX label file (magic 2049)");
    }
    let n = u32::from_be_bytes(bytes[4..8].try_into().expect("4 bytes")) as usize;
    if n != count || bytes.len() < 8 + n {
        bail!("{name}: {n} labels for {count} images");
    }
    Ok(bytes[8..8 + n].to_vec())
}

/// The decoded images of a labelled source with their seeded stratified split.
pub struct ImageSet {
    pub label_names: Vec<String>,
    /// `3 x S x S` bytes per image, concatenated.
    pub pixels: Vec<u8>,
    pub labels: Vec<u32>,
    pub ids: Vec<String>,
    pub splits: Splits<Vec<u32>>,
    pub skipped: usize,
}

impl ImageSet {
    /// Loads and decodes every image of `config.source`. `known_labels` (a trained
    /// model's classes) fixes the class order; otherwise it comes from the data.
    pub fn load(
        config: &ImageDataConfig,
        prep: &Preprocess,
        known_labels: Option<&[String]>,
    ) -> Result<Self> {
        let catalog =
            Catalog::open(&config.source, &config.label_column, config.labels.as_deref())?;
        let label_names = match known_labels {
            Some(labels) => labels.to_vec(),
            None => catalog.label_names()?,
        };
        let class_of: HashMap<&str, u32> =
            label_names.iter().enumerate().map(|(i, l)| (l.as_str(), i as u32)).collect();
        let mut classes = Vec::with_capacity(catalog.entries.len());
        for entry in &catalog.entries {
            let label = entry
                .label
                .as_deref()
                .ok_or_else(|| anyhow!("{}: image {} has no label", catalog.origin, entry.id))?;
            let class = class_of.get(label).ok_or_else(|| {
                anyhow!(
                    "{}: image {} has label {label:?}, not one of the model's classes",
                    catalog.origin,
                    entry.id
                )
            })?;
            classes.push(*class);
        }
        let all: Vec<usize> = (0..catalog.entries.len()).collect();
        let decoded = catalog.decode(&all, prep, config.skip_bad_images)?;
        if let Some(first) = decoded.skipped.first() {
            eprintln!(
                "note: skipped {} images that do not decode (first: {first})",
                decoded.skipped.len()
            );
        }
        let mut pixels = Vec::with_capacity(decoded.images.len() * prep.image_len());
        let mut labels = Vec::with_capacity(decoded.images.len());
        let mut ids = Vec::with_capacity(decoded.images.len());
        for (i, image) in &decoded.images {
            pixels.extend_from_slice(image);
            labels.push(classes[*i]);
            ids.push(catalog.entries[*i].id.clone());
        }
        let splits = stratified_split(
            &labels,
            label_names.len(),
            config.test_fraction,
            config.val_fraction,
            config.split_seed,
        );
        Ok(Self { label_names, pixels, labels, ids, splits, skipped: decoded.skipped.len() })
    }

    pub fn image(&self, index: u32, prep: &Preprocess) -> &[u8] {
        let len = prep.image_len();
        &self.pixels[index as usize * len..(index as usize + 1) * len]
    }
}

/// Per class, in listing order shuffled with `seed`: the first `round(n * test)` images
/// are test, the next `round((n - n_test) * val)` validation, the rest train. Each
/// split's indices come back sorted.
pub fn stratified_split(
    labels: &[u32],
    num_classes: usize,
    test: f64,
    val: f64,
    seed: u64,
) -> Splits<Vec<u32>> {
    let mut by_class: Vec<Vec<u32>> = vec![Vec::new(); num_classes];
    for (i, &label) in labels.iter().enumerate() {
        by_class[label as usize].push(i as u32);
    }
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut splits: Splits<Vec<u32>> = Splits::default();
    for mut members in by_class {
        members.shuffle(&mut rng);
        let n = members.len();
        let n_test = (n as f64 * test).round() as usize;
        let n_val = ((n - n_test) as f64 * val).round() as usize;
        let (test_part, rest) = members.split_at(n_test);
        let (val_part, train_part) = rest.split_at(n_val);
        splits.test.extend_from_slice(test_part);
        splits.val.extend_from_slice(val_part);
        splits.train.extend_from_slice(train_part);
    }
    for part in [&mut splits.train, &mut splits.val, &mut splits.test] {
        part.sort_unstable();
    }
    splits
}

#[cfg(test)]
mod tests {
    #[test]
    fn thumbnail_decodes_to_the_same_pixels() {
        use base64::Engine;
        // 2x2: channel planes R, G, B.
        let chw = [10, 20, 30, 40, 50, 60, 70, 80, 90, 100, 110, 120];
        let uri = png_data_uri(&chw, 2).unwrap();
        let encoded = uri.strip_prefix("data:image/png;base64,").unwrap();
        let png = base64::engine::general_purpose::STANDARD.decode(encoded).unwrap();
        let pixels = PngDecoder::new(ZCursor::new(&png)).decode_raw().unwrap();
        assert_eq!(pixels, vec![10, 50, 90, 20, 60, 100, 30, 70, 110, 40, 80, 120]);
    }

    use super::*;
    use crate::base::split::Split;

    #[test]
    fn split_is_stratified_seeded_and_complete() {
        let labels: Vec<u32> = (0..200).map(|i| (i % 4) as u32).collect();
        let a = stratified_split(&labels, 4, 0.2, 0.1, 7);
        assert_eq!(a, stratified_split(&labels, 4, 0.2, 0.1, 7));
        assert_ne!(a.test, stratified_split(&labels, 4, 0.2, 0.1, 8).test);
        // 50 per class: 10 test, round(40 * 0.1) = 4 validation, 36 train.
        for class in 0..4 {
            let count =
                |s: Split| a.get(s).iter().filter(|&&i| labels[i as usize] == class).count();
            assert_eq!((count(Split::Test), count(Split::Val), count(Split::Train)), (10, 4, 36));
        }
        let mut all: Vec<u32> =
            [&a.train, &a.val, &a.test].into_iter().flatten().copied().collect();
        all.sort_unstable();
        assert_eq!(all, (0..200).collect::<Vec<_>>());
    }

    fn prep(size: usize) -> Preprocess {
        Preprocess { size, resize: size, mean: [0.5; 3], std: [0.5; 3] }
    }

    #[test]
    fn grayscale_repeats_to_three_channels_and_crops_centre() {
        // A 4x2 grey image, resize 2 on the shorter side keeps it; crop 2x2 from the centre.
        let gray = GrayImage::from_raw(4, 2, vec![0, 10, 20, 30, 40, 50, 60, 70]).unwrap();
        let pixels = prep(2).pixels(DynamicImage::ImageLuma8(gray));
        assert_eq!(pixels, vec![10, 20, 50, 60, 10, 20, 50, 60, 10, 20, 50, 60]);
    }

    #[test]
    fn batch_normalises_and_augments_by_hand() {
        let close = |a: &[f32], b: &[f32]| {
            a.len() == b.len() && a.iter().zip(b).all(|(x, y)| (x - y).abs() < 1e-5)
        };
        let p = prep(2);
        let image: Vec<u8> = vec![0, 255, 51, 102, 0, 0, 0, 0, 255, 255, 255, 255];
        let plain = p.batch(&[&image], None);
        // (v / 255 - 0.5) / 0.5 on the red plane.
        assert!(close(&plain[..4], &[-1.0, 1.0, -0.6, -0.2]), "{plain:?}");
        // Flip only: each row mirrored, or the image unchanged.
        let flip = AugmentConfig { crop_padding: 0, horizontal_flip: true };
        let mut flipped = 0;
        let mut rng = HostRng::new(0);
        for _ in 0..16 {
            let out = p.batch(&[&image], Some((&flip, &mut rng)));
            if close(&out[..4], &[1.0, -1.0, -0.2, -0.6]) {
                flipped += 1;
            } else {
                assert!(close(&out, &plain), "{out:?}");
            }
        }
        assert!((1..16).contains(&flipped), "{flipped}");
        // Crop with padding: every output pixel is a source pixel or padding (-1).
        let crop = AugmentConfig { crop_padding: 1, horizontal_flip: false };
        let out = p.batch(&[&image], Some((&crop, &mut rng)));
        assert!(
            out[..4].iter().all(|v| [-1.0, 1.0, -0.6, -0.2].iter().any(|e| (v - e).abs() < 1e-5)),
            "{out:?}"
        );
    }
}
