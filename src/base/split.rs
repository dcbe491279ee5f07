//! Which part of the data an example belongs to, and one value per part.

use serde::{Deserialize, Serialize};

/// A part of the data. Examples outside all three (a graph's unlabelled nodes) carry
/// `Option<Split>::None`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Split {
    Train,
    Val,
    Test,
}

impl Split {
    pub const ALL: [Split; 3] = [Split::Train, Split::Val, Split::Test];

    /// Reads a split column's value: `Ok(None)` for an example in no split.
    pub fn parse(raw: &str) -> Result<Option<Self>, UnknownSplit> {
        Ok(Some(match raw.to_ascii_lowercase().as_str() {
            "train" => Split::Train,
            "val" | "valid" | "validation" => Split::Val,
            "test" => Split::Test,
            "" | "none" | "unlabeled" | "unlabelled" => return Ok(None),
            _ => return Err(UnknownSplit),
        }))
    }
}

/// A split column value that names no split.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UnknownSplit;

impl std::fmt::Display for Split {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Split::Train => "train",
            Split::Val => "val",
            Split::Test => "test",
        })
    }
}

/// One value per split: what a `HashMap<Split, T>` was, without a missing key.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Splits<T> {
    pub train: T,
    pub val: T,
    pub test: T,
}

impl<T> Splits<T> {
    /// Builds each part from its split.
    pub fn from_fn(mut make: impl FnMut(Split) -> T) -> Self {
        Self { train: make(Split::Train), val: make(Split::Val), test: make(Split::Test) }
    }

    pub fn get(&self, split: Split) -> &T {
        match split {
            Split::Train => &self.train,
            Split::Val => &self.val,
            Split::Test => &self.test,
        }
    }

    pub fn map<U>(&self, mut f: impl FnMut(&T) -> U) -> Splits<U> {
        Splits { train: f(&self.train), val: f(&self.val), test: f(&self.test) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_split_names_and_refuses_others() {
        assert_eq!(Split::parse("Validation"), Ok(Some(Split::Val)));
        assert_eq!(Split::parse(""), Ok(None));
        assert_eq!(Split::parse("dev"), Err(UnknownSplit));
    }

    #[test]
    fn splits_index_by_split() {
        let sizes = Splits::from_fn(|s| s.to_string().len());
        assert_eq!(
            (*sizes.get(Split::Train), *sizes.get(Split::Val), *sizes.get(Split::Test)),
            (5, 3, 4)
        );
    }
}
