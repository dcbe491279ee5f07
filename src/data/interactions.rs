//! User-item interactions for recommendation, split into train and test.
//!
//! Three sources, all read line by line:
//! - `lightgcn`: the LightGCN split format (`train.txt` / `test.txt`): a user id, then the
//!   ids of the items it interacted with, space-separated, one user per line.
//! - `pairs`: one interaction per line, `user item [weight]`, tab- or space-separated (the
//!   LastFM split of LightGCN-PyTorch); the weight column is ignored.
//! - `taobao`: a Taobao UserBehavior event log (`events`). `behaviors` says which
//!   behaviors make an interaction and with what weight (a pair's weight is the largest
//!   among its events; it weighs the pair's edge in the graph). Ids are remapped densely
//!   and kept for output. Each user's items are ordered by first interaction and the
//!   latest `test_fraction` of them is held out for testing.
//!
//! In the two split formats ids are non-negative integers, `id_base` (0 or 1) being the
//! smallest; CRLF line ends are accepted. Users and items are numbered `0..num_users` and
//! `0..num_items`: given in the config (then an id outside the range is an error) or taken
//! from the largest id seen.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fs::File;
use std::io::{BufRead, BufReader};
use std::path::Path;

use anyhow::{Context, Result, anyhow, bail};
use serde::{Deserialize, Serialize};

use super::events::{BadRows, Behavior, for_each_event};
use crate::base::config::check_fraction;
use crate::base::quote::quoted;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum InteractionFormat {
    Lightgcn,
    Pairs,
    Taobao,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InteractionDataConfig {
    pub format: InteractionFormat,
    /// `lightgcn` and `pairs`: the two split files.
    #[serde(default)]
    pub train: Option<String>,
    #[serde(default)]
    pub test: Option<String>,
    /// `taobao`: the event log.
    #[serde(default)]
    pub events: Option<String>,
    /// `taobao`: interaction weight per behavior; a behavior absent or weighted 0 is ignored.
    #[serde(default = "default_behaviors")]
    pub behaviors: BTreeMap<Behavior, f32>,
    /// `taobao`: the share of each user's items, latest first, held out for testing.
    #[serde(default = "default_test_fraction")]
    pub test_fraction: f64,
    /// The smallest id in the files: 0 (LightGCN's Gowalla) or 1 (LastFM).
    #[serde(default)]
    pub id_base: u64,
    /// Declared sizes; when set, an id outside them is an error.
    #[serde(default)]
    pub num_users: Option<usize>,
    #[serde(default)]
    pub num_items: Option<usize>,
}

fn default_behaviors() -> BTreeMap<Behavior, f32> {
    [(Behavior::Pv, 1.0), (Behavior::Fav, 1.0), (Behavior::Cart, 1.0), (Behavior::Buy, 1.0)].into()
}

fn default_test_fraction() -> f64 {
    0.2
}

/// Interactions as (user, item) index pairs, sorted, duplicates removed.
#[derive(Debug, Clone)]
pub struct Interactions {
    pub num_users: usize,
    pub num_items: usize,
    pub train: Vec<(u32, u32)>,
    /// The weight of each training pair (1 in the split formats).
    pub train_weights: Vec<f32>,
    pub test: Vec<(u32, u32)>,
    /// Test users with no training interaction: they cannot be ranked and are left out
    /// of `test`.
    pub skipped_test_users: usize,
    /// Original ids by index, for sources whose ids are remapped (`taobao`).
    pub original_ids: Option<(Vec<u64>, Vec<u64>)>,
    /// The `id_base` of the split formats.
    pub id_base: u64,
}

/// The value of an option that `format` requires.
fn required<'a>(value: &'a Option<String>, key: &str, format: &str) -> Result<&'a str> {
    value.as_deref().ok_or_else(|| anyhow!("data.{key}: required with format = \"{format}\""))
}

