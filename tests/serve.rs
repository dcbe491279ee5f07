//! `shopnet serve` end to end: five small bundles (sentiment, purchase intent, images, a
//! recommender, GCN node classification), trained and exported here, served on a random
//! loopback port. Every endpoint of the Open Inference Protocol's REST side is checked,
//! `/infer` is compared with `score` / `recommend` on the same inputs, and malformed
//! requests get their status with a JSON error while good requests keep being answered.
//! Reads ../shared/data (reviews, Fashion-MNIST).

mod common;

use std::fs;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use common::*;
use serde_json::{Value, json};

/// Bundles and the batch outputs to compare with, built once for every test here.
struct Fixture {
    dir: PathBuf,
    bundles: Vec<PathBuf>,
}

/// Trains, exports and scores once per test binary; `None` without ../shared.
fn fixture() -> Option<&'static Fixture> {
    static FIXTURE: OnceLock<Option<Fixture>> = OnceLock::new();
    FIXTURE.get_or_init(|| shared_data_present().then(build_fixture)).as_ref()
}

fn build_fixture() -> Fixture {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("serve-fixture");
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir_all(&dir).unwrap();
    let runs = [
        ("sentiment", train_sentiment(&dir)),
        ("intent", train_intent(&dir)),
        ("images", train_images(&dir)),
        ("recommender", train_recommender(&dir)),
        ("gcn", train(&dir, &["--config", &config("gcn_cora.toml"), "--set", "train.epochs=5"])),
    ];
    let bundles = runs
        .iter()
        .map(|(name, run)| {
            let bundle = dir.join("bundles").join(name);
            let out = shopnet(
                &["export", "--run", run.to_str().unwrap(), "--out", bundle.to_str().unwrap()],
                &dir,
            );
            assert!(out.status.success(), "export {name}: {}", stderr(&out));
            bundle
        })
        .collect();
    Fixture { dir, bundles }
}

fn shared(path: &str) -> PathBuf {
    repo().join("../shared/data").join(path)
}

/// A tiny random BERT on 600 reviews with a WordPiece tokenizer trained on them; also
/// writes `reviews_to_score.csv` (id,review) of 12 other reviews.
fn train_sentiment(dir: &Path) -> PathBuf {
    let source =
        fs::read_to_string(shared("online_shopping_10_cats/online_shopping_10_cats.csv")).unwrap();
    let mut lines = source.lines();
    let header = lines.next().unwrap();
    let rows: Vec<&str> = lines.step_by(97).collect();
    let training: String = rows[..600].iter().map(|l| format!("{l}\n")).collect();
    fs::write(dir.join("reviews.csv"), format!("{header}\n{training}")).unwrap();
    let mut to_score = csv::Writer::from_path(dir.join("reviews_to_score.csv")).unwrap();
    to_score.write_record(["id", "review"]).unwrap();
    for (at, row) in rows[600..612].iter().enumerate() {
        let record = csv::ReaderBuilder::new()
            .has_headers(false)
            .from_reader(row.as_bytes())
            .records()
            .next()
            .unwrap()
            .unwrap();
        to_score.write_record([format!("r{at}"), record[2].to_string()]).unwrap();
    }
    to_score.flush().unwrap();
    let text = "[model]\nkind = \"bert\"\ntokenizer_vocab_size = 400\nlayers = 1\nhidden = 32\nheads = 2\nintermediate = 64\nmax_length = 48\n\n[data]\npath = \"reviews.csv\"\ntext_column = \"review\"\nlabel_column = \"label\"\n\n[train]\nepochs = 2\nbatch_size = 32\nlr = 0.001\n";
    fs::write(dir.join("sentiment.toml"), text).unwrap();
    train(dir, &["--config", "sentiment.toml"])
}

/// The purchase-intent net on a generated log of 1,500 users.
fn train_intent(dir: &Path) -> PathBuf {
    let out =
        shopnet(&["synth", "events", "--users", "1500", "--seed", "5", "--out", "events.csv"], dir);
    assert!(out.status.success(), "{}", stderr(&out));
    train_on_events(dir, "intent_synth.toml", &["--set", "train.epochs=1"])
}

