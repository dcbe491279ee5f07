//! A rendered `report.html` read the way a person's browser reads it: parsed with an HTML
//! parser and checked against the run's own files (metrics.csv, report.json), then opened
//! in headless Chromium, which must load it without a console message; its screenshot is
//! kept under the target directory.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use base64::Engine;

/// The page size the issue allows for any run.
const MAX_REPORT_BYTES: u64 = 5 << 20;
const BROWSER_LIMIT: Duration = Duration::from_secs(90);

pub struct Report {
    pub path: PathBuf,
    html: String,
}

impl Report {
    pub fn open(path: &Path) -> Self {
        let html = fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let size = fs::metadata(path).unwrap().len();
        assert!(size < MAX_REPORT_BYTES, "{}: {size} bytes", path.display());
        Self { path: path.to_path_buf(), html }
    }

    /// Runs `read` over the parsed page.
    fn with_dom<T>(&self, read: impl FnOnce(&tl::VDom<'_>) -> T) -> T {
        let dom = tl::parse(&self.html, tl::ParserOptions::default()).expect("the page parses");
        read(&dom)
    }

    pub fn has(&self, id: &str) -> bool {
        self.with_dom(|dom| dom.get_element_by_id(id).is_some())
    }

    /// The tags `selector` matches inside the element `id` (the whole page for `None`),
    /// each read with `read`.
    fn each<T>(
        &self,
        id: Option<&str>,
        selector: &str,
        read: impl Fn(&tl::HTMLTag<'_>, &tl::Parser<'_>) -> Option<T>,
    ) -> Vec<T> {
        self.with_dom(|dom| {
            let parser = dom.parser();
            let handles: Vec<tl::NodeHandle> = match id {
                None => dom.query_selector(selector).expect("a valid selector").collect(),
                Some(id) => {
                    let scope = dom.get_element_by_id(id).unwrap_or_else(|| panic!("no #{id}"));
                    let scope = scope.get(parser).unwrap().as_tag().unwrap();
                    scope.query_selector(parser, selector).expect("a valid selector").collect()
                }
            };
            handles
                .iter()
                .filter_map(|handle| read(handle.get(parser)?.as_tag()?, parser))
                .collect()
        })
    }

    /// The inner text of each element `selector` matches inside `#id`.
    pub fn texts(&self, id: &str, selector: &str) -> Vec<String> {
        self.each(Some(id), selector, |tag, parser| Some(tag.inner_text(parser).trim().to_string()))
    }

    /// The value of `attribute` on each element `selector` matches (inside `#id`, if given).
    pub fn attributes(&self, id: Option<&str>, selector: &str, attribute: &str) -> Vec<String> {
        self.each(id, selector, |tag, _| {
            Some(tag.attributes().get(attribute)??.as_utf8_str().into_owned())
        })
    }

    /// A table's body rows (`td` cells, the row's `th` first when it has one).
    pub fn table(&self, id: &str) -> Vec<Vec<String>> {
        self.with_dom(|dom| {
            let parser = dom.parser();
            let table = dom.get_element_by_id(id).unwrap_or_else(|| panic!("no #{id}"));
            let table = table.get(parser).unwrap().as_tag().unwrap();
            table
                .query_selector(parser, "tr")
                .unwrap()
                .filter_map(|row| {
                    let row = row.get(parser)?.as_tag()?;
                    let cells: Vec<String> = row
                        .children()
                        .top()
                        .iter()
                        .filter_map(|c| c.get(parser)?.as_tag())
                        .filter(|t| t.name() == "td" || t.name() == "th")
                        .map(|t| t.inner_text(parser).trim().to_string())
                        .collect();
                    let has_data = row.children().top().iter().any(|c| {
                        c.get(parser).and_then(|n| n.as_tag()).is_some_and(|t| t.name() == "td")
                    });
                    has_data.then_some(cells)
                })
                .collect()
        })
    }

    /// The last point a chart's series was drawn with: (x, y).
    pub fn last_point(&self, figure: &str, series: &str) -> (f64, f64) {
        self.with_dom(|dom| {
            let parser = dom.parser();
            let handle = dom.get_element_by_id(figure).unwrap_or_else(|| panic!("no #{figure}"));
            let tag = handle.get(parser).unwrap().as_tag().unwrap();
            let found = tag.query_selector(parser, "data").unwrap().find_map(|handle| {
                let tag = handle.get(parser)?.as_tag()?;
                let attribute = |name: &str| -> Option<String> {
                    Some(tag.attributes().get(name)??.as_utf8_str().into_owned())
                };
                (attribute("data-series")? == series).then(|| {
                    (
                        attribute("data-x").unwrap().parse().unwrap(),
                        attribute("value").unwrap().parse().unwrap(),
                    )
                })
            });
            found.unwrap_or_else(|| panic!("no series {series} in #{figure:?}"))
        })
    }
}

fn report_json(run: &Path) -> serde_json::Value {
    serde_json::from_str(&fs::read_to_string(run.join("report.json")).unwrap()).unwrap()
}

fn close(a: f64, b: f64, tolerance: f64) -> bool {
    (a - b).abs() <= tolerance
}

/// The report `train` wrote into `run`, checked for what every family's page holds: the
/// run's overview, the training curves ending where metrics.csv ends, the test metrics as
/// report.json has them, the config; then opened in a browser as `name`.
pub fn check_common(run: &Path, name: &str) -> Report {
    let report = Report::open(&run.join("report.html"));
    for section in ["overview", "training", "metrics", "config"] {
        assert!(report.has(section), "no #{section} in {}", report.path.display());
    }
    let csv = fs::read_to_string(run.join("metrics.csv")).unwrap();
    let header: Vec<&str> = csv.lines().next().unwrap().split(',').collect();
    let last: Vec<f64> =
        csv.lines().last().unwrap().split(',').map(|v| v.parse().unwrap()).collect();
    let column = |name: &str| last[header.iter().position(|h| *h == name).unwrap()];
    let (epoch, loss) = report.last_point("chart-loss", "train_loss");
    assert_eq!((epoch, loss), (column("epoch"), column("train_loss")));
    // The recommenders have no validation split, and so no validation loss.
    if header.contains(&"val_loss") {
        assert_eq!(report.last_point("chart-loss", "val_loss").1, column("val_loss"));
    }

    // Every metric of the page is report.json's test metric, printed to four places.
    let recorded = report_json(run);
    let rows = report.table("metrics-table");
    assert!(!rows.is_empty());
    for row in &rows {
        let key = format!("test_{}", row[0]);
        let expected = recorded["metrics"][&key]
            .as_f64()
            .unwrap_or_else(|| panic!("{key} not in report.json"));
        let shown: f64 = row[1].parse().unwrap();
        assert!(close(shown, expected, 5e-5), "{key}: page {shown}, report.json {expected}");
    }
    open_in_browser(&report.path, name);
    report
}

/// A classifier's sections: the confusion matrix sums to the split and its diagonal gives
/// eval's accuracy; one per-class row per class; the mistakes sampled.
pub fn check_classes(report: &Report, run: &Path, split_size: Option<usize>, classes: usize) {
    let counts: Vec<usize> = report
        .attributes(Some("confusion-table"), "td", "data-count")
        .iter()
        .map(|c| c.parse().unwrap())
        .collect();
    assert_eq!(counts.len(), classes * classes);
    let total: usize = counts.iter().sum();
    if let Some(size) = split_size {
        assert_eq!(total, size);
    }
    let diagonal: usize = (0..classes).map(|c| counts[c * classes + c]).sum();
    let accuracy = report_json(run)["metrics"]["test_accuracy"].as_f64().unwrap();
    assert!(
        close(diagonal as f64 / total as f64, accuracy, 1e-9),
        "{diagonal}/{total} vs {accuracy}"
    );
    assert_eq!(report.table("per-class-table").len(), classes);
    assert!(report.has("misclassified"));
}

/// The purchase-intent sections: the ROC-AUC printed beside the curves is report.json's.
pub fn check_binary(report: &Report, run: &Path) {
    for id in ["chart-roc", "chart-pr", "chart-calibration", "chart-histogram"] {
        assert!(report.has(id), "no #{id}");
    }
    let metrics = &report_json(run)["metrics"];
    let areas = report.table("areas-table");
    let net: f64 = areas[0][1].parse().unwrap();
    let baseline: f64 = areas[1][1].parse().unwrap();
    assert!(close(net, metrics["test_roc_auc"].as_f64().unwrap(), 5e-5), "{areas:?}");
    assert!(close(baseline, metrics["test_cart_baseline_roc_auc"].as_f64().unwrap(), 5e-5));
    // The ROC curve ends at (1, 1).
    assert_eq!(report.last_point("chart-roc", "net"), (1.0, 1.0));
}

/// The recommender's sections: Recall@K for K = 1..50, its value at each eval K being
/// report.json's; the long-tail plot.
pub fn check_ranking(report: &Report, run: &Path) {
    assert!(report.has("chart-long-tail"));
    let (k, _) = report.last_point("chart-ranking", "Recall@K");
    assert_eq!(k, 50.0);
    let recall_20 = report_json(run)["metrics"]["test_recall@20"].as_f64().unwrap();
    let row = report.table("metrics-table").into_iter().find(|r| r[0] == "recall@20").unwrap();
    assert!(close(row[1].parse().unwrap(), recall_20, 5e-5));
}

/// The image sections: the embedding map, and every picture a PNG carried in the page.
pub fn check_images(report: &Report) {
    assert!(report.has("chart-embedding") && report.has("neighbours"));
    let sources = report.attributes(None, "img", "src");
    assert!(!sources.is_empty());
    for source in sources {
        let encoded = source.strip_prefix("data:image/png;base64,").expect("an inline PNG");
        let png = base64::engine::general_purpose::STANDARD.decode(encoded).unwrap();
        assert!(png.starts_with(b"\x89PNG\r\n\x1a\n"));
    }
}

fn chromium() -> Option<&'static str> {
    ["chromium", "chromium-browser", "google-chrome"].into_iter().find(|name| {
        Command::new(name)
            .arg("--version")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    })
}

