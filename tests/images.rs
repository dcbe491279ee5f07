//! End-to-end tests of the image family (`model.kind = "vgg"`) on real Fashion-MNIST
//! images from ../shared/data/fashion_mnist_subset, plus loading a torchvision-layout
//! checkpoint made by scripts/make_vgg16_checkpoint.py.

mod common;

use std::fs;
use std::path::{Path, PathBuf};

use common::*;

use burn::module::Module;
use burn::tensor::{Device, Tensor, TensorData};
use shopnet::base::rng::HostRng;
use shopnet::models::vgg::{self, Block, Head, Vgg, VggSpec};
use tempfile::TempDir;

fn fashion() -> PathBuf {
    repo().join("../shared/data/fashion_mnist_subset")
}

fn vgg_config() -> String {
    config("vgg_fashion.toml")
}

/// A small, fast version of configs/vgg_fashion.toml: three narrow convolutions on 16x16
/// input, a constant, higher learning rate.
const SMALL: &[&str] = &[
    "--set",
    "model.blocks=[16, \"M\", 32, \"M\", 32]",
    "--set",
    "model.embedding_size=32",
    "--set",
    "train.lr=0.003",
    "--set",
    "train.schedule=\"constant\"",
    "--set",
    "model.input_size=16",
    "--set",
    "runtime.threads=2",
];

fn train(dir: &Path, extra: &[&str]) -> PathBuf {
    let out = dir.join("runs");
    let source = format!("data.source={}", fashion().join("index.csv").display());
    let config = vgg_config();
    let mut args =
        vec!["train", "--config", &config, "--out", out.to_str().unwrap(), "--set", &source];
    args.extend_from_slice(SMALL);
    args.extend_from_slice(extra);
    let output = shopnet(&args, dir);
    assert!(output.status.success(), "train failed: {}", stderr(&output));
    let text = stdout(&output);
    let line = text
        .lines()
        .find(|l| l.starts_with("run "))
        .unwrap_or_else(|| panic!("no run line in {text}"));
    PathBuf::from(line.split_whitespace().nth(1).unwrap())
}

fn csv_rows(path: &Path) -> Vec<Vec<String>> {
    let mut reader = csv::Reader::from_path(path).unwrap();
    reader.records().map(|r| r.unwrap().iter().map(str::to_string).collect()).collect()
}

