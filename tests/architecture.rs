//! Architecture rules for `src/`, checked by reading the source text (std only, no parser).
//!
//! * `layers_point_down`: a file may name (through `use crate::…`, a `crate::…` path in code,
//!   or `super::…`) only its own top-level module or one of strictly lower rank. The ranks are
//!   the layer table of the layout plan (issue 11 redesign), reproduced in [`LAYERS`] below,
//!   which is the source of truth: change it here, deliberately, when the architecture changes.
//! * `no_import_cycles`: the file-level graph of those references (plus `self::…`) has no cycle.
//! * `functions_are_short`: no function runs past [`MAX_FN_LINES`] lines unless the comment /
//!   attribute block right above it holds a `// long: why` note.
//!
//! The scan is lexical: comments, string and char literals are blanked out first, and a
//! `#[cfg(test)] mod tests` block (and everything after it) is ignored. Not seen: paths without
//! a `crate::` / `super::` / `self::` prefix (a parent naming its child module directly), and
//! `super::` inside an inline module other than the tests block (resolved as if at file level).

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};

/// Layer rank of each top-level module of `src/`. A file may reference its own top-level
/// module or one of strictly lower rank; modules of equal rank are peers and must not
/// reference each other. A module missing here is an "unknown layer" and fails.
const LAYERS: [(&str, u8); 11] = [
    ("base", 0),
    ("ops", 1),
    ("data", 2),
    ("models", 2),
    ("artifacts", 2),
    ("train", 3),
    ("families", 4),
    ("bench", 5),
    ("serve", 5),
    ("report", 5),
    ("cli", 6),
];

/// Longest function (from the `fn` line to its closing brace) allowed without a `long:` note.
const MAX_FN_LINES: usize = 60;

/// Word that, in a comment right above a function, exempts it from [`MAX_FN_LINES`].
const LONG_NOTE: &str = "long:";

/// Crate roots: exempt from layering. main.rs is also left out of the import graph, since it
/// is a separate crate whose `crate::` means the binary, not the library.
const LIB_ROOT: &str = "lib.rs";
const BIN_ROOT: &str = "main.rs";

#[test]
fn layers_point_down() {
    let files = load_sources();
    let mut problems: Vec<String> = files.iter().flat_map(layer_violations).collect();
    problems.dedup();
    assert!(
        problems.is_empty(),
        "files reference modules outside their layer (ranks: LAYERS in tests/architecture.rs):\n  {}",
        problems.join("\n  ")
    );
}

#[test]
fn no_import_cycles() {
    let graph = dependency_graph(&load_sources());
    if let Some(cycle) = find_cycle(&graph) {
        let evidence: Vec<String> = cycle
            .windows(2)
            .map(|pair| format!("{} -> {}  ({})", pair[0], pair[1], graph[&pair[0]][&pair[1]]))
            .collect();
        panic!("import cycle between files: {}\n  {}", cycle.join(" -> "), evidence.join("\n  "));
    }
}

#[test]
fn functions_are_short() {
    let mut too_long = Vec::new();
    for file in &load_sources() {
        for span in function_spans(&file.tokens) {
            if span.lines() > MAX_FN_LINES && !has_long_note(&file.lines, span.start) {
                let place = format!("{}:{}", file.display(), span.start);
                too_long.push(format!("{place} fn {} ({} lines)", span.name, span.lines()));
            }
        }
    }
    assert!(
        too_long.is_empty(),
        "functions over {MAX_FN_LINES} lines (split them, or say why above: `// {LONG_NOTE} …`):\n  {}",
        too_long.join("\n  ")
    );
}

// ---------------------------------------------------------------------------------------------
// Source files

/// One file of `src/`, as the checks see it.
struct SourceFile {
    /// Path relative to `src/` with `/` separators, e.g. `families/node.rs`.
    rel: String,
    /// Module path, e.g. `["families", "node"]`; `["families"]` for `families/mod.rs`; empty
    /// for the crate roots.
    module: Vec<String>,
    /// Original lines, cut before the trailing test module (comments kept, for `long:` notes).
    lines: Vec<String>,
    /// Tokens of those lines with comments and literals blanked out.
    tokens: Vec<Token>,
}

impl SourceFile {
    fn parse(rel: &str, text: &str) -> SourceFile {
        let lines = strip_test_block(text);
        let tokens = tokenize(&mask_non_code(&lines.join("\n")));
        SourceFile { rel: rel.to_string(), module: module_path(rel), lines, tokens }
    }

