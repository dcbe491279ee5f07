//! The page: one HTML document with its styles inline and a content security policy that
//! forbids every load but inline styles and `data:` images, so the page cannot reach out
//! (and a browser says so if anything ever tries).

use std::fmt::Write as _;

/// Text made safe for HTML content and attribute values.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            _ => out.push(c),
        }
    }
    out
}

/// A metric value as the page prints it.
pub fn number(value: f64) -> String {
    if value.is_finite() && value.fract() == 0.0 && value.abs() < 1e15 {
        format!("{value:.0}")
    } else {
        format!("{value:.4}")
    }
}

const STYLE: &str = "
body { font-family: system-ui, -apple-system, 'Segoe UI', sans-serif; margin: 0 auto; max-width: 1180px;
       padding: 1.5rem 2rem 4rem; color: #1d1d1f; background: #fbfbfd; }
h1 { font-size: 1.6rem; margin-bottom: .2rem; } h2 { font-size: 1.2rem; margin-top: 2.2rem;
     border-bottom: 1px solid #ddd; padding-bottom: .3rem; }
.subtitle { color: #666; margin-top: 0; }
table { border-collapse: collapse; margin: .6rem 0; font-size: .9rem; }
th, td { border: 1px solid #ddd; padding: .25rem .55rem; text-align: right; }
th { background: #f1f1f4; } td.name, th.name { text-align: left; }
.charts { display: flex; flex-wrap: wrap; gap: 1rem; }
figure { margin: 0; background: white; border: 1px solid #e4e4e8; }
figcaption { font-size: .8rem; color: #555; padding: .2rem .5rem .5rem; max-width: 540px; }
.note { background: #fff7e0; border: 1px solid #f0d890; padding: .6rem .9rem; }
table.confusion td { min-width: 2.6rem; }
.examples { display: flex; flex-wrap: wrap; gap: .6rem; }
.example { border: 1px solid #ddd; background: white; padding: .3rem; font-size: .75rem; text-align: center; }
.example img, .neighbours img { width: 56px; height: 56px; image-rendering: pixelated; display: block; margin: auto; }
.neighbours { display: flex; gap: .4rem; align-items: flex-start; margin-bottom: .6rem; }
.neighbours .query { border: 2px solid #1f77b4; }
td.text { text-align: left; max-width: 640px; }
#overview-table td { max-width: 760px; overflow-wrap: anywhere; }
pre { background: #f4f4f6; padding: .8rem; overflow-x: auto; font-size: .8rem; }
";

/// A page under construction: sections appended in reading order.
pub struct Page {
    body: String,
}

impl Page {
    pub fn new(title: &str, subtitle: &str) -> Self {
        let mut body = String::new();
        let _ = write!(
            body,
            "<h1>{}</h1>\n<p class=\"subtitle\">{}</p>\n",
            escape(title),
            escape(subtitle)
        );
        Self { body }
    }

    /// Opens `<section id=...>` with its heading; [`Page::end_section`] closes it.
    pub fn section(&mut self, id: &str, heading: &str) {
        let _ = write!(self.body, "<section id=\"{id}\">\n<h2>{}</h2>\n", escape(heading));
    }

    pub fn end_section(&mut self) {
        self.body.push_str("</section>\n");
    }

    pub fn paragraph(&mut self, text: &str) {
        let _ = writeln!(self.body, "<p>{}</p>", escape(text));
    }

    pub fn note(&mut self, text: &str) {
        let _ = writeln!(self.body, "<p class=\"note\">{}</p>", escape(text));
    }

    /// Markup the caller built (escaped where it holds text).
    pub fn raw(&mut self, html: &str) {
        self.body.push_str(html);
    }

    /// A two-column table of names and values, `id` for finding it again.
    pub fn key_values(&mut self, id: &str, rows: &[(String, String)]) {
        let _ = writeln!(self.body, "<table id=\"{id}\">");
        for (key, value) in rows {
            let _ = writeln!(
                self.body,
                "<tr><th class=\"name\">{}</th><td class=\"name\">{}</td></tr>",
                escape(key),
                escape(value)
            );
        }
        self.body.push_str("</table>\n");
    }

    pub fn finish(self, title: &str) -> String {
        format!(
            "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
             <meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; img-src data:; style-src 'unsafe-inline'\">\n\
             <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n\
             <title>{}</title>\n<style>{STYLE}</style>\n</head>\n<body>\n{}</body>\n</html>\n",
            escape(title),
            self.body
        )
    }
}

/// A table with a header row; cells are escaped, the first column left-aligned.
pub fn table(id: &str, header: &[String], rows: &[Vec<String>]) -> String {
    let mut out = format!("<table id=\"{id}\">\n<tr>");
    for (i, cell) in header.iter().enumerate() {
        let class = if i == 0 { " class=\"name\"" } else { "" };
        let _ = write!(out, "<th{class}>{}</th>", escape(cell));
    }
    out.push_str("</tr>\n");
    for row in rows {
        out.push_str("<tr>");
        for (i, cell) in row.iter().enumerate() {
            let class = if i == 0 { " class=\"name\"" } else { "" };
            let _ = write!(out, "<td{class}>{}</td>", escape(cell));
        }
        out.push_str("</tr>\n");
    }
    out.push_str("</table>\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_markup_and_quotes() {
        assert_eq!(escape("<b a=\"1\">&'</b>"), "&lt;b a=&quot;1&quot;&gt;&amp;&#39;&lt;/b&gt;");
    }

    #[test]
    fn numbers_print_counts_whole_and_rates_to_four_places() {
        assert_eq!(number(42.0), "42");
        assert_eq!(number(0.123456), "0.1235");
        assert_eq!(number(f64::NAN), "NaN");
    }
}