#[test]
fn vgg_trains_evaluates_scores_embeds_and_searches_fashion_images() {
    if !shared_data_present() {
        return;
    }
    let dir = TempDir::new().unwrap();
    let run = train(dir.path(), &["--set", "train.epochs=4"]);
    // 10 classes: chance is 0.1; four epochs of this tiny net reach about 0.49.
    let accuracy = report_metric(&run, "test_accuracy");
    assert!(accuracy > 0.3, "test accuracy {accuracy}");
    let page = report_check::check_common(&run, "vgg_fashion");
    report_check::check_classes(&page, &run, None, 10);
    report_check::check_images(&page);
    // Retrieval within the test split: the middle and half-width of what this net reaches
    // over train.seed 0 to 3, with the fused ops and without (recall@1 0.47 to 0.57, @5
    // 0.82 to 0.87, @10 0.90 to 0.93: the order of float sums alone moves a run by up to
    // 0.05). A search that returned the query itself would give recall@1 = 1, a broken
    // embedding about 0.1 (chance for 10 classes).
    for (k, known, spread) in [(1, 0.52, 0.08), (5, 0.845, 0.05), (10, 0.915, 0.04)] {
        let recall = report_metric(&run, &format!("test_recall@{k}"));
        assert!((recall - known).abs() < spread, "recall@{k} {recall}, known {known} ± {spread}");
    }

    // eval reproduces the test metrics the training run reported.
    let run_arg = run.to_str().unwrap();
    let output = shopnet(&["eval", "--run", run_arg, "--split", "test"], dir.path());
    assert!(output.status.success(), "{}", stderr(&output));
    let table = stdout(&output);
    let eval_accuracy: f64 = table
        .lines()
        .find(|l| l.starts_with("accuracy"))
        .unwrap()
        .split_whitespace()
        .nth(1)
        .unwrap()
        .parse()
        .unwrap();
    assert!((eval_accuracy - accuracy).abs() < 1e-3, "{eval_accuracy} vs {accuracy}");
    assert!(table.contains("recall@5"), "{table}");

    // score: one row per image of a class folder, probabilities summing to 1.
    let images = fashion().join("sprite900");
    let scores = dir.path().join("scores.csv");
    let output = shopnet(
        &[
            "score",
            "--run",
            run_arg,
            "--input",
            images.to_str().unwrap(),
            "--output",
            scores.to_str().unwrap(),
        ],
        dir.path(),
    );
    assert!(output.status.success(), "{}", stderr(&output));
    let rows = csv_rows(&scores);
    assert_eq!(rows.len(), 900);
    let header = fs::read_to_string(&scores).unwrap().lines().next().unwrap().to_string();
    assert!(header.starts_with("id,predicted,prob_"), "{header}");
    let total: f64 = rows[0][2..].iter().map(|p| p.parse::<f64>().unwrap()).sum();
    assert!((total - 1.0).abs() < 1e-4, "{total}");

    // embed: an index of 900 normalised rows plus their ids.
    let index = dir.path().join("catalogue.safetensors");
    let output = shopnet(
        &[
            "embed",
            "--run",
            run_arg,
            "--input",
            images.to_str().unwrap(),
            "--output",
            index.to_str().unwrap(),
        ],
        dir.path(),
    );
    assert!(output.status.success(), "{}", stderr(&output));
    assert!(stdout(&output).contains("wrote 900 embeddings"), "{}", stdout(&output));
    let ids = csv_rows(&dir.path().join("catalogue.ids.csv"));
    assert_eq!(ids.len(), 900);
    assert_eq!(ids[0], vec!["0", "0/000.png", "0"]);

    // similar, by image file: an indexed image finds itself first, cosine 1.
    let query = images.join("3/270.png");
    let output = shopnet(
        &[
            "similar",
            "--index",
            index.to_str().unwrap(),
            "--query",
            query.to_str().unwrap(),
            "--k",
            "5",
        ],
        dir.path(),
    );
    assert!(output.status.success(), "{}", stderr(&output));
    let text = stdout(&output);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines[0], "query,rank,id,label,score");
    assert_eq!(lines.len(), 6, "{text}");
    let first: Vec<&str> = lines[1].split(',').collect();
    assert_eq!((first[1], first[2], first[3]), ("1", "3/270.png", "3"), "{text}");
    assert!((first[4].parse::<f64>().unwrap() - 1.0).abs() < 1e-4, "{text}");

    // similar, batch form: ids leave themselves out.
    let queries = dir.path().join("queries.txt");
    fs::write(&queries, "3/270.png\n7/630.png\n").unwrap();
    let neighbours = dir.path().join("neighbours.csv");
    let output = shopnet(
        &[
            "similar",
            "--index",
            index.to_str().unwrap(),
            "--queries",
            queries.to_str().unwrap(),
            "--k",
            "10",
            "--output",
            neighbours.to_str().unwrap(),
        ],
        dir.path(),
    );
    assert!(output.status.success(), "{}", stderr(&output));
    let rows = csv_rows(&neighbours);
    assert_eq!(rows.len(), 20);
    assert!(rows.iter().all(|r| r[0] != r[2]), "a query returned itself");

    // An index is tied to its model: another run may not embed queries for it.
    let other = train(dir.path(), &["--set", "train.epochs=1", "--set", "train.seed=5"]);
    let output = shopnet(
        &[
            "similar",
            "--index",
            index.to_str().unwrap(),
            "--query",
            query.to_str().unwrap(),
            "--run",
            other.to_str().unwrap(),
        ],
        dir.path(),
    );
    assert_user_error(&output, "the index was built by another model");
}

#[test]
fn bad_image_input_is_one_error_line() {
    if !shared_data_present() {
        return;
    }
    let dir = TempDir::new().unwrap();
    let run_train = |source: &Path, extra: &[&str]| {
        let source = format!("data.source={}", source.display());
        let config = vgg_config();
        let mut args = vec![
            "train",
            "--config",
            &config,
            "--out",
            "runs",
            "--set",
            &source,
            "--set",
            "train.epochs=1",
        ];
        args.extend_from_slice(SMALL);
        args.extend_from_slice(extra);
        shopnet(&args, dir.path())
    };
    let copy_class = |root: &Path, class: &str, count: usize| {
        let target = root.join(class);
        fs::create_dir_all(&target).unwrap();
        let mut files: Vec<PathBuf> = fs::read_dir(fashion().join("test1000").join(class))
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        files.sort();
        for file in files.iter().take(count) {
            fs::copy(file, target.join(file.file_name().unwrap())).unwrap();
        }
    };

    // A corrupt image: named, with the way out.
    let corrupt = dir.path().join("corrupt");
    copy_class(&corrupt, "0", 5);
    copy_class(&corrupt, "1", 5);
    fs::write(corrupt.join("1/broken.png"), b"\x89PNG\r\n\x1a\nnot really").unwrap();
    assert_user_error(&run_train(&corrupt, &[]), "broken.png: not a decodable image");
    assert_user_error(&run_train(&corrupt, &[]), "data.skip_bad_images = true");

    // An empty class folder.
    let empty = dir.path().join("empty");
    copy_class(&empty, "0", 5);
    fs::create_dir_all(empty.join("9")).unwrap();
    assert_user_error(&run_train(&empty, &[]), "class folder \"9\" holds no images");

    // A CSV naming a missing file: file and line.
    let listing = dir.path().join("listing.csv");
    fs::write(
        &listing,
        format!(
            "path,label\n{}/test1000/0/0003.png,0\nnowhere/missing.png,1\n",
            fashion().display()
        ),
    )
    .unwrap();
    assert_user_error(
        &run_train(&listing, &[]),
        "listing.csv:3: nowhere/missing.png: no such image file",
    );

    // A query that is neither an indexed id nor an image file; an index that is not one.
    let fake_index = dir.path().join("fake.safetensors");
    fs::write(&fake_index, b"nonsense").unwrap();
    assert_user_error(
        &shopnet(&["similar", "--index", fake_index.to_str().unwrap(), "--query", "x"], dir.path()),
        "not a shopnet embedding index",
    );
}