    fn display(&self) -> String {
        format!("src/{}", self.rel)
    }

    fn is_crate_root(&self) -> bool {
        self.rel == LIB_ROOT || self.rel == BIN_ROOT
    }
}

fn src_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

/// Every `.rs` file under `src/`, sorted so failures list in a stable order.
fn load_sources() -> Vec<SourceFile> {
    let root = src_dir();
    let mut paths = Vec::new();
    collect_rs_files(&root, &mut paths);
    paths.sort();
    // An empty list would make every check pass vacuously.
    assert!(!paths.is_empty(), "no .rs files under {}", root.display());
    let relative = |path: &Path| {
        let parts = path.strip_prefix(&root).expect("file under src/").components();
        parts.map(|part| part.as_os_str().to_string_lossy()).collect::<Vec<_>>().join("/")
    };
    let read = |path: &Path| {
        fs::read_to_string(path)
            .unwrap_or_else(|err| panic!("cannot read {}: {err}", path.display()))
    };
    paths.iter().map(|path| SourceFile::parse(&relative(path), &read(path))).collect()
}

fn collect_rs_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let entries =
        fs::read_dir(dir).unwrap_or_else(|err| panic!("cannot read {}: {err}", dir.display()));
    for entry in entries {
        let path = entry.expect("directory entry").path();
        if path.is_dir() {
            collect_rs_files(&path, out);
        } else if path.extension().is_some_and(|ext| ext == "rs") {
            out.push(path);
        }
    }
}

/// `families/node.rs` -> `families::node`, `families/mod.rs` -> `families`, roots -> empty.
fn module_path(rel: &str) -> Vec<String> {
    if rel == LIB_ROOT || rel == BIN_ROOT {
        return Vec::new();
    }
    let mut parts: Vec<String> = rel.trim_end_matches(".rs").split('/').map(String::from).collect();
    if parts.last().is_some_and(|last| last == "mod") {
        parts.pop();
    }
    parts
}

/// Lines of `text` before a `#[cfg(test)]` that opens `mod tests`: unit tests may reach
/// anywhere (`use super::*`, fixtures from other layers) without shaping the architecture.
fn strip_test_block(text: &str) -> Vec<String> {
    let lines: Vec<&str> = text.lines().collect();
    let end = (0..lines.len()).find(|&at| opens_test_module(&lines[at..])).unwrap_or(lines.len());
    lines[..end].iter().map(|line| line.to_string()).collect()
}

/// Whether `lines` start with `#[cfg(test)]` and, after any further attributes, `mod tests`.
fn opens_test_module(lines: &[&str]) -> bool {
    if lines.first().map(|line| line.trim()) != Some("#[cfg(test)]") {
        return false;
    }
    let mut rest = lines[1..].iter().map(|line| line.trim());
    let item = rest.find(|line| !line.is_empty() && !line.starts_with("#["));
    let item = item.map(|line| line.strip_prefix("pub ").unwrap_or(line).trim_start());
    item.and_then(|line| line.strip_prefix("mod tests"))
        .is_some_and(|after| !after.starts_with(is_ident_char))
}

fn is_ident_char(c: char) -> bool {
    c.is_alphanumeric() || c == '_'
}

// ---------------------------------------------------------------------------------------------
// Masking and tokens

/// `source` with comments, string and char literals replaced by spaces (newlines kept, so line
/// numbers survive): what remains is code, whose braces and paths can be read naively.
fn mask_non_code(source: &str) -> String {
    let chars: Vec<char> = source.chars().collect();
    let mut out = String::with_capacity(source.len());
    let mut at = 0;
    while at < chars.len() {
        let end = non_code_end(&chars, at);
        if end > at {
            out.extend(chars[at..end].iter().map(|&c| if c == '\n' { '\n' } else { ' ' }));
            at = end;
        } else {
            out.push(chars[at]);
            at += 1;
        }
    }
    out
}

