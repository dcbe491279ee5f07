//! CSV reading shared by every loader: each bad field becomes one error that names the
//! file, the line and the column, never a panic.

use std::io::Read;
use std::str::FromStr;

use crate::base::quote::quoted;
use anyhow::{Result, anyhow, bail};

/// One CSV source with a header row, read record by record (streaming, never whole).
pub struct CsvSource<R: Read> {
    pub name: String,
    reader: csv::Reader<QuoteTracker<R>>,
    headers: Vec<String>,
}

/// Follows the quoting of the bytes read, as the csv crate parses it: a quote opens a
/// quoted field only at the start of a field, a doubled quote inside is a literal one.
/// The crate reads a quoted field that is never closed as one field running to the end
/// of the file, without an error; a file that ends inside a quoted field is that cut file.
struct QuoteTracker<R> {
    inner: R,
    state: QuoteState,
    /// 1-based line of the byte being read, and the line where the open quote started.
    line: u64,
    opened_on: u64,
}

#[derive(Clone, Copy, PartialEq)]
enum QuoteState {
    FieldStart,
    Unquoted,
    Quoted,
    /// A quote inside a quoted field: closes it, unless another quote follows.
    QuotedQuote,
}

impl<R> QuoteTracker<R> {
    fn new(inner: R) -> Self {
        Self { inner, state: QuoteState::FieldStart, line: 1, opened_on: 0 }
    }

    fn advance(&mut self, byte: u8) {
        use QuoteState::*;
        let ends_field = matches!(byte, b',' | b'\n' | b'\r');
        self.state = match (self.state, byte) {
            (FieldStart, b'"') => {
                self.opened_on = self.line;
                Quoted
            }
            (Quoted, b'"') => QuotedQuote,
            (Quoted, _) => Quoted,
            (QuotedQuote, b'"') => Quoted,
            (FieldStart | Unquoted | QuotedQuote, _) if ends_field => FieldStart,
            (FieldStart | Unquoted | QuotedQuote, _) => Unquoted,
        };
        if byte == b'\n' {
            self.line += 1;
        }
    }

    /// The line where a quoted field opened that the file never closed.
    fn unclosed_since(&self) -> Option<u64> {
        (self.state == QuoteState::Quoted).then_some(self.opened_on)
    }
}

impl<R: Read> Read for QuoteTracker<R> {
    fn read(&mut self, buffer: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buffer)?;
        for &byte in &buffer[..n] {
            self.advance(byte);
        }
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
            .from_reader(QuoteTracker::new(input));
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
                Ok(false) => return self.check_closed(),
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

    /// At the end of the file: refuses a file cut inside a quoted field (see `QuoteTracker`).
    fn check_closed(&self) -> Result<()> {
        if let Some(line) = self.reader.get_ref().unclosed_since() {
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
        // Opened on the last line, with nothing after it to swallow.
        let err = texts("id,review\n1,good\n2,\"never closed\n").unwrap_err().to_string();
        assert_eq!(err, "r.csv:3: a quoted field is never closed (the file ends inside it)");
        let err = texts("id,review\n1,\"ends on a doubled quote\"\"").unwrap_err().to_string();
        assert_eq!(err, "r.csv:2: a quoted field is never closed (the file ends inside it)");
        // Closed quotes, escaped quotes, a line break inside a closed field, a quote inside
        // an unquoted field (literal) and a closing quote at the very end are fine.
        let ok = texts("id,review\n1,\"a \"\"b\"\"\"\n2,\"two\nlines\"\n3,5\" screen\n4,\"end\"")
            .unwrap();
        assert_eq!(ok, vec!["a \"b\"", "two\nlines", "5\" screen", "end"]);
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