/// A small VGG on the Fashion-MNIST subset; also copies 10 of its PNGs to `images/`.
fn train_images(dir: &Path) -> PathBuf {
    let images = dir.join("images");
    fs::create_dir_all(&images).unwrap();
    let index = fs::read_to_string(shared("fashion_mnist_subset/index.csv")).unwrap();
    for line in index.lines().skip(1).step_by(97).take(10) {
        let path = line.split(',').next().unwrap();
        let name = path.replace('/', "_");
        fs::copy(shared("fashion_mnist_subset").join(path), images.join(name)).unwrap();
    }
    let source = format!("data.source={:?}", shared("fashion_mnist_subset/index.csv"));
    train(
        dir,
        &[
            "--config",
            &config("vgg_fashion.toml"),
            "--set",
            &source,
            "--set",
            "model.blocks=[8, \"M\", 16]",
            "--set",
            "model.embedding_size=16",
            "--set",
            "model.input_size=16",
            "--set",
            "train.epochs=1",
        ],
    )
}

/// LightGCN on the generated log's interactions.
fn train_recommender(dir: &Path) -> PathBuf {
    let small = ["--set", "train.epochs=2", "--set", "model.embedding_size=16"];
    train_on_events(dir, "recommender_taobao.toml", &small)
}

/// A running `shopnet serve`, killed when dropped.
struct Server {
    child: Child,
    port: u16,
}

impl Server {
    fn start(dir: &Path, bundles: &[PathBuf], extra: &[&str]) -> Server {
        let mut args = vec!["serve".to_string(), "--port".into(), "0".into()];
        for bundle in bundles {
            args.extend(["--bundle".to_string(), bundle.display().to_string()]);
        }
        args.extend(extra.iter().map(|a| a.to_string()));
        let mut child = Command::new(env!("CARGO_BIN_EXE_shopnet"))
            .args(&args)
            .current_dir(dir)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let mut line = String::new();
        BufReader::new(child.stdout.as_mut().unwrap()).read_line(&mut line).unwrap();
        let port = line
            .split("http://127.0.0.1:")
            .nth(1)
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|port| port.parse().ok())
            .unwrap_or_else(|| panic!("no listening line: {line:?}"));
        let server = Server { child, port };
        let started = Instant::now();
        while server.get("/v2/health/ready").0 != 200 {
            assert!(started.elapsed() < Duration::from_secs(120), "not ready within 120 s");
            std::thread::sleep(Duration::from_millis(100));
        }
        server
    }

    fn get(&self, path: &str) -> (u16, String) {
        self.send("GET", path, b"")
    }

    /// One request on its own connection; a large body waits for `100 Continue`, so that
    /// a refusal before the body is read arrives as an answer, not a reset.
    fn send(&self, method: &str, path: &str, body: &[u8]) -> (u16, String) {
        let mut stream = TcpStream::connect(("127.0.0.1", self.port)).unwrap();
        stream.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
        let expect = if body.len() > 65536 { "Expect: 100-continue\r\n" } else { "" };
        let head = format!(
            "{method} {path} HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nContent-Length: {}\r\n{expect}Connection: close\r\n\r\n",
            body.len()
        );
        stream.write_all(head.as_bytes()).unwrap();
        let mut reader = BufReader::new(stream.try_clone().unwrap());
        if !expect.is_empty() {
            let mut status = String::new();
            reader.read_line(&mut status).unwrap();
            if status.contains(" 100 ") {
                let mut blank = String::new();
                reader.read_line(&mut blank).unwrap();
                stream.write_all(body).unwrap();
            } else {
                return finish_response(status, reader);
            }
        } else {
            stream.write_all(body).unwrap();
        }
        let mut status = String::new();
        reader.read_line(&mut status).unwrap();
        finish_response(status, reader)
    }

    fn infer(&self, model: &str, request: &Value) -> (u16, Value) {
        let (status, body) =
            self.send("POST", &format!("/v2/models/{model}/infer"), request.to_string().as_bytes());
        let body: Value =
            serde_json::from_str(&body).unwrap_or_else(|_| panic!("not JSON ({status}): {body}"));
        (status, body)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The status code and body of a response whose status line was read.
fn finish_response(status: String, mut reader: BufReader<TcpStream>) -> (u16, String) {
    let code = status.split_whitespace().nth(1).and_then(|c| c.parse().ok()).unwrap_or(0);
    let mut length = None;
    loop {
        let mut line = String::new();
        reader.read_line(&mut line).unwrap();
        if line.trim().is_empty() {
            break;
        }
        if let Some(value) = line.to_ascii_lowercase().strip_prefix("content-length:") {
            length = value.trim().parse::<usize>().ok();
        }
    }
    let mut body = Vec::new();
    match length {
        Some(n) => {
            body.resize(n, 0);
            reader.read_exact(&mut body).unwrap();
        }
        None => {
            reader.read_to_end(&mut body).unwrap();
        }
    }
    (code, String::from_utf8_lossy(&body).into_owned())
}

fn bytes_input(name: &str, data: Vec<String>) -> Value {
    json!({ "name": name, "shape": [data.len()], "datatype": "BYTES", "data": data })
}

/// An output's data as numbers.
fn numbers(answer: &Value, output: &str) -> Vec<f64> {
    output_of(answer, output)["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_f64().unwrap())
        .collect()
}

fn output_of<'a>(answer: &'a Value, output: &str) -> &'a Value {
    answer["outputs"]
        .as_array()
        .unwrap()
        .iter()
        .find(|o| o["name"] == output)
        .unwrap_or_else(|| panic!("no output {output} in {answer}"))
}