/// End (exclusive) of the comment or literal starting at `at`, or `at` when code starts there.
fn non_code_end(chars: &[char], at: usize) -> usize {
    // A raw-string prefix is an `r` (or `br`) that starts a token, not the end of a name.
    let starts_token = at == 0 || !is_ident_char(chars[at - 1]);
    match (chars[at], chars.get(at + 1)) {
        ('/', Some('/')) => {
            chars[at..].iter().position(|&c| c == '\n').map_or(chars.len(), |n| at + n)
        }
        ('/', Some('*')) => block_comment_end(chars, at),
        ('"', _) => quoted_end(chars, at),
        ('\'', _) => char_literal_end(chars, at),
        ('r', _) if starts_token => raw_string_end(chars, at).unwrap_or(at),
        ('b', Some('r')) if starts_token => raw_string_end(chars, at + 1).unwrap_or(at),
        _ => at,
    }
}

/// Block comments nest in Rust: `/* a /* b */ c */` is one comment.
fn block_comment_end(chars: &[char], start: usize) -> usize {
    let mut depth = 0;
    let mut at = start;
    while at < chars.len() {
        match (chars[at], chars.get(at + 1)) {
            ('/', Some('*')) => (depth, at) = (depth + 1, at + 2),
            ('*', Some('/')) if depth == 1 => return at + 2,
            ('*', Some('/')) => (depth, at) = (depth - 1, at + 2),
            _ => at += 1,
        }
    }
    chars.len()
}

/// A `"…"` string (at its opening quote); a backslash escapes the next char, `\"` included.
fn quoted_end(chars: &[char], start: usize) -> usize {
    let mut at = start + 1;
    while at < chars.len() {
        match chars[at] {
            '\\' => at += 2,
            '"' => return at + 1,
            _ => at += 1,
        }
    }
    chars.len()
}

/// A char literal (`'{'`, `'\''`, `'\u{7b}'`) ends at its closing quote; a lifetime or a loop
/// label (`'a`, `'static`) has none and stays code.
fn char_literal_end(chars: &[char], start: usize) -> usize {
    match chars.get(start + 1) {
        Some('\\') => {
            // Skip the escaped char itself, which may be a quote.
            let close = (start + 3..chars.len()).find(|&at| chars[at] == '\'');
            close.map_or(chars.len(), |at| at + 1)
        }
        Some(_) if chars.get(start + 2) == Some(&'\'') => start + 3,
        _ => start,
    }
}

/// A raw string `r"…"` / `r#"…"#` (at its `r`) has no escapes and ends at a quote followed by
/// as many `#` as opened it. None when the `r` starts something else (`return`, `r#type`).
fn raw_string_end(chars: &[char], r_at: usize) -> Option<usize> {
    let hashes = chars[r_at + 1..].iter().take_while(|&&c| c == '#').count();
    let open = r_at + 1 + hashes;
    if chars.get(open) != Some(&'"') {
        return None;
    }
    let closes_at =
        |at: usize| chars[at] == '"' && (1..=hashes).all(|n| chars.get(at + n) == Some(&'#'));
    let close = (open + 1..chars.len()).find(|&at| closes_at(at));
    Some(close.map_or(chars.len(), |at| at + 1 + hashes))
}

#[derive(Debug, PartialEq)]
enum Tok {
    /// A name or keyword (also numbers: harmless, never a path root).
    Ident(String),
    /// `::`
    PathSep,
    /// Any other single character.
    Punct(char),
}

#[derive(Debug)]
struct Token {
    tok: Tok,
    /// 1-based line number in the file.
    line: usize,
}

/// Tokens of masked code, line by line (no token of interest spans lines).
fn tokenize(code: &str) -> Vec<Token> {
    let mut tokens = Vec::new();
    for (index, line) in code.lines().enumerate() {
        let chars: Vec<char> = line.chars().collect();
        let mut at = 0;
        while at < chars.len() {
            let (tok, len) = token_at(&chars, at);
            tokens.extend(tok.map(|tok| Token { tok, line: index + 1 }));
            at += len;
        }
    }
    tokens
}

/// The token starting at `at` (None for whitespace) and how many chars it spans.
fn token_at(chars: &[char], at: usize) -> (Option<Tok>, usize) {
    let c = chars[at];
    if is_ident_char(c) {
        let len = chars[at..].iter().take_while(|&&c| is_ident_char(c)).count();
        (Some(Tok::Ident(chars[at..at + len].iter().collect())), len)
    } else if c == ':' && chars.get(at + 1) == Some(&':') {
        (Some(Tok::PathSep), 2)
    } else if c.is_whitespace() {
        (None, 1)
    } else {
        (Some(Tok::Punct(c)), 1)
    }
}

