//! Progress display: a bar on a terminal, nothing (or the caller's own lines) otherwise,
//! so that logs of batch jobs stay readable.

use std::io::IsTerminal;

use indicatif::{ProgressBar, ProgressStyle};

pub struct Progress {
    bar: Option<ProgressBar>,
}

impl Progress {
    /// A bar counting `total` `unit`s from `done`, or a spinner when the total is unknown.
    pub fn new(total: Option<u64>, done: u64, unit: &str) -> Self {
        let bar = std::io::stderr().is_terminal().then(|| match total {
            Some(total) => {
                let bar = ProgressBar::new(total).with_position(done);
                let template =
                    format!("{{bar:30}} {{pos}}/{{len}} {unit} [{{elapsed}} < {{eta}}] {{msg}}");
                if let Ok(style) = ProgressStyle::with_template(&template) {
                    bar.set_style(style);
                }
                bar
            }
            None => ProgressBar::new_spinner().with_message(format!("{unit} done")),
        });
        Self { bar }
    }

    /// Whether a bar is drawn (on a terminal); callers print their own lines otherwise.
    pub fn is_drawn(&self) -> bool {
        self.bar.is_some()
    }

    pub fn advance(&self, count: u64, message: Option<String>) {
        if let Some(bar) = &self.bar {
            bar.inc(count);
            if let Some(message) = message {
                bar.set_message(message);
            }
        }
    }

    /// A line above the bar, or on stderr without one.
    pub fn note(&self, message: &str) {
        match &self.bar {
            Some(bar) => bar.println(message),
            None => eprintln!("{message}"),
        }
    }

    pub fn finish(&self) {
        if let Some(bar) = &self.bar {
            bar.finish();
        }
    }
}
