//! CSV reading shared by every loader: each bad field becomes one error that names the
//! file, the line and the column, never a panic.

use std::io::Read;
use std::str::FromStr;

use crate::base::quote::quoted;
use anyhow::{Result, anyhow, bail};

/// One CSV source with a header row, read record by record (streaming, never whole).
pub struct CsvSource<R: Read> {
    pub name: String,
    reader: csv::Reader<QuoteCounter<R>>,
    headers: Vec<String>,
}

/// Counts the `"` bytes read. The csv crate reads a quoted field that is never closed as
/// one field running to the end of the file, without an error; a well-formed file has an
/// even number of quotes (an escaped one is doubled), so an odd count at the end, with
/// the last field swallowing line breaks, is that cut file.
struct QuoteCounter<R> {
    inner: R,
    quotes: u64,
}

impl<R: Read> Read for QuoteCounter<R> {
    fn read(&mut self, buffer: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buffer)?;
        self.quotes += buffer[..n].iter().filter(|&&b| b == b'"').count() as u64;
        Ok(n)
    }
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
        let mut reader = csv::ReaderBuilder::new()
            .flexible(true)
            .trim(csv::Trim::All)
            .from_reader(QuoteCounter { inner: input, quotes: 0 });
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
        // Where the last record started and whether its last field ran over line breaks.
        let mut last = (0, false);
        loop {
            match self.reader.read_record(&mut record) {
                Ok(false) => return self.check_closed(last),
                Ok(true) => {
                    let line = record.position().map_or(0, |p| p.line());
                    last =
                        (line, record.iter().next_back().is_some_and(|field| field.contains('\n')));
                    visit(Row { source: &self.name, line, record: &record })?;
                }
                Err(err) => {
                    let line = err.position().map_or(0, |p| p.line());
                    bail!("{}:{line}: {err}", self.name);
                }
            }
        }
    }

    /// At the end of the file: refuses a file cut inside a quoted field (see `QuoteCounter`).
    fn check_closed(&self, (line, spans_lines): (u64, bool)) -> Result<()> {
        if spans_lines && self.reader.get_ref().quotes % 2 == 1 {
            bail!("{}:{line}: a quoted field is never closed (the file ends inside it)", self.name);
        }
        Ok(())
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

    fn texts(text: &str) -> Result<Vec<String>> {
        let mut source = CsvSource::new("r.csv", text.as_bytes(), &["id", "review"])?;
        let mut out = Vec::new();
        source.for_each(|row| {
            out.push(row.text(1, "review")?.to_string());
            Ok(())
        })?;
        Ok(out)
    }

    #[test]
    fn a_file_cut_inside_a_quoted_field_is_refused() {
        let err = texts("id,review\n1,good\n2,\"never closed\n3,fine\n").unwrap_err().to_string();
        assert_eq!(err, "r.csv:3: a quoted field is never closed (the file ends inside it)");
        // Closed quotes, escaped quotes and a line break inside a closed field are fine.
        let ok = texts("id,review\n1,\"a \"\"b\"\"\"\n2,\"two\nlines\"\n").unwrap();
        assert_eq!(ok, vec!["a \"b\"", "two\nlines"]);
    }

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