fn ident(tokens: &[Token], at: usize) -> Option<&str> {
    match tokens.get(at).map(|token| &token.tok) {
        Some(Tok::Ident(name)) => Some(name),
        _ => None,
    }
}

fn is_punct(tokens: &[Token], at: usize, c: char) -> bool {
    tokens.get(at).is_some_and(|token| token.tok == Tok::Punct(c))
}

fn is_path_sep(tokens: &[Token], at: usize) -> bool {
    tokens.get(at).is_some_and(|token| token.tok == Tok::PathSep)
}

// ---------------------------------------------------------------------------------------------
// References between modules

/// A module path a file names, made absolute (the segments after `crate`).
#[derive(Debug, PartialEq)]
struct Reference {
    path: Vec<String>,
    /// Line of the path's last segment: in a multi-line `use` block, the entry itself.
    line: usize,
}

impl Reference {
    /// First segment: the top-level module; `crate` when the path is the crate root itself.
    fn top_level(&self) -> &str {
        self.path.first().map_or("crate", String::as_str)
    }
}

/// Every `crate::…`, `super::…` and `self::…` path in `tokens`, `use` trees expanded, resolved
/// against `module` (the file's own module path). `mod x;` declarations are not paths.
fn find_references(tokens: &[Token], module: &[String]) -> Vec<Reference> {
    let mut found = Vec::new();
    let mut at = 0;
    while at < tokens.len() {
        // `a::self` inside a group is handled by the group; only a path's first segment roots it.
        if is_path_root(tokens, at) && !(at > 0 && is_path_sep(tokens, at - 1)) {
            let (base, next) = resolve_root(tokens, at, module);
            at = parse_tree(tokens, next, base, tokens[at].line, &mut found);
        } else {
            at += 1;
        }
    }
    found
}

fn is_path_root(tokens: &[Token], at: usize) -> bool {
    matches!(ident(tokens, at), Some("crate" | "super" | "self")) && is_path_sep(tokens, at + 1)
}

/// Applies the leading `crate::` / `self::` / `super::` segments (`super::super::` too) to the
/// file's module path; returns that absolute base and the index just after the last `::`.
fn resolve_root(tokens: &[Token], mut at: usize, module: &[String]) -> (Vec<String>, usize) {
    let mut base = module.to_vec();
    while is_path_root(tokens, at) {
        match ident(tokens, at) {
            Some("crate") => base.clear(),
            Some("super") => {
                base.pop();
            }
            _ => {}
        }
        at += 2;
    }
    (base, at)
}

/// Reads one path or use tree from `at` (just after a `::`), pushing each leaf onto `found`;
/// returns the index after it. `{a, b::c}` recurses; `self` in a group names the parent; a
/// path in code stops where its segments stop (`crate::a::f::<T>()` gives `a::f`).
fn parse_tree(
    tokens: &[Token],
    mut at: usize,
    mut path: Vec<String>,
    mut line: usize,
    found: &mut Vec<Reference>,
) -> usize {
    loop {
        match ident(tokens, at) {
            _ if is_punct(tokens, at, '{') => {
                return parse_group(tokens, at + 1, &path, line, found);
            }
            Some("self") => {}
            Some(name) => path.push(name.to_string()),
            None if is_punct(tokens, at, '*') => {}
            None => break,
        }
        line = tokens[at].line;
        at += 1;
        if !is_path_sep(tokens, at) {
            break;
        }
        at += 1;
    }
    found.push(Reference { path, line });
    // `use crate::a::b as c;`: the alias is not a path.
    if ident(tokens, at) == Some("as") { at + 2 } else { at }
}

/// Reads the comma-separated trees of a `{…}` group opened just before `at`; returns the index
/// after its `}`.
fn parse_group(
    tokens: &[Token],
    mut at: usize,
    prefix: &[String],
    line: usize,
    found: &mut Vec<Reference>,
) -> usize {
    while at < tokens.len() {
        if is_punct(tokens, at, '}') {
            return at + 1;
        }
        if is_punct(tokens, at, ',') {
            at += 1;
            continue;
        }
        // Always advance, so malformed input cannot loop forever.
        at = parse_tree(tokens, at, prefix.to_vec(), line, found).max(at + 1);
    }
    at
}

fn rank_of(module: &str) -> Option<u8> {
    LAYERS.iter().find(|(name, _)| *name == module).map(|&(_, rank)| rank)
}