fn csv_rows(path: &Path) -> Vec<Vec<String>> {
    let mut reader = csv::Reader::from_path(path).unwrap();
    reader.records().map(|r| r.unwrap().iter().map(str::to_string).collect()).collect()
}

fn assert_close(served: &[f64], scored: &[f64], what: &str) {
    assert_eq!(served.len(), scored.len(), "{what}");
    for (a, b) in served.iter().zip(scored) {
        assert!((a - b).abs() < 1e-5, "{what}: served {a}, scored {b}");
    }
}

/// Runs a batch command in the fixture's folder and returns its output file's rows.
fn batch(dir: &Path, args: &[&str], output: &str) -> Vec<Vec<String>> {
    let mut full: Vec<&str> = args.to_vec();
    full.extend(["--output", output]);
    let out = shopnet(&full, dir);
    assert!(out.status.success(), "{args:?}: {}", stderr(&out));
    csv_rows(&dir.join(output))
}

#[test]
fn every_endpoint_answers_and_infer_agrees_with_score() {
    let Some(fixture) = fixture() else { return };
    let (dir, bundles) = (&fixture.dir, &fixture.bundles);
    let server = Server::start(dir, bundles, &["--max-delay-ms", "20"]);
    assert_eq!(server.get("/v2/health/live").0, 200);
    let (status, meta) = server.get("/v2");
    assert_eq!(status, 200);
    assert_eq!(serde_json::from_str::<Value>(&meta).unwrap()["name"], "shopnet");
    for name in ["sentiment", "intent", "images", "recommender", "gcn"] {
        assert_eq!(server.get(&format!("/v2/models/{name}/ready")).0, 200, "{name}");
    }
    let (status, meta) = server.get("/v2/models/sentiment");
    let meta: Value = serde_json::from_str(&meta).unwrap();
    assert_eq!(status, 200);
    assert_eq!(meta["inputs"], json!([{"name": "text", "datatype": "BYTES", "shape": [-1]}]));
    assert_eq!(
        meta["outputs"][1],
        json!({"name": "probabilities", "datatype": "FP32", "shape": [-1, 2]})
    );
    assert_eq!(meta["platform"], "shopnet_bert");

    check_sentiment(&server, dir);
    check_intent(&server, dir);
    check_images(&server, dir);
    check_recommender(&server, dir);
    check_nodes(&server, dir);

    let (status, metrics) = server.get("/metrics");
    assert_eq!(status, 200);
    for model in ["sentiment", "intent", "images", "recommender", "gcn"] {
        let line = format!("shopnet_request_errors_total{{model=\"{model}\",code=\"400\"}} 0");
        assert!(metrics.lines().any(|l| l == line), "{line} in\n{metrics}");
    }
    // Twelve texts sent one by one, concurrently with batching: all answered.
    assert!(metrics.contains("shopnet_requests_total{model=\"sentiment\"} 13"), "{metrics}");
    assert!(metrics.contains("shopnet_batch_size_count{model=\"sentiment\"}"), "{metrics}");
    assert_eq!(server.get("/v2/models/nope").0, 404);
}

