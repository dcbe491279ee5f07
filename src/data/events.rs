//! Taobao UserBehavior event logs: `user_id,item_id,category_id,behavior,timestamp`, with
//! or without a header, behavior one of `pv`, `fav`, `cart`, `buy`, timestamp in Unix
//! seconds. Read streaming, one row at a time: the full public log has 100 million rows.

use std::fs::File;
use std::io::{BufRead, BufReader};
use std::path::Path;

use crate::base::quote::quoted;
use anyhow::{Context, Result, bail};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Behavior {
    Pv,
    Fav,
    Cart,
    Buy,
}

impl Behavior {
    pub fn parse(raw: &str) -> Option<Self> {
        Some(match raw {
            "pv" => Behavior::Pv,
            "fav" => Behavior::Fav,
            "cart" => Behavior::Cart,
            "buy" => Behavior::Buy,
            _ => return None,
        })
    }

    pub fn name(self) -> &'static str {
        match self {
            Behavior::Pv => "pv",
            Behavior::Fav => "fav",
            Behavior::Cart => "cart",
            Behavior::Buy => "buy",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Event {
    pub user: u64,
    pub item: u64,
    pub category: u64,
    pub behavior: Behavior,
    pub timestamp: i64,
}

/// What to do with a row that does not parse.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BadRows {
    /// Stop with an error naming the file and the line.
    Fail,
    /// Leave the row out and count it.
    Skip,
}

/// How many rows a pass over a log read and left out.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ReadStats {
    pub events: u64,
    pub skipped: u64,
}

/// Calls `visit` for every event of the log, in file order. A row that does not parse is
/// an error naming the file and the line, or, with [`BadRows::Skip`], counted and left out.
pub fn for_each_event(
    path: &Path,
    bad_rows: BadRows,
    visit: impl FnMut(Event) -> Result<()>,
) -> Result<ReadStats> {
    let name = path.display().to_string();
    let file = File::open(path).with_context(|| format!("{name}: cannot open"))?;
    for_each_event_in(&name, BufReader::with_capacity(1 << 20, file), bad_rows, visit)
}

/// [`for_each_event`] over any reader; `name` is what messages call it.
pub fn for_each_event_in(
    name: &str,
    mut reader: impl BufRead,
    bad_rows: BadRows,
    mut visit: impl FnMut(Event) -> Result<()>,
) -> Result<ReadStats> {
    let mut line = String::new();
    let mut number = 0u64;
    let mut stats = ReadStats::default();
    loop {
        line.clear();
        let read = reader
            .read_line(&mut line)
            .with_context(|| format!("{name}:{}: cannot read", number + 1))?;
        if read == 0 {
            break;
        }
        number += 1;
        let text = line.trim_end_matches(['\n', '\r']).trim_start_matches('\u{feff}');
        if text.is_empty() || (number == 1 && text.starts_with("user_id")) {
            continue;
        }
        match parse_event(text) {
            Ok(event) => {
                visit(event)?;
                stats.events += 1;
            }
            Err(_) if bad_rows == BadRows::Skip => stats.skipped += 1,
            Err(problem) => bail!("{name}:{number}: {problem}"),
        }
    }
    if stats.events == 0 {
        bail!(
            "{name}: the file has no events{}",
            if stats.skipped > 0 {
                format!(" ({} rows did not parse)", stats.skipped)
            } else {
                String::new()
            }
        );
    }
    Ok(stats)
}

/// Ids must stay below this (see `parse_event`).
pub const MAX_ID: u64 = 1 << 62;
/// 9999-12-31 23:59:59 UTC.
const LAST_TIMESTAMP: i64 = 253_402_300_799;

fn parse_event(text: &str) -> Result<Event, String> {
    let fields: Vec<&str> = text.split(',').map(str::trim).collect();
    if fields.len() != 5 {
        return Err(format!(
            "expected 5 columns (user_id,item_id,category_id,behavior,timestamp), got {}",
            fields.len()
        ));
    }
    // Ids stay below 2^62 (a category is packed with its behavior into one integer, ids
    // meet signed 64-bit arithmetic downstream); timestamps are Unix seconds up to the year
    // 9999, so every difference of two of them is exact.
    let integer = |index: usize, column: &str| -> Result<u64, String> {
        let value: u64 = fields[index].parse().map_err(|_| {
            format!("{column}: expected a non-negative integer, got {}", quoted(fields[index]))
        })?;
        if value >= MAX_ID {
            return Err(format!("{column}: {value} is too large (at most 2^62 - 1)"));
        }
        Ok(value)
    };
    let behavior = Behavior::parse(fields[3]).ok_or_else(|| {
        format!("behavior: expected pv, fav, cart or buy, got {}", quoted(fields[3]))
    })?;
    let timestamp = fields[4]
        .parse()
        .map_err(|_| format!("timestamp: expected Unix seconds, got {}", quoted(fields[4])))?;
    if !(0..=LAST_TIMESTAMP).contains(&timestamp) {
        return Err(format!(
            "timestamp: {timestamp} is not a time between 1970 and 9999 in Unix seconds"
        ));
    }
    Ok(Event {
        user: integer(0, "user_id")?,
        item: integer(1, "item_id")?,
        category: integer(2, "category_id")?,
        behavior,
        timestamp,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn events(text: &str) -> Result<Vec<Event>> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("log.csv");
        std::fs::write(&path, text).unwrap();
        let mut out = Vec::new();
        for_each_event(&path, BadRows::Fail, |event| {
            out.push(event);
            Ok(())
        })?;
        Ok(out)
    }

    #[test]
    fn reads_rows_with_or_without_header() {
        let plain = events("1,2,3,pv,1511544070\n1,5,3,buy,1511544100\n").unwrap();
        assert_eq!(
            plain[1],
            Event { user: 1, item: 5, category: 3, behavior: Behavior::Buy, timestamp: 1511544100 }
        );
        let with_header =
            events("user_id,item_id,category_id,behavior,timestamp\r\n1,2,3,cart,7\r\n").unwrap();
        assert_eq!(with_header.len(), 1);
        assert_eq!(with_header[0].behavior, Behavior::Cart);
    }

    #[test]
    fn bad_rows_name_the_line() {
        let err = |text: &str| events(text).unwrap_err().to_string();
        assert!(err("1,2,3,pv,5\n1,2,pv,5\n").ends_with(
            "log.csv:2: expected 5 columns (user_id,item_id,category_id,behavior,timestamp), got 4"
        ));
        assert!(
            err("1,2,3,pv,yesterday\n")
                .ends_with("log.csv:1: timestamp: expected Unix seconds, got \"yesterday\"")
        );
        assert!(
            err("1,2,3,like,5\n")
                .ends_with("log.csv:1: behavior: expected pv, fav, cart or buy, got \"like\"")
        );
        assert!(err("").ends_with("log.csv: the file has no events"));
    }

    #[test]
    fn skipping_counts_bad_rows() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("log.csv");
        std::fs::write(&path, "1,2,3,pv,5\n1,2,pv,5\n2,2,3,like,6\n2,4,3,buy,7\n").unwrap();
        let mut users = Vec::new();
        let stats = for_each_event(&path, BadRows::Skip, |event| {
            users.push(event.user);
            Ok(())
        })
        .unwrap();
        assert_eq!(stats, ReadStats { events: 2, skipped: 2 });
        assert_eq!(users, vec![1, 2]);
    }
}