/// `file:line -> module (why)` for each reference that breaks the layering; crate roots are exempt.
fn layer_violations(file: &SourceFile) -> Vec<String> {
    if file.is_crate_root() {
        return Vec::new();
    }
    let own = file.module[0].as_str();
    let Some(own_rank) = rank_of(own) else {
        return vec![format!("{} -> {own} (unknown layer: the file's own module)", file.display())];
    };
    let verdict = |target: &str| match rank_of(target) {
        _ if target == own => None,
        None => Some("unknown layer".to_string()),
        Some(rank) if rank >= own_rank => {
            Some(format!("rank {rank}, not below {own} (rank {own_rank})"))
        }
        Some(_) => None,
    };
    let references = find_references(&file.tokens, &file.module);
    let offending = references.iter().filter_map(|r| Some((r, verdict(r.top_level())?)));
    offending
        .map(|(r, why)| format!("{}:{} -> {} ({why})", file.display(), r.line, r.top_level()))
        .collect()
}

// ---------------------------------------------------------------------------------------------
// File-level import graph

/// from module -> (to module -> where the first such reference is, `src/a.rs:12`).
type Graph = BTreeMap<String, BTreeMap<String, String>>;

fn dependency_graph(files: &[SourceFile]) -> Graph {
    let files: Vec<&SourceFile> = files.iter().filter(|file| file.rel != BIN_ROOT).collect();
    let modules: BTreeSet<Vec<String>> = files.iter().map(|file| file.module.clone()).collect();
    let mut graph = Graph::new();
    for file in files {
        let from = module_name(&file.module);
        let edges = graph.entry(from.clone()).or_default();
        for reference in find_references(&file.tokens, &file.module) {
            let to = module_name(owning_module(&reference.path, &modules));
            if to != from {
                edges.entry(to).or_insert_with(|| format!("{}:{}", file.display(), reference.line));
            }
        }
    }
    graph
}

/// Longest prefix of `path` that is a file's module: `families::driver::train` ->
/// `families::driver` when src/families/driver.rs exists; the crate root at worst.
fn owning_module<'a>(path: &'a [String], modules: &BTreeSet<Vec<String>>) -> &'a [String] {
    let len = (0..=path.len()).rev().find(|&len| modules.contains(&path[..len]));
    &path[..len.unwrap_or(0)]
}

fn module_name(module: &[String]) -> String {
    if module.is_empty() { "crate".to_string() } else { module.join("::") }
}

/// One cycle of `graph` as `[a, b, …, a]`, or None when it has none.
fn find_cycle(graph: &Graph) -> Option<Vec<String>> {
    let mut finished = BTreeSet::new();
    let mut stack = Vec::new();
    graph.keys().find_map(|start| visit(graph, start, &mut stack, &mut finished))
}

/// Depth-first search from `node`. `stack` is the current path, so reaching a node on it closes
/// a cycle; `finished` nodes were fully explored and lead to none.
fn visit(
    graph: &Graph,
    node: &str,
    stack: &mut Vec<String>,
    finished: &mut BTreeSet<String>,
) -> Option<Vec<String>> {
    if let Some(from) = stack.iter().position(|seen| seen == node) {
        let mut cycle = stack[from..].to_vec();
        cycle.push(node.to_string());
        return Some(cycle);
    }
    if finished.contains(node) {
        return None;
    }
    stack.push(node.to_string());
    for next in graph.get(node).into_iter().flat_map(|edges| edges.keys()) {
        if let Some(cycle) = visit(graph, next, stack, finished) {
            return Some(cycle);
        }
    }
    stack.pop();
    finished.insert(node.to_string());
    None
}

// ---------------------------------------------------------------------------------------------
// Function length

/// A function with a body, by 1-based lines: its `fn` keyword and its closing brace.
#[derive(Debug, PartialEq)]
struct FnSpan {
    name: String,
    start: usize,
    end: usize,
}

impl FnSpan {
    fn lines(&self) -> usize {
        self.end - self.start + 1
    }
}

/// Every `fn` with a body, nested ones included (they count towards the outer one too).
fn function_spans(tokens: &[Token]) -> Vec<FnSpan> {
    (0..tokens.len()).filter_map(|at| function_at(tokens, at)).collect()
}