fn check_sentiment(server: &Server, dir: &Path) {
    let scored = batch(
        dir,
        &["score", "--run", "bundles/sentiment", "--input", "reviews_to_score.csv"],
        "sentiment_scores.csv",
    );
    let texts: Vec<String> =
        csv_rows(&dir.join("reviews_to_score.csv")).into_iter().map(|r| r[1].clone()).collect();
    // All twelve in one request.
    let (status, answer) = server
        .infer("sentiment", &json!({"id": "all", "inputs": [bytes_input("text", texts.clone())]}));
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["id"], "all");
    assert_eq!(output_of(&answer, "probabilities")["shape"], json!([12, 2]));
    let expected: Vec<f64> =
        scored.iter().flat_map(|r| r[2..].iter().map(|p| p.parse::<f64>().unwrap())).collect();
    assert_close(&numbers(&answer, "probabilities"), &expected, "sentiment");
    let labels: Vec<&str> = output_of(&answer, "label")["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert_eq!(labels, scored.iter().map(|r| r[1].as_str()).collect::<Vec<_>>());
    // One text per request, from concurrent clients: gathered into batches, same numbers.
    std::thread::scope(|scope| {
        for (text, row) in texts.iter().zip(&scored) {
            scope.spawn(move || {
                let (status, answer) = server.infer(
                    "sentiment",
                    &json!({"inputs": [bytes_input("text", vec![text.clone()])]}),
                );
                assert_eq!(status, 200, "{answer}");
                let expected: Vec<f64> = row[2..].iter().map(|p| p.parse().unwrap()).collect();
                assert_close(&numbers(&answer, "probabilities"), &expected, "sentiment, alone");
            });
        }
    });
}

fn check_intent(server: &Server, dir: &Path) {
    let scored = batch(
        dir,
        &["score", "--run", "bundles/intent", "--input", "events.csv"],
        "intent_scores.csv",
    );
    let log = fs::read_to_string(dir.join("events.csv")).unwrap();
    for row in scored.iter().step_by(150) {
        let user = &row[0];
        let events: String = log
            .lines()
            .filter(|l| l.split(',').next() == Some(user))
            .map(|l| format!("{l}\n"))
            .collect();
        let (status, answer) =
            server.infer("intent", &json!({"inputs": [bytes_input("events", vec![events])]}));
        assert_eq!(status, 200, "{answer}");
        assert_eq!(numbers(&answer, "user_id"), vec![user.parse::<f64>().unwrap()]);
        assert_close(&numbers(&answer, "probability"), &[row[1].parse().unwrap()], "intent");
    }
}

