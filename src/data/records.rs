//! CSV reading shared by every loader: each bad field becomes one error that names the
//! file, the line and the column, never a panic.

use std::io::Read;
use std::str::FromStr;

use crate::base::quote::quoted;
use anyhow::{Result, anyhow, bail};

/// One CSV source with a header row, read record by record (streaming, never whole).
pub struct CsvSource<R: Read> {
    pub name: String,
    reader: csv::Reader<R>,
    headers: Vec<String>,
}

/// A record together with where it came from.
pub struct Row<'a> {
    pub source: &'a str,
    pub line: u64,
    pub record: &'a csv::StringRecord,
}

impl<R: Read> CsvSource<R> {
    /// Opens a CSV source whose header must start with `required` columns, in any order.
    pub fn new(name: impl Into<String>, input: R, required: &[&str]) -> Result<Self> {
        let name = name.into();
        let mut reader =
            csv::ReaderBuilder::new().flexible(true).trim(csv::Trim::All).from_reader(input);
        let headers: Vec<String> = reader
            .headers()
            .map_err(|err| anyhow!("{name}:1: cannot read the header: {err}"))?
            .iter()
            .map(|h| h.trim_start_matches('\u{feff}').to_string())
            .collect();
        if headers.iter().all(|h| h.is_empty()) {
            bail!("{name}: the file is empty (expected a header with {})", required.join(","));
        }
        for column in required {
            if !headers.iter().any(|h| h == column) {
                bail!(
                    "{name}:1: missing column {column:?} (the header is {:?})",
                    headers.join(",")
                );
            }
        }
        Ok(Self { name, reader, headers })
    }

    pub fn column(&self, name: &str) -> Option<usize> {
        self.headers.iter().position(|h| h == name)
    }

    /// Calls `visit` for each data row, stopping at the first error.
    pub fn for_each(&mut self, mut visit: impl FnMut(Row<'_>) -> Result<()>) -> Result<()> {
        let mut record = csv::StringRecord::new();
        loop {
            match self.reader.read_record(&mut record) {
                Ok(false) => return Ok(()),
                Ok(true) => {
                    let line = record.position().map_or(0, |p| p.line());
                    visit(Row { source: &self.name, line, record: &record })?;
                }
                Err(err) => {
                    let line = err.position().map_or(0, |p| p.line());
                    bail!("{}:{line}: {err}", self.name);
                }
            }
        }
    }
}

impl Row<'_> {
    pub fn text(&self, index: usize, column: &str) -> Result<&str> {
        self.record
            .get(index)
            .ok_or_else(|| anyhow!("{}:{}: missing column {column:?}", self.source, self.line))
    }

    pub fn parse<T: FromStr>(&self, index: usize, column: &str, what: &str) -> Result<T> {
        let raw = self.text(index, column)?;
        raw.parse().map_err(|_| {
            anyhow!("{}:{}: {column}: expected {what}, got {}", self.source, self.line, quoted(raw))
        })
    }

    /// A finite float: NaN and infinities in training data are errors, not silent poison.
    pub fn finite(&self, index: usize, column: &str) -> Result<f32> {
        let value: f32 = self.parse(index, column, "a number")?;
        if !value.is_finite() {
            bail!("{}:{}: {column}: {value} is not a finite number", self.source, self.line);
        }
        Ok(value)
    }

    pub fn error(&self, message: impl std::fmt::Display) -> anyhow::Error {
        anyhow!("{}:{}: {message}", self.source, self.line)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rows(text: &str) -> Result<Vec<(u64, f32)>> {
        let mut source = CsvSource::new("t.csv", text.as_bytes(), &["id", "value"])?;
        let value = source.column("value").unwrap();
        let mut out = Vec::new();
        source.for_each(|row| {
            out.push((row.line, row.finite(value, "value")?));
            Ok(())
        })?;
        Ok(out)
    }

    #[test]
    fn reads_rows_with_line_numbers() {
        assert_eq!(rows("id,value\na,1.5\nb,2\n").unwrap(), vec![(2, 1.5), (3, 2.0)]);
    }

    #[test]
    fn bad_values_name_file_line_and_column() {
        assert_eq!(
            rows("id,value\na,1\nb,x\n").unwrap_err().to_string(),
            "t.csv:3: value: expected a number, got \"x\""
        );
        assert_eq!(
            rows("id,value\na,NaN\n").unwrap_err().to_string(),
            "t.csv:2: value: NaN is not a finite number"
        );
        assert_eq!(
            rows("id,value\na\n").unwrap_err().to_string(),
            "t.csv:2: missing column \"value\""
        );
    }

    #[test]
    fn header_problems_are_reported() {
        assert_eq!(
            rows("").unwrap_err().to_string(),
            "t.csv: the file is empty (expected a header with id,value)"
        );
        assert!(
            rows("id,val\n")
                .unwrap_err()
                .to_string()
                .starts_with("t.csv:1: missing column \"value\"")
        );
        assert_eq!(rows("\u{feff}id,value\na,3\n").unwrap(), vec![(2, 3.0)]);
    }
}