fn function_at(tokens: &[Token], at: usize) -> Option<FnSpan> {
    if ident(tokens, at) != Some("fn") {
        return None;
    }
    let name = ident(tokens, at + 1)?; // `fn(u8) -> u8` pointer types have no name
    let open = body_start(tokens, at + 2)?; // a trait method declaration has no body
    let close = matching_brace(tokens, open)?;
    Some(FnSpan { name: name.to_string(), start: tokens[at].line, end: tokens[close].line })
}

/// Index of the `{` opening the body, None when a `;` ends the signature first. Brackets are
/// tracked so the `;` of an array type (`[u8; 4]`) and a const block in one are skipped.
fn body_start(tokens: &[Token], from: usize) -> Option<usize> {
    let mut depth = 0i32;
    for (at, token) in tokens.iter().enumerate().skip(from) {
        match token.tok {
            Tok::Punct('(' | '[') => depth += 1,
            Tok::Punct(')' | ']') => depth -= 1,
            Tok::Punct('{') if depth == 0 => return Some(at),
            Tok::Punct(';') if depth == 0 => return None,
            _ => {}
        }
    }
    None
}

/// Literals and comments are already masked, so every brace token is real code.
fn matching_brace(tokens: &[Token], open: usize) -> Option<usize> {
    let mut depth = 0usize;
    for (at, token) in tokens.iter().enumerate().skip(open) {
        match token.tok {
            Tok::Punct('{') => depth += 1,
            Tok::Punct('}') if depth == 1 => return Some(at),
            Tok::Punct('}') => depth -= 1,
            _ => {}
        }
    }
    None
}

/// Whether the contiguous comment / attribute block right above line `fn_line` (1-based)
/// carries a `long:` note saying why the function may be long.
fn has_long_note(lines: &[String], fn_line: usize) -> bool {
    let above = lines[..fn_line - 1].iter().rev().map(|line| line.trim());
    let mut block =
        above.take_while(|line| ["//", "#[", "/*", "*"].iter().any(|p| line.starts_with(p)));
    block.any(|line| comment_text(line).is_some_and(mentions_long_note))
}

/// The comment part of a line: after `//` or `/*`, or all of a block comment's inner line.
fn comment_text(line: &str) -> Option<&str> {
    if line.starts_with('*') {
        return Some(line);
    }
    line.find("//").or_else(|| line.find("/*")).map(|at| &line[at..])
}

/// `long:` as a word (`belong:` does not count).
fn mentions_long_note(comment: &str) -> bool {
    comment.match_indices(LONG_NOTE).any(|(at, _)| !comment[..at].ends_with(is_ident_char))
}

// ---------------------------------------------------------------------------------------------
// The helpers above, on inline snippets

mod helpers {
    use super::*;

    /// The references of `code` as if it were src/`rel`, as `path@line`.
    fn references_in(rel: &str, code: &str) -> Vec<String> {
        let file = SourceFile::parse(rel, code);
        let found = find_references(&file.tokens, &file.module);
        found.iter().map(|r| format!("{}@{}", module_name(&r.path), r.line)).collect()
    }

    fn spans_in(code: &str) -> Vec<(String, usize, usize)> {
        let spans = function_spans(&SourceFile::parse("base/x.rs", code).tokens);
        spans.into_iter().map(|span| (span.name, span.start, span.end)).collect()
    }

    #[test]
    fn grouped_use_yields_each_module() {
        let file = SourceFile::parse("families/node.rs", "use crate::{a::x, b};\n");
        let found = find_references(&file.tokens, &file.module);
        let tops: Vec<&str> = found.iter().map(Reference::top_level).collect();
        assert_eq!(tops, ["a", "b"]);
        assert_eq!(references_in("families/node.rs", "use crate::{a::x, b};"), ["a::x@1", "b@1"]);
    }

    #[test]
    fn multi_line_use_blocks_and_code_paths_are_references() {
        let code = "use crate::{\n    base::config::{self, ModelKind},\n    data,\n};\n\
                    fn f() { crate::models::bert::load::<B>(); }\n\
                    use crate::train as t;\n";
        let expected = [
            "base::config@2",
            "base::config::ModelKind@2",
            "data@3",
            "models::bert::load@5",
            "train@6",
        ];
        assert_eq!(references_in("families/node.rs", code), expected);
    }