/// Opens `page` in headless Chromium: the page must load without any console message (the
/// page's content security policy turns any load of something not inside it into one),
/// and its screenshot goes to `<target>/tmp/report-screenshots/<name>.png`. Without
/// Chromium the check says so and skips, unless `SHOPNET_REQUIRE_CHROMIUM` is set (CI).
pub fn open_in_browser(page: &Path, name: &str) {
    let Some(browser) = chromium() else {
        assert!(
            std::env::var_os("SHOPNET_REQUIRE_CHROMIUM").is_none(),
            "Chromium required but not installed"
        );
        eprintln!("skipping the browser check: no chromium on PATH");
        return;
    };
    let shots = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("report-screenshots");
    fs::create_dir_all(&shots).unwrap();
    let shot = shots.join(format!("{name}.png"));
    let _ = fs::remove_file(&shot);
    let profile = tempfile::TempDir::new().unwrap();
    let url = format!("file://{}", page.canonicalize().unwrap().display());
    let mut child = Command::new(browser)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--hide-scrollbars",
            "--no-first-run",
        ])
        .args(["--enable-logging=stderr", "--v=0", "--window-size=1280,3200"])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .arg(format!("--screenshot={}", shot.display()))
        .arg(&url)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("chromium starts");
    let Some((status, log)) = super::wait_within(&mut child, BROWSER_LIMIT) else {
        panic!("chromium did not render {url} within {} s", BROWSER_LIMIT.as_secs());
    };
    assert!(status.success(), "chromium failed on {url}: {log}");
    let console: Vec<&str> = log.lines().filter(|l| l.contains(":CONSOLE")).collect();
    assert!(console.is_empty(), "{url}: console messages:\n{}", console.join("\n"));
    let size = fs::metadata(&shot).map(|m| m.len()).unwrap_or(0);
    assert!(size > 10_000, "{}: no screenshot ({size} bytes)", shot.display());
}