fn check_images(server: &Server, dir: &Path) {
    let scored =
        batch(dir, &["score", "--run", "bundles/images", "--input", "images"], "image_scores.csv");
    assert_eq!(scored.len(), 10);
    for row in &scored {
        let path = Path::new(&row[0]);
        let path =
            if path.is_absolute() { path.to_path_buf() } else { dir.join("images").join(path) };
        let encoded =
            STANDARD.encode(fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display())));
        let input = json!({"name": "image", "shape": [1], "datatype": "BYTES", "parameters": {"content_type": "base64"}, "data": [encoded]});
        let (status, answer) = server.infer("images", &json!({"inputs": [input]}));
        assert_eq!(status, 200, "{answer}");
        let expected: Vec<f64> = row[2..].iter().map(|p| p.parse().unwrap()).collect();
        assert_close(&numbers(&answer, "probabilities"), &expected, "images");
        let embedding = numbers(&answer, "embedding");
        assert_eq!(embedding.len(), 16);
        let norm: f64 = embedding.iter().map(|x| x * x).sum::<f64>().sqrt();
        assert!((norm - 1.0).abs() < 1e-4, "embedding norm {norm}");
    }
}

fn check_recommender(server: &Server, dir: &Path) {
    let all =
        batch(dir, &["recommend", "--run", "bundles/recommender", "--k", "5"], "recs_all.csv");
    let users: Vec<String> = all.iter().map(|r| r[0].clone()).step_by(5 * 40).collect();
    fs::write(dir.join("users.txt"), users.join("\n")).unwrap();
    let scored = batch(
        dir,
        &["recommend", "--run", "bundles/recommender", "--users", "users.txt", "--k", "5"],
        "recs.csv",
    );
    let ids: Vec<i64> = users.iter().map(|u| u.parse().unwrap()).collect();
    let input = json!({"name": "user_id", "shape": [ids.len()], "datatype": "INT64", "data": ids});
    let (status, answer) =
        server.infer("recommender", &json!({"parameters": {"k": 5}, "inputs": [input]}));
    assert_eq!(status, 200, "{answer}");
    assert_eq!(output_of(&answer, "item_ids")["shape"], json!([users.len(), 5]));
    let items: Vec<f64> = scored.iter().map(|r| r[2].parse().unwrap()).collect();
    let scores: Vec<f64> = scored.iter().map(|r| r[3].parse().unwrap()).collect();
    assert_eq!(numbers(&answer, "item_ids"), items);
    assert_close(&numbers(&answer, "scores"), &scores, "recommender");
}

fn check_nodes(server: &Server, dir: &Path) {
    let scored =
        batch(dir, &["score", "--run", "bundles/gcn", "--input", "builtin:cora"], "nodes.csv");
    let sample: Vec<&Vec<String>> = scored.iter().step_by(271).collect();
    let ids: Vec<String> = sample.iter().map(|r| r[0].clone()).collect();
    let (status, answer) = server.infer("gcn", &json!({"inputs": [bytes_input("node_id", ids)]}));
    assert_eq!(status, 200, "{answer}");
    let expected: Vec<f64> =
        sample.iter().flat_map(|r| r[2..].iter().map(|p| p.parse::<f64>().unwrap())).collect();
    assert_close(&numbers(&answer, "probabilities"), &expected, "gcn");
}

