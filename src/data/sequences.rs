//! Per-user event sequences and purchase labels from a Taobao-style event log.
//!
//! A cut time splits each user's log: the last `L` events before it (oldest first) are the
//! sequence, and a `buy` in the window after it is the label. The log is read streaming;
//! memory is one bounded buffer of at most `L` events per user, whatever the log's size
//! or order. Users fall into train / validation / test by a seeded hash of their id, so
//! the split needs no second pass and no user lands in two splits.

use std::collections::{HashMap, VecDeque};
use std::fs::File;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, anyhow, bail};
use serde::{Deserialize, Serialize};

use super::events::{BadRows, Behavior, Event, ReadStats, for_each_event, for_each_event_in};
use crate::base::config::{check_fraction, check_positive};
use crate::base::split::Split;

/// Token id of left padding.
pub const PAD: u32 = 0;
/// Token id of a `(behavior, category)` pair the vocabulary does not hold.
pub const OOV: u32 = 1;
const RESERVED_TOKENS: usize = 2;
const DAY: i64 = 86_400;

/// A time in a config: Unix seconds, or text such as `"last 1 days"` (a cut) or
/// `"12 hours"` (a window).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum TimeSpec {
    Seconds(i64),
    Text(String),
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SequenceDataConfig {
    /// The event log (`user_id,item_id,category_id,behavior,timestamp`).
    pub events: PathBuf,
    /// Where history ends and the label window starts: Unix seconds, or
    /// `"last N days"` / `"last N hours"` before the log's last event.
    pub cut: TimeSpec,
    /// Length of the label window after the cut: seconds, or `"N days"` / `"N hours"`.
    #[serde(default = "default_window")]
    pub window: TimeSpec,
    #[serde(default = "default_sequence_length")]
    pub sequence_length: usize,
    /// A `(behavior, category)` pair needs this many occurrences in the training
    /// sequences to get its own token.
    #[serde(default = "default_min_count")]
    pub min_count: u64,
    /// Vocabulary size, padding and out-of-vocabulary ids included.
    #[serde(default = "default_vocab_size")]
    pub vocab_size: usize,
    #[serde(default = "default_fraction")]
    pub val_fraction: f64,
    #[serde(default = "default_fraction")]
    pub test_fraction: f64,
    /// Seeds the user split (independent of the training seed).
    #[serde(default)]
    pub split_seed: u64,
    /// Count and leave out rows that do not parse instead of stopping at the first.
    #[serde(default)]
    pub skip_bad_rows: bool,
}

fn default_window() -> TimeSpec {
    TimeSpec::Text("1 day".into())
}
fn default_sequence_length() -> usize {
    50
}
fn default_min_count() -> u64 {
    2
}
fn default_vocab_size() -> usize {
    10_000
}
fn default_fraction() -> f64 {
    0.1
}

/// The cut of a config, resolved against the log when it is relative to its end.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cut {
    At(i64),
    BeforeLastEvent(i64),
}

impl SequenceDataConfig {
    /// Checks every value, naming the key of the first bad one.
    pub fn validate(&self) -> Result<(Cut, i64)> {
        check_positive("data.sequence_length", self.sequence_length)?;
        if self.vocab_size <= RESERVED_TOKENS {
            bail!(
                "data.vocab_size: must be more than {RESERVED_TOKENS} (padding and out-of-vocabulary take ids 0 and 1)"
            );
        }
        check_fraction("data.val_fraction", self.val_fraction)?;
        check_fraction("data.test_fraction", self.test_fraction)?;
        if self.val_fraction + self.test_fraction >= 1.0 {
            bail!(
                "data.val_fraction + data.test_fraction: must leave users for training, got {}",
                self.val_fraction + self.test_fraction
            );
        }
        let cut = match &self.cut {
            TimeSpec::Seconds(at) => Cut::At(*at),
            TimeSpec::Text(text) => {
                let span = text.trim().strip_prefix("last ").and_then(parse_span);
                Cut::BeforeLastEvent(span.ok_or_else(|| anyhow!("data.cut: expected Unix seconds or \"last N days\" / \"last N hours\", got {text:?}"))?)
            }
        };
        let window = match &self.window {
            TimeSpec::Seconds(seconds) => Some(*seconds),
            TimeSpec::Text(text) => parse_span(text),
        };
        match window {
            Some(seconds) if seconds > 0 => Ok((cut, seconds)),
            _ => bail!(
                "data.window: expected a positive number of seconds or \"N days\" / \"N hours\", got {:?}",
                self.window
            ),
        }
    }