    #[test]
    fn comments_strings_declarations_and_the_test_block_are_not_references() {
        let code = "//! See [`crate::cli`].\n/// Uses [`crate::bench`].\n// use crate::cli;\n\
                    pub mod driver;\nmod node;\n\
                    pub(crate) fn f() { let s = \"crate::cli::x\"; } /* crate::cli:: */\n\
                    #[cfg(test)]\nmod tests {\n    use crate::cli::testing;\n}\n";
        assert_eq!(references_in("families/mod.rs", code), Vec::<String>::new());
    }

    #[test]
    fn super_and_self_resolve_from_the_file_module() {
        // A leaf file's parent is its directory's module; mod.rs's parent is one level higher.
        assert_eq!(references_in("families/node.rs", "use super::Family;"), ["families::Family@1"]);
        assert_eq!(
            references_in("families/mod.rs", "use super::base::config;"),
            ["base::config@1"]
        );
        assert_eq!(
            references_in("families/mod.rs", "self::driver::run();"),
            ["families::driver::run@1"]
        );
        assert_eq!(
            references_in("a/b/c.rs", "use super::super::x::{self, y};"),
            ["a::x@1", "a::x::y@1"]
        );
        assert_eq!(module_path("families/mod.rs"), ["families"]);
        assert_eq!(module_path("lib.rs"), Vec::<String>::new());
    }

    #[test]
    fn a_path_belongs_to_the_longest_file_module_prefix() {
        let files = ["lib", "families", "families/driver", "base/config"];
        let modules: BTreeSet<Vec<String>> =
            files.iter().map(|rel| module_path(&format!("{rel}.rs"))).collect();
        let owner = |path: &str| {
            let path: Vec<String> = path.split("::").map(String::from).collect();
            module_name(owning_module(&path, &modules))
        };
        assert_eq!(owner("families::driver::train"), "families::driver");
        assert_eq!(owner("base::config::ModelKind"), "base::config");
        assert_eq!(owner("families::Family"), "families");
        assert_eq!(owner("Unknown"), "crate");
    }

    #[test]
    fn braces_in_literals_and_comments_do_not_break_function_spans() {
        let code = r##"fn tricky<'a>(x: &'a str) -> [u8; 2] {
    let open = '{';
    let close = b'}';
    let text = "}}{ \" }";
    let raw = r#"{"}"#;
    let escaped = '\'';
    // }
    /* } { /* } */ */
    'outer: loop { break 'outer; }
}
fn after() {}
"##;
        assert_eq!(spans_in(code), [("tricky".to_string(), 1, 10), ("after".to_string(), 11, 11)]);
    }

    #[test]
    fn declarations_and_fn_pointer_types_are_not_functions() {
        let code = "trait T {\n    fn f(&self) -> [u8; 4];\n}\ntype F = fn(u8) -> u8;\nfn g(x: [u8; 2]) {}\n";
        assert_eq!(spans_in(code), [("g".to_string(), 5, 5)]);
    }

    #[test]
    fn a_long_note_above_the_attributes_exempts_a_function() {
        let body = "    let x = 1;\n".repeat(MAX_FN_LINES);
        let code = format!(
            "// long: one arm per case\n/// Docs.\n#[inline]\nfn noted() {{\n{body}}}\n\n\
             // this does not belong: here\nfn plain() {{\n{body}}}\n"
        );
        let file = SourceFile::parse("base/x.rs", &code);
        let spans = function_spans(&file.tokens);
        let noted =
            spans.iter().map(|span| (span.name.as_str(), has_long_note(&file.lines, span.start)));
        assert_eq!(noted.collect::<Vec<_>>(), [("noted", true), ("plain", false)]);
        assert!(spans.iter().all(|span| span.lines() == MAX_FN_LINES + 2));
    }

    #[test]
    fn cycles_are_found_and_dags_pass() {
        let graph_of = |edges: &[(&str, &str)]| {
            let mut graph = Graph::new();
            for (from, to) in edges {
                graph.entry(from.to_string()).or_default().insert(to.to_string(), String::new());
            }
            graph
        };
        let cycle = find_cycle(&graph_of(&[("a", "b"), ("b", "c"), ("c", "a"), ("c", "d")]));
        assert_eq!(cycle.map(|nodes| nodes.join(" -> ")).as_deref(), Some("a -> b -> c -> a"));
        assert_eq!(find_cycle(&graph_of(&[("a", "b"), ("a", "c"), ("b", "c")])), None);
    }
}