#[test]
fn malformed_requests_get_their_status_and_a_json_error_and_good_ones_still_work() {
    let Some(fixture) = fixture() else { return };
    let bundles =
        [fixture.bundles[0].clone(), fixture.bundles[3].clone(), fixture.bundles[2].clone()];
    let server = Server::start(&fixture.dir, &bundles, &["--max-body-bytes", "1000000"]);
    let text = |data: Value| json!({"inputs": [{"name": "text", "shape": [1], "datatype": "BYTES", "data": data}]});
    let infer = "/v2/models/sentiment/infer";
    let bad_bodies: Vec<(&str, &str, String, u16)> = vec![
        ("not JSON", infer, "hello".into(), 400),
        ("truncated JSON", infer, "{\"inputs\": [{\"name\": \"text\", \"sha".into(), 400),
        ("empty body", infer, String::new(), 400),
        ("JSON without inputs", infer, "{}".into(), 400),
        ("inputs not a list", infer, "{\"inputs\": 3}".into(), 400),
        ("unknown top-level key", infer, json!({"inputs": [], "input": []}).to_string(), 400),
        ("no inputs", infer, json!({"inputs": []}).to_string(), 400),
        ("unknown input name", infer, json!({"inputs": [{"name": "txt", "shape": [1], "datatype": "BYTES", "data": ["a"]}]}).to_string(), 400),
        ("wrong datatype", infer, json!({"inputs": [{"name": "text", "shape": [1], "datatype": "INT64", "data": [1]}]}).to_string(), 400),
        ("unknown datatype", infer, json!({"inputs": [{"name": "text", "shape": [1], "datatype": "FP64", "data": [1.0]}]}).to_string(), 400),
        ("wrong rank", infer, json!({"inputs": [{"name": "text", "shape": [1, 1], "datatype": "BYTES", "data": ["a"]}]}).to_string(), 400),
        ("shape and data disagree", infer, json!({"inputs": [{"name": "text", "shape": [3], "datatype": "BYTES", "data": ["a"]}]}).to_string(), 400),
        ("negative shape", infer, json!({"inputs": [{"name": "text", "shape": [-1], "datatype": "BYTES", "data": ["a"]}]}).to_string(), 400),
        ("zero examples", infer, json!({"inputs": [{"name": "text", "shape": [0], "datatype": "BYTES", "data": []}]}).to_string(), 400),
        ("number in BYTES", infer, text(json!([5])).to_string(), 400),
        ("BYTES not UTF-8", infer, json!({"inputs": [{"name": "text", "shape": [1], "datatype": "BYTES", "parameters": {"content_type": "base64"}, "data": ["/w=="]}]}).to_string(), 400),
        ("BYTES not base64", infer, json!({"inputs": [{"name": "text", "shape": [1], "datatype": "BYTES", "parameters": {"content_type": "base64"}, "data": ["%%%"]}]}).to_string(), 400),
        ("text too long", infer, text(json!(["好".repeat(30_000)])).to_string(), 400),
        ("unknown output", infer, json!({"inputs": [{"name": "text", "shape": [1], "datatype": "BYTES", "data": ["a"]}], "outputs": [{"name": "logits"}]}).to_string(), 400),
        ("unknown model", "/v2/models/nope/infer", text(json!(["a"])).to_string(), 404),
        ("unknown path", "/v3/models", String::new(), 404),
        ("image that does not decode", "/v2/models/images/infer", json!({"inputs": [{"name": "image", "shape": [1], "datatype": "BYTES", "parameters": {"content_type": "base64"}, "data": [STANDARD.encode(b"\x89PNG\r\n\x1a\nnot really")]}]}).to_string(), 400),
        ("unknown user", "/v2/models/recommender/infer", json!({"inputs": [{"name": "user_id", "shape": [1], "datatype": "INT64", "data": [-5]}]}).to_string(), 400),
        ("k out of range", "/v2/models/recommender/infer", json!({"parameters": {"k": 0}, "inputs": [{"name": "user_id", "shape": [1], "datatype": "INT64", "data": [1]}]}).to_string(), 400),
        ("10 MB body", infer, format!("{{\"inputs\": [{{\"name\": \"text\", \"shape\": [1], \"datatype\": \"BYTES\", \"data\": [\"{}\"]}}]}}", "a".repeat(10 << 20)), 413),
    ];
    let good = text(json!(["质量很好，物流也快"]));
    for (what, path, body, expected) in &bad_bodies {
        let (status, answer) = server.send("POST", path, body.as_bytes());
        assert_eq!(status, *expected, "{what}: {answer}");
        let error: Value =
            serde_json::from_str(&answer).unwrap_or_else(|_| panic!("{what}: not JSON: {answer}"));
        let message =
            error["error"].as_str().unwrap_or_else(|| panic!("{what}: no error message: {answer}"));
        assert!(!message.is_empty(), "{what}");
        let (status, answer) = server.infer("sentiment", &good);
        assert_eq!(status, 200, "after {what}: {answer}");
    }
    assert!(bad_bodies.len() >= 20);
    // A bad request batched together with good ones fails alone.
    std::thread::scope(|scope| {
        let bad = scope.spawn(|| server.infer("sentiment", &text(json!([7]))).0);
        let goods: Vec<_> =
            (0..4).map(|_| scope.spawn(|| server.infer("sentiment", &good).0)).collect();
        assert_eq!(bad.join().unwrap(), 400);
        assert!(goods.into_iter().all(|g| g.join().unwrap() == 200));
    });
    let (status, _) = server.send("DELETE", "/v2/health/live", b"");
    assert_eq!(status, 405);
}