    fn bad_rows(&self) -> BadRows {
        if self.skip_bad_rows { BadRows::Skip } else { BadRows::Fail }
    }
}

/// `"2 days"`, `"1 day"`, `"12 hours"`, `"90 minutes"` or `"30 seconds"`, in seconds.
fn parse_span(text: &str) -> Option<i64> {
    let mut parts = text.split_whitespace();
    let count: f64 = parts.next()?.parse().ok()?;
    let unit = match parts.next()?.trim_end_matches('s') {
        "day" => DAY as f64,
        "hour" => 3600.0,
        "minute" => 60.0,
        "second" => 1.0,
        _ => return None,
    };
    (parts.next().is_none() && count.is_finite() && count > 0.0)
        .then(|| (count * unit).round() as i64)
}

/// A `(behavior, category)` pair packed into one integer.
fn pair_key(event: &Event) -> Result<u64> {
    if event.category >= 1 << 62 {
        bail!("category_id {} is too large (at most 2^62 - 1)", event.category);
    }
    Ok(event.category << 2 | event.behavior as u64)
}

fn unpack_key(key: u64) -> (Behavior, u64) {
    let behavior = [Behavior::Pv, Behavior::Fav, Behavior::Cart, Behavior::Buy][(key & 3) as usize];
    (behavior, key >> 2)
}

/// One user's latest events before the cut, and what happened after it.
#[derive(Debug, Default)]
struct History {
    /// `(timestamp, pair key)`, oldest first, at most `L` long.
    events: VecDeque<(i64, u64)>,
    carts: u32,
    bought: bool,
}

impl History {
    /// Keeps the `capacity` latest events by timestamp, whatever order they arrive in;
    /// events with equal timestamps keep file order.
    fn push(&mut self, timestamp: i64, key: u64, capacity: usize) {
        let position = self.events.partition_point(|&(t, _)| t <= timestamp);
        if self.events.len() == capacity {
            if position == 0 {
                return;
            }
            self.events.pop_front();
            self.events.insert(position - 1, (timestamp, key));
        } else {
            if self.events.len() == self.events.capacity() {
                // Grow by doubling but never past L: most users have short logs.
                let target = (self.events.capacity() * 2).max(4).min(capacity);
                self.events.reserve_exact(target - self.events.len());
            }
            self.events.insert(position, (timestamp, key));
        }
    }
}

/// Adds an event before the cut to its user's history.
fn record(histories: &mut HashMap<u64, History>, event: &Event, capacity: usize) -> Result<()> {
    let key = pair_key(event)?;
    let history = histories.entry(event.user).or_default();
    history.push(event.timestamp, key, capacity);
    history.carts += u32::from(event.behavior == Behavior::Cart);
    Ok(())
}

/// One user's tokenised sequence from the text of its events (rows of the log format, a
/// header allowed): the row `score` builds for that user from a log of these events.
pub fn user_sequence(
    name: &str,
    text: &[u8],
    sequence_length: usize,
    vocabulary: &Vocabulary,
) -> Result<(u64, Vec<u32>)> {
    let mut histories = HashMap::new();
    for_each_event_in(name, text, BadRows::Fail, |event| {
        record(&mut histories, &event, sequence_length).map_err(|err| anyhow!("{name}: {err}"))
    })?;
    if histories.len() != 1 {
        bail!("{name}: the events of one user are expected, got {} users", histories.len());
    }
    let (user, history) = histories.into_iter().next().expect("one user");
    let mut examples = Examples::new(sequence_length);
    examples.push(user, &history, vocabulary);
    Ok((user, examples.tokens))
}

/// Every user's history and label, straight from the log.
#[derive(Debug)]
pub struct UserHistories {
    histories: HashMap<u64, History>,
    pub read: ReadStats,
    pub cut: i64,
}

impl UserHistories {
    /// Reads `config.events` with the config's cut and window.
    pub fn for_training(config: &SequenceDataConfig) -> Result<Self> {
        let (cut, window) = config.validate()?;
        Self::read(&config.events, config, cut, Some(window))
    }

    /// Reads a log to score: every event is history (there is no label window).
    pub fn for_scoring(path: &Path, config: &SequenceDataConfig) -> Result<Self> {
        Self::read(path, config, Cut::At(i64::MAX), None)
    }

