//! Taobao UserBehavior event logs: `user_id,item_id,category_id,behavior,timestamp`, with
//! or without a header, behavior one of `pv`, `fav`, `cart`, `buy`, timestamp in Unix
//! seconds. Read streaming, one row at a time: the full public log has 100 million rows.

use std::fs::File;
use std::io::{BufRead, BufReader};
use std::path::Path;

use anyhow::{Context, Result, anyhow, bail};
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
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Event {
    pub user: u64,
    pub item: u64,
    pub category: u64,
    pub behavior: Behavior,
    pub timestamp: i64,
}

/// Calls `visit` for every event of the log, in file order; the first row that does not
/// parse is an error naming the file and the line.
pub fn for_each_event(path: &Path, mut visit: impl FnMut(Event) -> Result<()>) -> Result<()> {
    let name = path.display().to_string();
    let file = File::open(path).with_context(|| format!("{name}: cannot open"))?;
    let mut reader = BufReader::with_capacity(1 << 20, file);
    let mut line = String::new();
    let mut number = 0u64;
    let mut rows = 0u64;
    loop {
        line.clear();
        if reader.read_line(&mut line).with_context(|| format!("{name}: cannot read"))? == 0 {
            break;
        }
        number += 1;
        let text = line.trim_end_matches(['\n', '\r']).trim_start_matches('\u{feff}');
        if text.is_empty() || (number == 1 && text.starts_with("user_id")) {
            continue;
        }
        visit(parse_event(text).map_err(|problem| anyhow!("{name}:{number}: {problem}"))?)?;
        rows += 1;
    }
    if rows == 0 {
        bail!("{name}: the file has no events");
    }
    Ok(())
}

fn parse_event(text: &str) -> Result<Event, String> {
    let fields: Vec<&str> = text.split(',').map(str::trim).collect();
    if fields.len() != 5 {
        return Err(format!("expected 5 columns (user_id,item_id,category_id,behavior,timestamp), got {}", fields.len()));
    }
    let integer = |index: usize, column: &str| -> Result<u64, String> {
        fields[index].parse().map_err(|_| format!("{column}: expected a non-negative integer, got {:?}", fields[index]))
    };
    let behavior = Behavior::parse(fields[3]).ok_or_else(|| format!("behavior: expected pv, fav, cart or buy, got {:?}", fields[3]))?;
    let timestamp = fields[4].parse().map_err(|_| format!("timestamp: expected Unix seconds, got {:?}", fields[4]))?;
    Ok(Event { user: integer(0, "user_id")?, item: integer(1, "item_id")?, category: integer(2, "category_id")?, behavior, timestamp })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn events(text: &str) -> Result<Vec<Event>> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("log.csv");
        std::fs::write(&path, text).unwrap();
        let mut out = Vec::new();
        for_each_event(&path, |event| {
            out.push(event);
            Ok(())
        })?;
        Ok(out)
    }

    #[test]
    fn reads_rows_with_or_without_header() {
        let plain = events("1,2,3,pv,1511544070\n1,5,3,buy,1511544100\n").unwrap();
        assert_eq!(plain[1], Event { user: 1, item: 5, category: 3, behavior: Behavior::Buy, timestamp: 1511544100 });
        let with_header = events("user_id,item_id,category_id,behavior,timestamp\r\n1,2,3,cart,7\r\n").unwrap();
        assert_eq!(with_header.len(), 1);
        assert_eq!(with_header[0].behavior, Behavior::Cart);
    }

    #[test]
    fn bad_rows_name_the_line() {
        let err = |text: &str| events(text).unwrap_err().to_string();
        assert!(err("1,2,3,pv,5\n1,2,pv,5\n").ends_with("log.csv:2: expected 5 columns (user_id,item_id,category_id,behavior,timestamp), got 4"));
        assert!(err("1,2,3,pv,yesterday\n").ends_with("log.csv:1: timestamp: expected Unix seconds, got \"yesterday\""));
        assert!(err("1,2,3,like,5\n").ends_with("log.csv:1: behavior: expected pv, fav, cart or buy, got \"like\""));
        assert!(err("").ends_with("log.csv: the file has no events"));
    }
}