impl Interactions {
    pub fn load(config: &InteractionDataConfig) -> Result<Self> {
        match config.format {
            InteractionFormat::Taobao => {
                if config.train.is_some()
                    || config.test.is_some()
                    || config.num_users.is_some()
                    || config.num_items.is_some()
                {
                    bail!(
                        "data: train, test, num_users and num_items do not apply to format = \"taobao\" (it splits data.events itself)"
                    );
                }
                load_taobao(Path::new(required(&config.events, "events", "taobao")?), config)
            }
            InteractionFormat::Lightgcn | InteractionFormat::Pairs => {
                let format =
                    if config.format == InteractionFormat::Lightgcn { "lightgcn" } else { "pairs" };
                if config.events.is_some() {
                    bail!(
                        "data.events: only for format = \"taobao\"; format = \"{format}\" reads data.train and data.test"
                    );
                }
                let train = required(&config.train, "train", format)?;
                let test = required(&config.test, "test", format)?;
                Self::load_split(train, test, config)
            }
        }
    }

    fn load_split(
        train_path: &str,
        test_path: &str,
        config: &InteractionDataConfig,
    ) -> Result<Self> {
        let items_per_line = config.format == InteractionFormat::Lightgcn;
        let (train, train_max_user) = read_pairs(Path::new(train_path), items_per_line, config)?;
        let (test, test_max_user) = read_pairs(Path::new(test_path), items_per_line, config)?;
        if train.is_empty() {
            bail!("{train_path}: no interactions");
        }
        // A LightGCN line may list a user with no items: it still counts as a user.
        let num_users =
            config.num_users.unwrap_or((train_max_user.max(test_max_user) + 1) as usize);
        let num_items = config
            .num_items
            .unwrap_or((train.iter().chain(&test).map(|p| p.1).max().unwrap_or(0) + 1) as usize);
        for (file, pairs, max_user) in
            [(train_path, &train, train_max_user), (test_path, &test, test_max_user)]
        {
            if max_user as usize >= num_users {
                bail!(
                    "{file}: user id {} is outside the declared {num_users} users",
                    max_user + config.id_base
                );
            }
            if let Some(&(_, i)) = pairs.iter().find(|p| p.1 as usize >= num_items) {
                bail!(
                    "{file}: item id {} is outside the declared {num_items} items",
                    i + config.id_base
                );
            }
        }
        let to_index = |pairs: Vec<(u64, u64)>| -> Vec<(u32, u32)> {
            let mut pairs: Vec<(u32, u32)> =
                pairs.into_iter().map(|(u, i)| (u as u32, i as u32)).collect();
            pairs.sort_unstable();
            pairs.dedup();
            pairs
        };
        let train = to_index(train);
        let (test, skipped_test_users) = drop_untrained_users(&train, to_index(test));
        let train_weights = vec![1.0; train.len()];
        Ok(Self {
            num_users,
            num_items,
            train,
            train_weights,
            test,
            skipped_test_users,
            original_ids: None,
            id_base: config.id_base,
        })
    }

    /// The id a user or an item has in the input files.
    pub fn user_id(&self, index: u32) -> u64 {
        self.original_ids
            .as_ref()
            .map_or(index as u64 + self.id_base, |(users, _)| users[index as usize])
    }

    pub fn item_id(&self, index: u32) -> u64 {
        self.original_ids
            .as_ref()
            .map_or(index as u64 + self.id_base, |(_, items)| items[index as usize])
    }

    /// Items of each user, from sorted pairs.
    pub fn by_user(pairs: &[(u32, u32)], num_users: usize) -> Vec<Vec<u32>> {
        let mut lists = vec![Vec::new(); num_users];
        for &(u, i) in pairs {
            lists[u as usize].push(i);
        }
        lists
    }
}

/// Keeps the test pairs of users that have training pairs; returns them and how many
/// users were dropped.
fn drop_untrained_users(train: &[(u32, u32)], test: Vec<(u32, u32)>) -> (Vec<(u32, u32)>, usize) {
    let trained: HashSet<u32> = train.iter().map(|p| p.0).collect();
    let skipped: HashSet<u32> =
        test.iter().filter(|p| !trained.contains(&p.0)).map(|p| p.0).collect();
    (test.into_iter().filter(|p| trained.contains(&p.0)).collect(), skipped.len())
}