    fn read(
        path: &Path,
        config: &SequenceDataConfig,
        cut: Cut,
        window: Option<i64>,
    ) -> Result<Self> {
        let bad_rows = config.bad_rows();
        let cut = match cut {
            Cut::At(at) => at,
            Cut::BeforeLastEvent(span) => {
                let mut last = i64::MIN;
                for_each_event(path, bad_rows, |event| {
                    last = last.max(event.timestamp);
                    Ok(())
                })?;
                last.saturating_sub(span).saturating_add(1)
            }
        };
        let capacity = config.sequence_length;
        let mut histories: HashMap<u64, History> = HashMap::new();
        let (mut last_event, mut labelled_events) = (i64::MIN, 0u64);
        let read = for_each_event(path, bad_rows, |event| {
            last_event = last_event.max(event.timestamp);
            if event.timestamp < cut {
                record(&mut histories, &event, capacity)
                    .map_err(|err| anyhow!("{}: {err}", path.display()))?;
            } else if window.is_some_and(|w| event.timestamp.saturating_sub(cut) < w) {
                labelled_events += 1;
                if event.behavior == Behavior::Buy {
                    histories.entry(event.user).or_default().bought = true;
                }
            }
            Ok(())
        })?;
        if window.is_some() && labelled_events == 0 {
            bail!(
                "data.cut: {} is {} the last event of {} ({}): no event falls in the label window, so there are no labels",
                describe_time(cut),
                if cut > last_event { "after" } else { "too close to" },
                path.display(),
                describe_time(last_event)
            );
        }
        histories.retain(|_, history| !history.events.is_empty());
        if histories.is_empty() {
            bail!(
                "{}: no user has an event before the cut ({})",
                path.display(),
                describe_time(cut)
            );
        }
        Ok(Self { histories, read, cut })
    }

    pub fn len(&self) -> usize {
        self.histories.len()
    }

    pub fn is_empty(&self) -> bool {
        self.histories.is_empty()
    }

    /// User ids in ascending order: outputs are deterministic whatever the log's order.
    pub fn sorted_users(&self) -> Vec<u64> {
        let mut users: Vec<u64> = self.histories.keys().copied().collect();
        users.sort_unstable();
        users
    }

    /// Fits the vocabulary on the sequences of the users in `split`.
    pub fn fit_vocabulary(&self, config: &SequenceDataConfig, split: Split) -> Vocabulary {
        let mut counts: HashMap<u64, u64> = HashMap::new();
        for (&user, history) in &self.histories {
            if split_of(user, config) == split {
                for &(_, key) in &history.events {
                    *counts.entry(key).or_default() += 1;
                }
            }
        }
        Vocabulary::from_counts(counts, config.min_count, config.vocab_size)
    }

    /// The examples of one split, tokenised with `vocabulary`, users in ascending order.
    pub fn examples(
        &self,
        config: &SequenceDataConfig,
        split: Split,
        vocabulary: &Vocabulary,
    ) -> Examples {
        let users: Vec<u64> = self
            .sorted_users()
            .into_iter()
            .filter(|&user| split_of(user, config) == split)
            .collect();
        let mut examples = Examples::new(config.sequence_length);
        for user in users {
            examples.push(user, &self.histories[&user], vocabulary);
        }
        examples
    }

    /// Removes and tokenises the given users (for scoring in bounded batches).
    pub fn take(
        &mut self,
        users: &[u64],
        sequence_length: usize,
        vocabulary: &Vocabulary,
    ) -> Examples {
        let mut examples = Examples::new(sequence_length);
        for user in users {
            if let Some(history) = self.histories.remove(user) {
                examples.push(*user, &history, vocabulary);
            }
        }
        examples
    }
}

/// Tokenised sequences, one row of `sequence_length` ids per user, left-padded.
#[derive(Debug, Clone, Default)]
pub struct Examples {
    pub sequence_length: usize,
    pub users: Vec<u64>,
    pub tokens: Vec<u32>,
    pub labels: Vec<bool>,
    /// `cart` events in the whole history before the cut: the baseline's score.
    pub carts: Vec<u32>,
}

impl Examples {
    fn new(sequence_length: usize) -> Self {
        Self { sequence_length, ..Self::default() }
    }

    fn push(&mut self, user: u64, history: &History, vocabulary: &Vocabulary) {
        let padding = self.sequence_length - history.events.len();
        self.tokens.extend(std::iter::repeat_n(PAD, padding));
        self.tokens.extend(history.events.iter().map(|&(_, key)| vocabulary.token(key)));
        self.users.push(user);
        self.labels.push(history.bought);
        self.carts.push(history.carts);
    }

    pub fn len(&self) -> usize {
        self.users.len()
    }

    pub fn is_empty(&self) -> bool {
        self.users.is_empty()
    }

    pub fn row(&self, index: usize) -> &[u32] {
        &self.tokens[index * self.sequence_length..(index + 1) * self.sequence_length]
    }

