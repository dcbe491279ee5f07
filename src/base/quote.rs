//! Quoting user data in error messages: enough to recognise it, never a megabyte line.

/// Characters of a value an error message quotes at most.
const QUOTE_LIMIT: usize = 200;

/// `raw` quoted as `{:?}` does, cut to its first 200 characters (the cut said) when longer.
pub fn quoted(raw: &str) -> String {
    match raw.char_indices().nth(QUOTE_LIMIT) {
        None => format!("{raw:?}"),
        Some((end, _)) => format!("{:?}... ({} bytes in all)", &raw[..end], raw.len()),
    }
}

/// A whole error line, cut in the middle when a message still grew past what a terminal
/// or a log shows: the start names the file, line and key, the end the cause.
pub fn bounded_line(line: &str) -> String {
    const LIMIT: usize = 1000;
    if line.len() <= LIMIT {
        return line.to_string();
    }
    let head_end = (0..=700).rev().find(|&i| line.is_char_boundary(i)).unwrap_or(0);
    let tail_start =
        (line.len() - 200..line.len()).find(|&i| line.is_char_boundary(i)).unwrap_or(line.len());
    format!(
        "{} ... ({} bytes cut) ... {}",
        &line[..head_end],
        tail_start - head_end,
        &line[tail_start..]
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_values_are_quoted_whole_and_long_ones_cut() {
        assert_eq!(quoted("a\"b"), "\"a\\\"b\"");
        let long = "好".repeat(1000);
        let q = quoted(&long);
        assert!(q.starts_with(&format!("\"{}\"", "好".repeat(200))), "{q}");
        assert!(q.ends_with("... (3000 bytes in all)"), "{q}");
    }

    #[test]
    fn long_lines_keep_their_start_and_end() {
        let line = format!("events.csv:3: {} (expected 5 columns)", "x".repeat(5000));
        let bounded = bounded_line(&line);
        assert!(
            bounded.len() < 1000 && bounded.starts_with("events.csv:3: xxx"),
            "{}",
            bounded.len()
        );
        assert!(bounded.ends_with("(expected 5 columns)"));
    }
}