fn load_taobao(path: &Path, config: &InteractionDataConfig) -> Result<Interactions> {
    check_fraction("data.test_fraction", config.test_fraction)?;
    let mut users: HashMap<u64, u32> = HashMap::new();
    let mut items: HashMap<u64, u32> = HashMap::new();
    let (mut user_ids, mut item_ids) = (Vec::new(), Vec::new());
    // (user, item) -> (weight, first timestamp)
    let mut pairs: HashMap<(u32, u32), (f32, i64)> = HashMap::new();
    for_each_event(path, BadRows::Fail, |event| {
        let weight = config.behaviors.get(&event.behavior).copied().unwrap_or(0.0);
        if weight <= 0.0 {
            return Ok(());
        }
        let user = *users.entry(event.user).or_insert_with(|| {
            user_ids.push(event.user);
            user_ids.len() as u32 - 1
        });
        let item = *items.entry(event.item).or_insert_with(|| {
            item_ids.push(event.item);
            item_ids.len() as u32 - 1
        });
        let entry = pairs.entry((user, item)).or_insert((weight, event.timestamp));
        entry.0 = entry.0.max(weight);
        entry.1 = entry.1.min(event.timestamp);
        Ok(())
    })?;
    if pairs.is_empty() {
        bail!("{}: no event has a behavior weighted above 0 in data.behaviors", path.display());
    }
    let mut by_user: Vec<Vec<(i64, u32, f32)>> = vec![Vec::new(); user_ids.len()];
    for (&(user, item), &(weight, first)) in &pairs {
        by_user[user as usize].push((first, item, weight));
    }
    let mut train: Vec<(u32, u32, f32)> = Vec::new();
    let mut test = Vec::new();
    for (user, mut events) in by_user.into_iter().enumerate() {
        events.sort_unstable_by_key(|&(first, item, _)| (first, item));
        let held_out = (events.len() as f64 * config.test_fraction).floor() as usize;
        let cut = events.len() - held_out;
        train.extend(events[..cut].iter().map(|&(_, item, weight)| (user as u32, item, weight)));
        test.extend(events[cut..].iter().map(|&(_, item, _)| (user as u32, item)));
    }
    train.sort_unstable_by_key(|&(u, i, _)| (u, i));
    test.sort_unstable();
    let train_weights = train.iter().map(|t| t.2).collect();
    let train: Vec<(u32, u32)> = train.into_iter().map(|(u, i, _)| (u, i)).collect();
    let (test, skipped_test_users) = drop_untrained_users(&train, test);
    Ok(Interactions {
        num_users: user_ids.len(),
        num_items: item_ids.len(),
        train,
        train_weights,
        test,
        skipped_test_users,
        original_ids: Some((user_ids, item_ids)),
        id_base: 0,
    })
}