    pub fn positives(&self) -> usize {
        self.labels.iter().filter(|&&l| l).count()
    }
}

/// Which split a user belongs to: a seeded hash of the id, so it is the same in every
/// pass, every run and every file the user appears in.
pub fn split_of(user: u64, config: &SequenceDataConfig) -> Split {
    let unit =
        (splitmix64(user ^ splitmix64(config.split_seed)) >> 11) as f64 / (1u64 << 53) as f64;
    if unit < config.test_fraction {
        Split::Test
    } else if unit < config.test_fraction + config.val_fraction {
        Split::Val
    } else {
        Split::Train
    }
}

fn splitmix64(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// The `(behavior, category)` pairs that get their own token, most frequent first.
#[derive(Debug, Clone, PartialEq)]
pub struct Vocabulary {
    /// `(pair key, count)`; entry `i` has token id `i + 2`.
    entries: Vec<(u64, u64)>,
    ids: HashMap<u64, u32>,
}

pub const VOCABULARY_FILE: &str = "vocab.csv";

impl Vocabulary {
    fn from_counts(counts: HashMap<u64, u64>, min_count: u64, vocab_size: usize) -> Self {
        let mut entries: Vec<(u64, u64)> =
            counts.into_iter().filter(|&(_, count)| count >= min_count).collect();
        // Ties broken by key so that a refit on the same data gives the same ids.
        entries.sort_unstable_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
        entries.truncate(vocab_size - RESERVED_TOKENS);
        Self::from_entries(entries)
    }

    fn from_entries(entries: Vec<(u64, u64)>) -> Self {
        let ids = entries
            .iter()
            .enumerate()
            .map(|(i, &(key, _))| (key, (i + RESERVED_TOKENS) as u32))
            .collect();
        Self { entries, ids }
    }

    /// Number of token ids, padding and out-of-vocabulary included.
    pub fn len(&self) -> usize {
        self.entries.len() + RESERVED_TOKENS
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    fn token(&self, key: u64) -> u32 {
        self.ids.get(&key).copied().unwrap_or(OOV)
    }

    /// `token_id,behavior,category_id,count`, one row per pair.
    /// The vocabulary as `vocab.csv` (what [`load`](Self::load) reads).
    pub fn to_csv(&self) -> Vec<u8> {
        let mut out = String::from("token_id,behavior,category_id,count\n");
        for (i, &(key, count)) in self.entries.iter().enumerate() {
            let (behavior, category) = unpack_key(key);
            out.push_str(&format!(
                "{},{},{category},{count}\n",
                i + RESERVED_TOKENS,
                behavior.name()
            ));
        }
        out.into_bytes()
    }

    pub fn load(path: &Path) -> Result<Self> {
        let file = File::open(path)
            .with_context(|| format!("{}: cannot open the run's vocabulary", path.display()))?;
        let mut entries = Vec::new();
        for (number, line) in BufReader::new(file).lines().enumerate().skip(1) {
            let line = line.with_context(|| format!("{}: cannot read", path.display()))?;
            let bad = || {
                anyhow!(
                    "{}:{}: expected token_id,behavior,category_id,count, got {line:?}",
                    path.display(),
                    number + 1
                )
            };
            let fields: Vec<&str> = line.split(',').collect();
            let [id, behavior, category, count] = &fields[..] else { return Err(bad()) };
            let behavior = Behavior::parse(behavior).ok_or_else(bad)?;
            let (id, category, count): (usize, u64, u64) = (
                id.parse().map_err(|_| bad())?,
                category.parse().map_err(|_| bad())?,
                count.parse().map_err(|_| bad())?,
            );
            if id != entries.len() + RESERVED_TOKENS {
                return Err(bad());
            }
            entries.push((category << 2 | behavior as u64, count));
        }
        Ok(Self::from_entries(entries))
    }
}

/// `2017-12-02 16:00:00 UTC (1512230400)`.
pub fn describe_time(timestamp: i64) -> String {
    match chrono::DateTime::from_timestamp(timestamp, 0) {
        Some(time) => format!("{} ({timestamp})", time.format("%Y-%m-%d %H:%M:%S UTC")),
        None => timestamp.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(path: &Path, cut: TimeSpec) -> SequenceDataConfig {
        SequenceDataConfig {
            events: path.to_path_buf(),
            cut,
            window: TimeSpec::Seconds(100),
            sequence_length: 3,
            min_count: 1,
            vocab_size: 10,
            val_fraction: 0.0,
            test_fraction: 0.0,
            split_seed: 0,
            skip_bad_rows: false,
        }
    }

    fn log(text: &str) -> (tempfile::TempDir, PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("log.csv");
        std::fs::write(&path, text).unwrap();
        (dir, path)
    }

    #[test]
    fn sequences_keep_the_latest_events_before_the_cut_and_label_buys_in_the_window() {
        // User 1: four history events (out of order), the oldest dropped; buys at 1050.
        // User 2: history only; its buy at 1200 is after the window. User 3: window only.
        let (_dir, path) = log(
            "1,9,7,pv,10\n1,9,7,cart,40\n2,9,8,pv,20\n1,9,8,pv,5\n1,9,7,pv,30\n1,9,7,buy,1050\n2,9,8,buy,1200\n3,9,7,pv,1010\n",
        );
        let config = config(&path, TimeSpec::Seconds(1000));
        let histories = UserHistories::for_training(&config).unwrap();
        assert_eq!(histories.sorted_users(), vec![1, 2]);
        let vocabulary = histories.fit_vocabulary(&config, Split::Train);
        // Counts over the kept sequences: (pv,7) twice, (cart,7) once, (pv,8) once; the
        // dropped oldest event (pv,8 at t=5) is not counted.
        assert_eq!(vocabulary.entries, vec![(7 << 2, 2), (7 << 2 | 2, 1), (8 << 2, 1)]);
        let examples = histories.examples(&config, Split::Train, &vocabulary);
        assert_eq!(examples.users, vec![1, 2]);
        assert_eq!(examples.row(0), &[2, 2, 3]);
        assert_eq!(examples.row(1), &[PAD, PAD, 4]);
        assert_eq!(examples.labels, vec![true, false]);
        assert_eq!(examples.carts, vec![1, 0]);
    }

    #[test]
    fn vocabulary_caps_by_count_and_marks_unknown_pairs() {
        let counts = HashMap::from([(4, 5), (8, 1), (12, 9), (16, 5)]);
        let vocabulary = Vocabulary::from_counts(counts, 2, 4);
        // min_count drops key 8; vocab_size 4 leaves two entries: 12, then the tie 4 < 16.
        assert_eq!(vocabulary.entries, vec![(12, 9), (4, 5)]);
        assert_eq!((vocabulary.token(12), vocabulary.token(4), vocabulary.token(16)), (2, 3, OOV));
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(VOCABULARY_FILE);
        std::fs::write(&path, vocabulary.to_csv()).unwrap();
        assert_eq!(
            std::fs::read_to_string(&path).unwrap(),
            "token_id,behavior,category_id,count\n2,pv,3,9\n3,pv,1,5\n"
        );
        assert_eq!(Vocabulary::load(&path).unwrap(), vocabulary);
    }

    #[test]
    fn relative_cut_and_spans() {
        assert_eq!(parse_span("2 days"), Some(2 * DAY));
        assert_eq!(parse_span("1 day"), Some(DAY));
        assert_eq!(parse_span("12 hours"), Some(43_200));
        assert_eq!(parse_span("1 fortnight"), None);
        let (_dir, path) = log("1,9,7,pv,10\n1,9,7,buy,100000\n");
        let mut relative = config(&path, TimeSpec::Text("last 1 days".into()));
        relative.window = TimeSpec::Text("1 day".into());
        let histories = UserHistories::for_training(&relative).unwrap();
        assert_eq!(histories.cut, 100_000 - DAY + 1);
    }

    #[test]
    fn a_cut_after_the_last_event_is_an_error() {
        let (_dir, path) = log("1,9,7,pv,10\n");
        let err = UserHistories::for_training(&config(&path, TimeSpec::Seconds(1_600_000_000)))
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with(
                "data.cut: 2020-09-13 12:26:40 UTC (1600000000) is after the last event of"
            ),
            "{err}"
        );
    }

    #[test]
    fn split_is_deterministic_and_near_its_fractions() {
        let (_dir, path) = log("1,9,7,pv,10\n");
        let mut config = config(&path, TimeSpec::Seconds(5));
        config.val_fraction = 0.1;
        config.test_fraction = 0.2;
        let splits: Vec<Split> = (0..20_000).map(|user| split_of(user, &config)).collect();
        let share =
            |split| splits.iter().filter(|&&s| s == split).count() as f64 / splits.len() as f64;
        assert!((share(Split::Test) - 0.2).abs() < 0.01 && (share(Split::Val) - 0.1).abs() < 0.01);
        assert_eq!(splits, (0..20_000).map(|user| split_of(user, &config)).collect::<Vec<_>>());
        config.split_seed = 1;
        assert_ne!(splits, (0..20_000).map(|user| split_of(user, &config)).collect::<Vec<_>>());
    }
}
