//! Labelled text in a CSV (one example per row, configurable text and label columns), a
//! stratified seeded split, and the tokenizer glue around the `tokenizers` crate.
//!
//! Texts are cleaned of a leading U+FEFF (online_shopping_10_cats starts many reviews with
//! one inside the field); an empty text is kept as an empty sequence (`[CLS] [SEP]`), so a
//! scored file gets one output row per input row.

use std::collections::{BTreeMap, BTreeSet};
use std::fs::File;
use std::path::{Path, PathBuf};

use anyhow::{Result, anyhow, bail};
use rand::SeedableRng;
use rand::seq::SliceRandom;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};
use tokenizers::Tokenizer;

use super::records::CsvSource;
use crate::base::config::check_fraction;
use crate::base::split::Split;

/// `[data]` for text classification.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TextDataConfig {
    /// A CSV file with a header row.
    pub path: PathBuf,
    pub text_column: String,
    pub label_column: String,
    /// Fraction of each class held out for the test split, and for validation.
    pub test_fraction: f64,
    pub val_fraction: f64,
    /// Seed of the stratified split (independent of `train.seed`).
    pub split_seed: u64,
    /// Use only the first N rows (0: all), for quick experiments.
    pub max_rows: usize,
}

impl Default for TextDataConfig {
    fn default() -> Self {
        Self {
            path: PathBuf::new(),
            text_column: "text".into(),
            label_column: "label".into(),
            test_fraction: 0.1,
            val_fraction: 0.1,
            split_seed: 0,
            max_rows: 0,
        }
    }
}

impl TextDataConfig {
    pub fn validate(&self) -> Result<()> {
        if self.path.as_os_str().is_empty() {
            bail!("data.path: missing (a CSV file)");
        }
        check_fraction("data.test_fraction", self.test_fraction)?;
        check_fraction("data.val_fraction", self.val_fraction)?;
        if self.test_fraction + self.val_fraction >= 1.0 {
            bail!("data.test_fraction + data.val_fraction: must leave rows to train on");
        }
        Ok(())
    }
}

/// Removes the byte-order mark some exports put before a text.
pub fn clean_text(raw: &str) -> &str {
    raw.trim_start_matches('\u{feff}').trim()
}

/// A labelled text corpus with its split.
pub struct TextDataset {
    pub texts: Vec<String>,
    pub labels: Vec<u32>,
    /// Class names, in output order (sorted label values).
    pub label_names: Vec<String>,
    pub splits: Vec<Split>,
}

impl TextDataset {
    pub fn load(config: &TextDataConfig) -> Result<Self> {
        let name = config.path.display().to_string();
        let file = File::open(&config.path).map_err(|err| anyhow!("{name}: cannot open: {err}"))?;
        let mut source = CsvSource::new(
            name,
            file,
            &[config.text_column.as_str(), config.label_column.as_str()],
        )?;
        let text_at = source.column(&config.text_column).expect("checked by CsvSource");
        let label_at = source.column(&config.label_column).expect("checked by CsvSource");
        let mut texts = Vec::new();
        let mut raw_labels = Vec::new();
        source.for_each(|row| {
            if config.max_rows > 0 && texts.len() >= config.max_rows {
                return Ok(());
            }
            let label = clean_text(row.text(label_at, &config.label_column)?);
            if label.is_empty() {
                return Err(row.error(format!("{}: empty label", config.label_column)));
            }
            texts.push(clean_text(row.text(text_at, &config.text_column)?).to_string());
            raw_labels.push(label.to_string());
            Ok(())
        })?;
        if texts.is_empty() {
            bail!("{}: no rows", config.path.display());
        }
        let label_names: Vec<String> =
            raw_labels.iter().cloned().collect::<BTreeSet<_>>().into_iter().collect();
        if label_names.len() < 2 {
            bail!(
                "{}: column {:?} has a single value {:?}; a classifier needs at least two",
                config.path.display(),
                config.label_column,
                label_names[0]
            );
        }
        let labels: Vec<u32> = raw_labels
            .iter()
            .map(|l| label_names.binary_search(l).expect("collected above") as u32)
            .collect();
        let splits = stratified_split(
            &labels,
            label_names.len(),
            config.test_fraction,
            config.val_fraction,
            config.split_seed,
        );
        Ok(Self { texts, labels, label_names, splits })
    }

    pub fn indices(&self, split: Split) -> Vec<usize> {
        (0..self.texts.len()).filter(|&i| self.splits[i] == split).collect()
    }
}