/// scripts/make_vgg16_checkpoint.py's net: torchvision's vgg16 layout, widths / 16.
fn tiny_vgg16() -> VggSpec {
    let layout: Vec<usize> = vec![4, 4, 0, 8, 8, 0, 16, 16, 16, 0, 32, 32, 32, 0, 32, 32, 32, 0];
    let blocks =
        layout.into_iter().map(|w| if w == 0 { vgg::POOL } else { Block::Conv(w) }).collect();
    VggSpec {
        blocks,
        batch_norm: false,
        head: Head::Torchvision,
        input_size: 32,
        embedding_size: 32,
        pool_size: 7,
        dropout: 0.5,
    }
}

#[test]
fn vgg16_preset_loads_a_torchvision_state_dict() {
    let data = repo().join("tests/data");
    let reference: serde_json::Value =
        serde_json::from_str(&fs::read_to_string(data.join("vgg16_tiny.json")).unwrap()).unwrap();
    let expected: Vec<f32> = reference["logits"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_f64().unwrap() as f32)
        .collect();
    let device = Device::flex();
    // The input of the script: x[i] = sin(0.01 i) over the flat 1x3x32x32 tensor.
    let input: Vec<f32> = (0..3 * 32 * 32).map(|i| (i as f64 * 0.01).sin() as f32).collect();
    for file in ["vgg16_tiny.safetensors", "vgg16_tiny.pth"] {
        let net = Vgg::new(&tiny_vgg16(), 10, &mut HostRng::new(0), &device);
        let loaded = vgg::load_torchvision(net, &data.join(file)).unwrap();
        assert_eq!(loaded.loaded, 13 * 2 + 3 * 2, "{file}: loaded {} tensors", loaded.loaded);
        assert!(loaded.kept.is_empty(), "{file}: {:?}", loaded.kept);
        let image = Tensor::from_data(TensorData::new(input.clone(), [1, 3, 32, 32]), &device);
        let (_, logits) = loaded.net.valid().forward(image, None);
        let got = logits.into_data().try_to_vec::<f32>().unwrap();
        for (g, e) in got.iter().zip(&expected) {
            assert!((g - e).abs() < 1e-5, "{file}: {got:?} vs {expected:?}");
        }
    }
    // Another class count: everything but the last classifier layer loads.
    let net = Vgg::new(&tiny_vgg16(), 3, &mut HostRng::new(0), &device);
    let loaded = vgg::load_torchvision(net, &data.join("vgg16_tiny.safetensors")).unwrap();
    assert_eq!(loaded.loaded, 30);
    assert_eq!(loaded.kept.len(), 2, "{:?}", loaded.kept);
}

#[test]
fn vgg16_preset_fine_tunes_from_a_torchvision_checkpoint() {
    if !shared_data_present() {
        return;
    }
    let dir = TempDir::new().unwrap();
    let source = format!("data.source={}", fashion().join("index.csv").display());
    let pretrained =
        format!("model.pretrained={}", repo().join("tests/data/vgg16_tiny.safetensors").display());
    let config = vgg_config();
    let args = [
        "train",
        "--config",
        &config,
        "--out",
        "runs",
        "--set",
        &source,
        "--set",
        "model.preset=\"vgg16\"",
        "--set",
        "model.blocks=[4, 4, \"M\", 8, 8, \"M\", 16, 16, 16, \"M\", 32, 32, 32, \"M\", 32, 32, 32, \"M\"]",
        "--set",
        "model.embedding_size=32",
        "--set",
        "model.input_size=32",
        "--set",
        &pretrained,
        "--set",
        "train.epochs=1",
        "--set",
        "runtime.threads=2",
    ];
    let output = shopnet(&args, dir.path());
    assert!(output.status.success(), "{}", stderr(&output));
    assert!(stderr(&output).contains("loaded 32 tensors"), "{}", stderr(&output));
    // The run's weights keep torchvision's names, gaps closed.
    let text = stdout(&output);
    let run = dir.path().join(
        text.lines().find(|l| l.starts_with("run ")).unwrap().split_whitespace().nth(1).unwrap(),
    );
    let weights = fs::read(run.join("best.safetensors")).unwrap();
    let header = String::from_utf8_lossy(
        &weights[8..8 + u64::from_le_bytes(weights[..8].try_into().unwrap()) as usize],
    )
    .into_owned();
    for name in ["features.12.weight", "classifier.2.bias"] {
        assert!(header.contains(name), "{name} not in {header}");
    }
}
