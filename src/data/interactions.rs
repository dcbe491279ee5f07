//! User-item interactions for recommendation, with a train and a test file.
//!
//! Two text formats, both read line by line:
//! - `lightgcn`: the LightGCN split format (`train.txt` / `test.txt`): a user id, then the
//!   ids of the items it interacted with, space-separated, one user per line.
//! - `pairs`: one interaction per line, `user item [weight]`, tab- or space-separated (the
//!   LastFM split of LightGCN-PyTorch); the weight column is ignored.
//!
//! Ids are non-negative integers, `id_base` (0 or 1) being the smallest; CRLF line ends
//! are accepted. Users and items are numbered `0..num_users` and `0..num_items`: given in
//! the config (then an id outside the range is an error) or taken from the largest id seen.

use std::collections::HashSet;
use std::fs::File;
use std::io::{BufRead, BufReader};
use std::path::Path;

use anyhow::{Context, Result, anyhow, bail};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum InteractionFormat {
    Lightgcn,
    Pairs,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InteractionDataConfig {
    pub format: InteractionFormat,
    pub train: String,
    pub test: String,
    /// The smallest id in the files: 0 (LightGCN's Gowalla) or 1 (LastFM).
    #[serde(default)]
    pub id_base: u64,
    /// Declared sizes; when set, an id outside them is an error.
    #[serde(default)]
    pub num_users: Option<usize>,
    #[serde(default)]
    pub num_items: Option<usize>,
}

/// Interactions as (user, item) index pairs, duplicates removed.
#[derive(Debug, Clone)]
pub struct Interactions {
    pub num_users: usize,
    pub num_items: usize,
    pub train: Vec<(u32, u32)>,
    pub test: Vec<(u32, u32)>,
    /// Test users with no training interaction: they cannot be ranked and are left out
    /// of `test`.
    pub skipped_test_users: usize,
}

impl Interactions {
    pub fn load(config: &InteractionDataConfig) -> Result<Self> {
        let (train, train_max_user) = read_pairs(Path::new(&config.train), config)?;
        let (test, test_max_user) = read_pairs(Path::new(&config.test), config)?;
        if train.is_empty() {
            bail!("{}: no interactions", config.train);
        }
        // A LightGCN line may list a user with no items: it still counts as a user.
        let num_users = config.num_users.unwrap_or((train_max_user.max(test_max_user) + 1) as usize);
        let num_items = config.num_items.unwrap_or((train.iter().chain(&test).map(|p| p.1).max().unwrap_or(0) + 1) as usize);
        for (file, pairs, max_user) in [(&config.train, &train, train_max_user), (&config.test, &test, test_max_user)] {
            if max_user as usize >= num_users {
                bail!("{file}: user id {} is outside the declared {num_users} users", max_user + config.id_base);
            }
            if let Some(&(_, i)) = pairs.iter().find(|p| p.1 as usize >= num_items) {
                bail!("{file}: item id {} is outside the declared {num_items} items", i + config.id_base);
            }
        }
        let to_index = |pairs: Vec<(u64, u64)>| -> Vec<(u32, u32)> {
            let mut pairs: Vec<(u32, u32)> = pairs.into_iter().map(|(u, i)| (u as u32, i as u32)).collect();
            pairs.sort_unstable();
            pairs.dedup();
            pairs
        };
        let train = to_index(train);
        let trained_users: HashSet<u32> = train.iter().map(|p| p.0).collect();
        let all_test = to_index(test);
        let test: Vec<(u32, u32)> = all_test.iter().copied().filter(|p| trained_users.contains(&p.0)).collect();
        let skipped_test_users = all_test
            .iter()
            .filter(|p| !trained_users.contains(&p.0))
            .map(|p| p.0)
            .collect::<HashSet<_>>()
            .len();
        Ok(Self { num_users, num_items, train, test, skipped_test_users })
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

/// The file's (user, item) pairs and its largest user id.
fn read_pairs(path: &Path, config: &InteractionDataConfig) -> Result<(Vec<(u64, u64)>, u64)> {
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
            let value: u64 = raw.parse().map_err(|_| anyhow!("{name}:{number}: {what} id: expected a non-negative integer, got {raw:?}"))?;
            value
                .checked_sub(config.id_base)
                .ok_or_else(|| anyhow!("{name}:{number}: {what} id {value} is below id_base = {}", config.id_base))
        };
        let user = id(first, "user")?;
        max_user = max_user.max(user);
        match config.format {
            InteractionFormat::Lightgcn => {
                for item in fields {
                    pairs.push((user, id(item, "item")?));
                }
            }
            InteractionFormat::Pairs => {
                let item = fields.next().ok_or_else(|| anyhow!("{name}:{number}: expected `user item`, got one field"))?;
                pairs.push((user, id(item, "item")?));
            }
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

    fn load(format: InteractionFormat, id_base: u64, train: &str, test: &str, num_items: Option<usize>) -> Result<Interactions> {
        let dir = tempfile::tempdir().unwrap();
        let (train_path, test_path) = (dir.path().join("train.txt"), dir.path().join("test.txt"));
        std::fs::write(&train_path, train).unwrap();
        std::fs::write(&test_path, test).unwrap();
        Interactions::load(&InteractionDataConfig {
            format,
            train: train_path.display().to_string(),
            test: test_path.display().to_string(),
            id_base,
            num_users: None,
            num_items,
        })
    }

    #[test]
    fn reads_lightgcn_lines() {
        let data = load(InteractionFormat::Lightgcn, 0, "0 1 2\n1 0\n2\n", "0 0\n1 2\n", None).unwrap();
        assert_eq!((data.num_users, data.num_items), (3, 3));
        assert_eq!(data.train, vec![(0, 1), (0, 2), (1, 0)]);
        assert_eq!(data.test, vec![(0, 0), (1, 2)]);
    }

    #[test]
    fn reads_one_based_crlf_pairs_and_skips_untrained_test_users() {
        let data = load(InteractionFormat::Pairs, 1, "1\t2\t10\r\n2\t1\t3.2466e+05\r\n", "1\t1\t5\r\n3\t2\t1\r\n", None).unwrap();
        assert_eq!(data.train, vec![(0, 1), (1, 0)]);
        assert_eq!(data.test, vec![(0, 0)]);
        assert_eq!(data.skipped_test_users, 1);
    }

    #[test]
    fn bad_lines_name_file_and_line() {
        let err = load(InteractionFormat::Lightgcn, 0, "0 1\n1 x\n", "0 1\n", None).unwrap_err().to_string();
        assert!(err.ends_with("train.txt:2: item id: expected a non-negative integer, got \"x\""), "{err}");
        let err = load(InteractionFormat::Lightgcn, 0, "0 1\n", "0 7\n", Some(5)).unwrap_err().to_string();
        assert!(err.ends_with("test.txt: item id 7 is outside the declared 5 items"), "{err}");
        let err = load(InteractionFormat::Lightgcn, 0, "", "0 1\n", None).unwrap_err().to_string();
        assert!(err.ends_with("train.txt: the file is empty"), "{err}");
    }
}