/// Per class: shuffle its rows with `seed`, hold out `round(n * test)` for test and
/// `round(n * val)` for validation, train on the rest.
pub fn stratified_split(
    labels: &[u32],
    classes: usize,
    test: f64,
    val: f64,
    seed: u64,
) -> Vec<Split> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut splits = vec![Split::Train; labels.len()];
    for class in 0..classes as u32 {
        let mut rows: Vec<usize> = (0..labels.len()).filter(|&i| labels[i] == class).collect();
        rows.shuffle(&mut rng);
        let n_test = (rows.len() as f64 * test).round() as usize;
        let n_val = (rows.len() as f64 * val).round() as usize;
        for (k, &row) in rows.iter().enumerate() {
            splits[row] = if k < n_test {
                Split::Test
            } else if k < n_test + n_val {
                Split::Val
            } else {
                Split::Train
            };
        }
    }
    splits
}

/// A `tokenizer.json` with its own padding switched off (batches are padded to their
/// longest member) and truncation set to `max_length` tokens, special tokens included.
pub struct TextTokenizer {
    inner: Tokenizer,
    pub pad_id: u32,
}

impl TextTokenizer {
    pub fn load(path: &Path, max_length: usize) -> Result<Self> {
        if !path.is_file() {
            bail!("{}: no such tokenizer file", path.display());
        }
        let bytes =
            std::fs::read(path).map_err(|err| anyhow!("{}: cannot read: {err}", path.display()))?;
        Self::from_bytes(&bytes, max_length).map_err(|err| anyhow!("{}: {err}", path.display()))
    }

    /// A tokenizer from the text of a tokenizer.json; the error names no file.
    pub fn from_bytes(bytes: &[u8], max_length: usize) -> Result<Self> {
        let mut inner =
            Tokenizer::from_bytes(bytes).map_err(|err| anyhow!("not a tokenizer.json: {err}"))?;
        Self::configure(&mut inner, max_length)?;
        let pad_id = inner.token_to_id("[PAD]").unwrap_or(0);
        Ok(Self { inner, pad_id })
    }

    fn configure(inner: &mut Tokenizer, max_length: usize) -> Result<()> {
        inner.with_padding(None);
        let truncation = tokenizers::TruncationParams { max_length, ..Default::default() };
        inner
            .with_truncation(Some(truncation))
            .map_err(|err| anyhow!("cannot truncate to {max_length} tokens: {err}"))?;
        Ok(())
    }

    pub fn vocab_size(&self) -> usize {
        self.inner.get_vocab_size(true)
    }

    /// Token ids with the tokenizer's special tokens (`[CLS] ... [SEP]` for BERT).
    pub fn encode(&self, text: &str) -> Result<Vec<u32>> {
        let encoding = self
            .inner
            .encode(text, true)
            .map_err(|err| anyhow!("cannot tokenize {text:?}: {err}"))?;
        Ok(encoding.get_ids().to_vec())
    }

    pub fn encode_all(&self, texts: &[String]) -> Result<Vec<Vec<u32>>> {
        use rayon::prelude::*;
        texts.par_iter().map(|t| self.encode(t)).collect()
    }
}

/// What a trained tokenizer learns: its size, how often a piece must occur, and whether
/// runs of CJK characters are split into characters first.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TokenizerSpec {
    pub vocab_size: usize,
    pub min_frequency: u64,
    pub cjk: CjkPieces,
}

/// How a trained tokenizer treats CJK text, which has no spaces between words.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CjkPieces {
    /// One token per character (BERT's own rule): a small vocabulary, and the encoder has
    /// to learn words from characters.
    #[default]
    Characters,
    /// Runs of CJK characters between spaces and punctuation are words to the trainer, so
    /// frequent words and phrases become tokens of their own (byte-pair merges, `##` for
    /// pieces inside a run); a character never seen in training is `[UNK]` alone.
    Words,
}

/// Trains a BERT-style tokenizer on the `column` of a CSV and writes it as `tokenizer.json`
/// (`shopnet tokenizer train`). Returns the vocabulary size.
pub fn train_tokenizer_from_csv(
    input: &Path,
    column: &str,
    spec: TokenizerSpec,
    out: &Path,
) -> Result<usize> {
    let name = input.display().to_string();
    let file = File::open(input).map_err(|err| anyhow!("{name}: cannot open: {err}"))?;
    let mut source = CsvSource::new(name, file, &[column])?;
    let at = source.column(column).unwrap_or_default();
    let mut texts = Vec::new();
    source.for_each(|row| {
        texts.push(clean_text(row.text(at, column)?).to_string());
        Ok(())
    })?;
    let tokenizer = train_tokenizer(&texts, spec)
        .map_err(|err| anyhow!("{}: column {column:?}: {err}", input.display()))?;
    let json = tokenizer
        .to_string(false)
        .map_err(|err| anyhow!("cannot serialise the tokenizer: {err}"))?;
    crate::base::files::write_atomic(out, json.as_bytes())?;
    Ok(tokenizer.get_vocab_size(true))
}