/// The file's (user, item) pairs and its largest user id. With `items_per_line`, a line
/// is a user and all its items (`lightgcn`); otherwise one pair (`pairs`).
fn read_pairs(
    path: &Path,
    items_per_line: bool,
    config: &InteractionDataConfig,
) -> Result<(Vec<(u64, u64)>, u64)> {
    let file = File::open(path).with_context(|| format!("{}: cannot open", path.display()))?;
    let name = path.display().to_string();
    let mut pairs = Vec::new();
    let mut line = String::new();
    let mut reader = BufReader::new(file);
    let mut number = 0u64;
    let mut max_user = 0;
    loop {
        line.clear();
        if reader.read_line(&mut line).with_context(|| format!("{name}: cannot read"))? == 0 {
            break;
        }
        number += 1;
        let mut fields = line.split_ascii_whitespace();
        let Some(first) = fields.next() else { continue };
        let id = |raw: &str, what: &str| -> Result<u64> {
            let value: u64 = raw.parse().map_err(|_| {
                anyhow!(
                    "{name}:{number}: {what} id: expected a non-negative integer, got {}",
                    quoted(raw)
                )
            })?;
            let index = value.checked_sub(config.id_base).ok_or_else(|| {
                anyhow!("{name}:{number}: {what} id {value} is below id_base = {}", config.id_base)
            })?;
            // Ids index the embedding table densely, in 32 bits.
            if index >= u64::from(u32::MAX) {
                bail!(
                    "{name}:{number}: {what} id {value} is too large (ids index the embedding table, at most {})",
                    u32::MAX - 1
                );
            }
            Ok(index)
        };
        let user = id(first, "user")?;
        max_user = max_user.max(user);
        if items_per_line {
            for item in fields {
                pairs.push((user, id(item, "item")?));
            }
        } else {
            let item = fields
                .next()
                .ok_or_else(|| anyhow!("{name}:{number}: expected `user item`, got one field"))?;
            pairs.push((user, id(item, "item")?));
        }
    }
    if number == 0 {
        bail!("{name}: the file is empty");
    }
    Ok((pairs, max_user))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(
        format: InteractionFormat,
        id_base: u64,
        train: &str,
        test: &str,
        num_items: Option<usize>,
    ) -> Result<Interactions> {
        let dir = tempfile::tempdir().unwrap();
        let (train_path, test_path) = (dir.path().join("train.txt"), dir.path().join("test.txt"));
        std::fs::write(&train_path, train).unwrap();
        std::fs::write(&test_path, test).unwrap();
        Interactions::load(&InteractionDataConfig {
            format,
            train: Some(train_path.display().to_string()),
            test: Some(test_path.display().to_string()),
            events: None,
            behaviors: default_behaviors(),
            test_fraction: default_test_fraction(),
            id_base,
            num_users: None,
            num_items,
        })
    }

    #[test]
    fn reads_lightgcn_lines() {
        let data =
            load(InteractionFormat::Lightgcn, 0, "0 1 2\n1 0\n2\n", "0 0\n1 2\n", None).unwrap();
        assert_eq!((data.num_users, data.num_items), (3, 3));
        assert_eq!(data.train, vec![(0, 1), (0, 2), (1, 0)]);
        assert_eq!(data.test, vec![(0, 0), (1, 2)]);
    }

    #[test]
    fn reads_one_based_crlf_pairs_and_skips_untrained_test_users() {
        let data = load(
            InteractionFormat::Pairs,
            1,
            "1\t2\t10\r\n2\t1\t3.2466e+05\r\n",
            "1\t1\t5\r\n3\t2\t1\r\n",
            None,
        )
        .unwrap();
        assert_eq!(data.train, vec![(0, 1), (1, 0)]);
        assert_eq!(data.test, vec![(0, 0)]);
        assert_eq!(data.skipped_test_users, 1);
    }

    #[test]
    fn bad_lines_name_file_and_line() {
        let err = load(InteractionFormat::Lightgcn, 0, "0 1\n1 x\n", "0 1\n", None)
            .unwrap_err()
            .to_string();
        assert!(
            err.ends_with("train.txt:2: item id: expected a non-negative integer, got \"x\""),
            "{err}"
        );
        let err = load(InteractionFormat::Lightgcn, 0, "0 1\n", "0 7\n", Some(5))
            .unwrap_err()
            .to_string();
        assert!(err.ends_with("test.txt: item id 7 is outside the declared 5 items"), "{err}");
        let err = load(InteractionFormat::Lightgcn, 0, "", "0 1\n", None).unwrap_err().to_string();
        assert!(err.ends_with("train.txt: the file is empty"), "{err}");
    }

    #[test]
    fn taobao_log_splits_each_users_latest_items_and_keeps_ids() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("log.csv");
        // User 7: items 100 (t1), 200 (t2, pv then cart), 300 (t3), 400 (t4), 500 (t5);
        // user 9: item 100 only, and a fav that the config ignores.
        let log = "7,100,1,pv,1\n7,200,1,pv,2\n7,200,1,cart,6\n7,300,1,pv,3\n7,400,1,buy,4\n7,500,1,pv,5\n9,100,1,pv,1\n9,600,1,fav,2\n";
        std::fs::write(&path, log).unwrap();
        let config = InteractionDataConfig {
            format: InteractionFormat::Taobao,
            train: None,
            test: None,
            events: Some(path.display().to_string()),
            behaviors: [(Behavior::Pv, 1.0), (Behavior::Cart, 3.0), (Behavior::Buy, 5.0)].into(),
            test_fraction: 0.4,
            id_base: 0,
            num_users: None,
            num_items: None,
        };
        let data = Interactions::load(&config).unwrap();
        assert_eq!((data.num_users, data.num_items), (2, 5));
        // User 7 holds out its 2 latest items (400, 500); user 9 keeps its only one.
        let train: Vec<(u64, u64)> =
            data.train.iter().map(|&(u, i)| (data.user_id(u), data.item_id(i))).collect();
        assert_eq!(train, vec![(7, 100), (7, 200), (7, 300), (9, 100)]);
        assert_eq!(data.train_weights, vec![1.0, 3.0, 1.0, 1.0]);
        let test: Vec<(u64, u64)> =
            data.test.iter().map(|&(u, i)| (data.user_id(u), data.item_id(i))).collect();
        assert_eq!(test, vec![(7, 400), (7, 500)]);
    }
}