/// A request of `n` long reviews: keeps the worker busy for a while.
fn long_request(n: usize) -> Value {
    let review =
        "这个商品质量很好，包装也很仔细，物流速度快，客服态度非常好，下次还会再来购买。".repeat(2);
    json!({"inputs": [bytes_input("text", vec![review; n])]})
}

#[test]
fn a_full_queue_answers_503_at_once_and_sigterm_finishes_requests_in_flight() {
    let Some(fixture) = fixture() else { return };
    let bundles = [fixture.bundles[0].clone()];
    // One example per batch and one waiting request at most.
    let mut server = Server::start(&fixture.dir, &bundles, &["--queue", "1", "--max-batch", "1"]);
    let small = json!({"inputs": [bytes_input("text", vec!["不错".to_string()])]});
    let (busy, statuses) = std::thread::scope(|scope| {
        let busy = scope.spawn(|| server.infer("sentiment", &long_request(20_000)).0);
        std::thread::sleep(Duration::from_millis(300));
        let handles: Vec<_> =
            (0..8).map(|_| scope.spawn(|| server.infer("sentiment", &small).0)).collect();
        let statuses: Vec<u16> = handles.into_iter().map(|h| h.join().unwrap()).collect();
        (busy.join().unwrap(), statuses)
    });
    assert_eq!(busy, 200);
    assert!(statuses.contains(&503) && statuses.contains(&200), "{statuses:?}");
    assert!(statuses.iter().all(|s| *s == 200 || *s == 503), "{statuses:?}");
    let (_, metrics) = server.get("/metrics");
    assert!(!metrics.contains("code=\"503\"} 0"), "{metrics}");
    // SIGTERM while a request runs: it is answered, then the server exits with code 0.
    let pid = server.child.id().to_string();
    let in_flight = std::thread::scope(|scope| {
        let request = scope.spawn(|| server.infer("sentiment", &long_request(20_000)).0);
        std::thread::sleep(Duration::from_millis(300));
        // The shell's own `kill`: no procps needed.
        let term = format!("kill -TERM {pid}");
        assert!(Command::new("sh").args(["-c", &term]).status().unwrap().success());
        request.join().unwrap()
    });
    assert_eq!(in_flight, 200);
    let started = Instant::now();
    let status = loop {
        if let Some(status) = server.child.try_wait().unwrap() {
            break status;
        }
        assert!(started.elapsed() < Duration::from_secs(30), "still running 30 s after SIGTERM");
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(status.success(), "{status:?}");
}

#[test]
fn serve_refuses_bad_bundles_in_one_line() {
    let dir = tempfile::TempDir::new().unwrap();
    let missing = shopnet(&["serve", "--bundle", "nope", "--port", "0"], dir.path());
    assert_user_error(&missing, "nope");
    fs::create_dir_all(dir.path().join("run")).unwrap();
    let queue = shopnet(&["serve", "--bundle", "run", "--port", "0", "--queue", "0"], dir.path());
    assert_user_error(&queue, "--queue");
    let batch =
        shopnet(&["serve", "--bundle", "run", "--port", "0", "--max-batch", "0"], dir.path());
    assert_user_error(&batch, "--max-batch");
    let Some(fixture) = fixture() else { return };
    let run = fs::read_dir(fixture.dir.join("runs")).unwrap().next().unwrap().unwrap().path();
    let run = run.to_str().unwrap();
    let not_bundle = shopnet(&["serve", "--bundle", run, "--port", "0"], dir.path());
    assert_user_error(&not_bundle, "a run directory; serve an export bundle");
}