fn bert_normalizer(cjk: CjkPieces) -> tokenizers::normalizers::bert::BertNormalizer {
    // BERT's defaults (clean text, lowercase, accents stripped with lowercasing), with
    // the spaces around CJK characters only in character mode.
    tokenizers::normalizers::bert::BertNormalizer::new(
        true,
        cjk == CjkPieces::Characters,
        None,
        true,
    )
}

/// Every word of `texts` (after BERT normalisation and pre-tokenisation) with its count,
/// in a map with a fixed seed (see [`train_tokenizer`] for why).
fn counted_words(
    texts: &[String],
    cjk: CjkPieces,
) -> Result<ahash::AHashMap<compact_str::CompactString, u64>> {
    use rayon::prelude::*;
    use tokenizers::pre_tokenizers::bert::BertPreTokenizer;
    use tokenizers::{
        NormalizedString, Normalizer, OffsetReferential, OffsetType, PreTokenizedString,
        PreTokenizer,
    };

    let normalizer = bert_normalizer(cjk);
    let count_words = |text: &String| -> Result<BTreeMap<String, u64>> {
        let mut normalized = NormalizedString::from(text.as_str());
        normalizer
            .normalize(&mut normalized)
            .map_err(|err| anyhow!("cannot normalise {text:?}: {err}"))?;
        let mut words = PreTokenizedString::from(normalized);
        BertPreTokenizer
            .pre_tokenize(&mut words)
            .map_err(|err| anyhow!("cannot split {text:?}: {err}"))?;
        let mut counts = BTreeMap::new();
        for (word, _, _) in words.get_splits(OffsetReferential::Original, OffsetType::Byte) {
            *counts.entry(word.to_string()).or_insert(0) += 1;
        }
        Ok(counts)
    };
    let counts =
        texts.par_iter().map(count_words).try_reduce(BTreeMap::new, |mut total, part| {
            for (word, n) in part {
                *total.entry(word).or_insert(0) += n;
            }
            Ok(total)
        })?;
    if counts.is_empty() {
        bail!("no text to train a tokenizer on");
    }
    let mut words = ahash::AHashMap::with_hasher(ahash::RandomState::with_seeds(1, 2, 3, 4));
    words.extend(counts.into_iter().map(|(word, n)| (compact_str::CompactString::from(word), n)));
    Ok(words)
}

/// A BERT-style tokenizer (BERT normaliser and pre-tokeniser, `[CLS] $A [SEP]` template)
/// trained on `texts` by byte-pair merges with `##` marking pieces inside a word.
///
/// With [`CjkPieces::Characters`] the model is WordPiece, as BERT's: every CJK character is
/// a word, and greedy longest-match is what BERT users expect. With [`CjkPieces::Words`] it
/// stays byte-pair: a run of CJK characters can be a whole clause, and WordPiece would turn
/// all of it into one `[UNK]` for a single unseen character, where byte-pair keeps the
/// `[UNK]` to that character.
///
/// The same texts always give the same vocabulary and ids: `Tokenizer::train` counts words
/// in a randomly seeded hash map whose order decides the ids of `##` pieces and, through
/// them, which of equally frequent merges are kept, so the words are counted here in order
/// and handed to the trainer in a map with a fixed seed.
pub fn train_tokenizer(texts: &[String], spec: TokenizerSpec) -> Result<Tokenizer> {
    use tokenizers::AddedToken;
    use tokenizers::decoders::wordpiece::WordPiece as WordPieceDecoder;
    use tokenizers::models::bpe::{BPE, BpeTrainer};
    use tokenizers::models::wordpiece::WordPiece;
    use tokenizers::pre_tokenizers::bert::BertPreTokenizer;
    use tokenizers::processors::template::TemplateProcessing;

    if spec.vocab_size < 10 {
        bail!("the vocabulary size must be at least 10, got {}", spec.vocab_size);
    }
    let words = counted_words(texts, spec.cjk)?;
    let special = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"];
    let trainer = BpeTrainer::builder()
        .vocab_size(spec.vocab_size)
        .min_frequency(spec.min_frequency)
        .show_progress(false)
        .special_tokens(special.iter().map(|t| AddedToken::from(*t, true)).collect())
        .continuing_subword_prefix("##".into())
        .build();
    let mut pieces = BPE::builder()
        .unk_token("[UNK]".into())
        .build()
        .map_err(|err| anyhow!("cannot set up the tokenizer: {err}"))?;
    let special_tokens = trainer
        .do_train(&words, &mut pieces)
        .map_err(|err| anyhow!("cannot train the tokenizer: {err}"))?;
    let mut tokenizer = match spec.cjk {
        CjkPieces::Characters => Tokenizer::new(WordPiece::from_bpe(&pieces)),
        CjkPieces::Words => Tokenizer::new(pieces),
    };
    tokenizer.with_normalizer(Some(bert_normalizer(spec.cjk)));
    tokenizer.with_pre_tokenizer(Some(BertPreTokenizer));
    tokenizer.with_decoder(Some(WordPieceDecoder::default()));
    tokenizer.add_special_tokens(&special_tokens);
    let id = |token: &str| {
        tokenizer.token_to_id(token).ok_or_else(|| anyhow!("the trained vocabulary lacks {token}"))
    };
    let template = TemplateProcessing::builder()
        .try_single("[CLS] $A [SEP]")
        .and_then(|b| b.try_pair("[CLS] $A [SEP] $B:1 [SEP]:1"))
        .map_err(|err| anyhow!("{err}"))?
        .special_tokens(vec![("[CLS]", id("[CLS]")?), ("[SEP]", id("[SEP]")?)])
        .build()
        .map_err(|err| anyhow!("{err}"))?;
    tokenizer.with_post_processor(Some(template));
    Ok(tokenizer)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_is_stratified_and_seeded() {
        let labels: Vec<u32> = (0..1000).map(|i| u32::from(i % 4 == 0)).collect();
        let splits = stratified_split(&labels, 2, 0.1, 0.1, 3);
        let count = |class: u32, split: Split| {
            (0..1000).filter(|&i| labels[i] == class && splits[i] == split).count()
        };
        assert_eq!((count(1, Split::Test), count(0, Split::Test)), (25, 75));
        assert_eq!((count(1, Split::Val), count(0, Split::Val)), (25, 75));
        assert_eq!(splits, stratified_split(&labels, 2, 0.1, 0.1, 3));
        assert_ne!(splits, stratified_split(&labels, 2, 0.1, 0.1, 4));
    }

    #[test]
    fn wordpiece_training_is_deterministic_and_splits_chinese_characters() {
        let texts: Vec<String> = [
            "质量很好，物流很快",
            "质量不好 the quality is bad",
            "很好很好 good quality",
            "物流太慢了",
            "",
            "the goods arrived quickly",
        ]
        .iter()
        .cycle()
        .take(60)
        .map(|t| t.to_string())
        .collect();
        let first = train_tokenizer(&texts, spec(100, CjkPieces::Characters)).unwrap();
        for _ in 0..3 {
            assert_eq!(
                train_tokenizer(&texts, spec(100, CjkPieces::Characters))
                    .unwrap()
                    .to_string(false)
                    .unwrap(),
                first.to_string(false).unwrap()
            );
        }
        assert_eq!(first.token_to_id("[PAD]"), Some(0));
        let encoding = first.encode("质量很好 quality", true).unwrap();
        assert_eq!(encoding.get_tokens(), ["[CLS]", "质", "量", "很", "好", "quality", "[SEP]"]);
    }

    #[test]
    fn word_mode_learns_chinese_words_and_keeps_unknown_characters_apart() {
        let texts: Vec<String> = ["质量很好，物流很快", "质量不好", "物流太慢了，质量很好"]
            .iter()
            .cycle()
            .take(30)
            .map(|t| t.to_string())
            .collect();
        let tokenizer = train_tokenizer(&texts, spec(60, CjkPieces::Words)).unwrap();
        let tokens = |text: &str| tokenizer.encode(text, true).unwrap().get_tokens().to_vec();
        // "质量很好" is the most frequent run: merged into one token at the start of a
        // clause; after a comma a new word starts.
        assert_eq!(tokens("质量很好，物流很快"), ["[CLS]", "质量很好", "，", "物流很快", "[SEP]"]);
        // 差 never occurs in training: it alone is unknown, the word before it survives
        // (WordPiece would make the whole run one [UNK]).
        assert_eq!(tokens("质量差"), ["[CLS]", "质量", "[UNK]", "[SEP]"]);
    }

    fn spec(vocab_size: usize, cjk: CjkPieces) -> TokenizerSpec {
        TokenizerSpec { vocab_size, min_frequency: 1, cjk }
    }

    #[test]
    fn byte_order_mark_and_blanks_are_removed() {
        assert_eq!(clean_text("\u{feff}好评 "), "好评");
        assert_eq!(clean_text(""), "");
    }
}
