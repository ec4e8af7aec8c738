//! search: the only module that touches tantivy. One `schema()`, tokenizers registered by role
//! on every open, the indexer that follows the database's change sequence, and queries.
//!
//! Title and body are indexed from the tokens the pipeline stored (tantivy's pre-tokenized
//! text), so each item is segmented once; queries go through the same analyzer, registered as
//! the `ja` tokenizer. A second field of character bigrams with real positions catches words
//! the dictionary segments differently.
use crate::store::{ChangeFollower, Store, StoreError, StoredItem};
use crate::text::{truncate_chars, Analyzer};
use serde::{Deserialize, Serialize};
use std::ops::Bound;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};
use tantivy::collector::{Count, TopDocs};
use tantivy::query::{AllQuery, BooleanQuery, Occur, Query, QueryParser, RangeQuery, TermQuery};
use tantivy::schema::{
    DateOptions, DateTimePrecision, Field, IndexRecordOption, Schema, TextFieldIndexing,
    TextOptions, Value, FAST, INDEXED, STORED, STRING,
};
use tantivy::tokenizer::{PreTokenizedStream, PreTokenizedString, Token as TvToken, Tokenizer};
use tantivy::{
    DateTime as TvDate, Index, IndexReader, IndexWriter, Order, ReloadPolicy, TantivyDocument, Term,
};

#[derive(Debug, thiserror::Error)]
pub enum SearchError {
    #[error("search index error: {0}")]
    Index(#[from] tantivy::TantivyError),
    #[error("cannot open the search index directory {0}")]
    Dir(String),
    #[error("query syntax: {0}")]
    Query(String),
    /// The query is larger than the complexity budget allows (a helpful message).
    #[error("{0}")]
    TooComplex(String),
    /// The process is shutting down: a rebuild in progress was abandoned (the next start
    /// builds again).
    #[error("the index rebuild was stopped by shutdown")]
    Stopped,
    /// The search ran past its time budget and was stopped.
    #[error("the search took longer than its {0:?} budget")]
    OverBudget(std::time::Duration),
    #[error("search task failed: {0}")]
    Task(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

pub type Result<T> = std::result::Result<T, SearchError>;

mod budget;
use budget::Budgeted;
pub use budget::{
    check_query_shape, DEFAULT_BUDGET, MAX_QUERY_CHARS, MAX_QUERY_DEPTH, MAX_QUERY_OPERANDS,
    MAX_QUERY_TERMS,
};

const JA: &str = "ja";
const JA_BASE: &str = "ja_base";
const JA_READING: &str = "ja_reading";
const BIGRAM: &str = "bigram";

/// The form a token takes in the index and in queries: kanji numerals as digits (二段階 →
/// 2段階) and a katakana word's final long vowel dropped (サーバー → サーバ).
pub fn search_form(s: &str) -> String {
    let mut out: String = s
        .chars()
        .map(|c| match c {
            '〇' => '0',
            '一' => '1',
            '二' => '2',
            '三' => '3',
            '四' => '4',
            '五' => '5',
            '六' => '6',
            '七' => '7',
            '八' => '8',
            '九' => '9',
            other => other,
        })
        .collect();
    let katakana = out.chars().all(|c| matches!(c, 'ァ'..='ヺ' | 'ー'));
    if katakana && out.chars().count() > 2 && out.ends_with('ー') {
        out.pop();
    }
    out
}

/// Reading form: katakana reading (or the surface in katakana when it is kana), long vowel
/// folded like `search_form`, so 申し込み/申込み/申込 meet in モウシコミ.
fn reading_form(text: &str, reading: Option<&str>) -> Option<String> {
    let r = match reading {
        Some(r) if !r.is_empty() => r.to_string(),
        _ if text.chars().all(crate::text::is_kana_char) => crate::text::to_katakana(text),
        _ => return None,
    };
    Some(search_form(&r))
}

/// Which form of a token a field indexes.
#[derive(Clone, Copy)]
enum Form {
    Surface,
    Base,
    Reading,
}

fn form_of(t: &crate::store::IndexToken, form: Form) -> String {
    match form {
        Form::Surface => search_form(&t.text),
        Form::Base => search_form(t.base.as_deref().unwrap_or(&t.text)),
        Form::Reading => {
            reading_form(&t.text, t.reading.as_deref()).unwrap_or_else(|| search_form(&t.text))
        }
    }
}

#[derive(Clone, Copy)]
pub struct Fields {
    pub id: Field,
    pub title: Field,
    pub body: Field,
    /// Base forms of title and body (inflection: 使えない finds 使えなかった).
    pub base: Field,
    /// Readings of title and body (okurigana: 申し込み finds 申込).
    pub reading: Field,
    pub grams: Field,
    pub services: Field,
    pub categories: Field,
    pub kind: Field,
    /// The source's own subjects (query `tag:決済`).
    pub tags: Field,
    pub source: Field,
    pub sentiment: Field,
    pub published: Field,
}

/// The one schema. Changing it means `kizashi reindex`.
pub fn schema() -> (Schema, Fields) {
    let mut b = Schema::builder();
    let text = |tokenizer: &str| {
        TextOptions::default().set_indexing_options(
            TextFieldIndexing::default()
                .set_tokenizer(tokenizer)
                .set_index_option(IndexRecordOption::WithFreqsAndPositions),
        )
    };
    let fields = Fields {
        id: b.add_u64_field("id", INDEXED | STORED | FAST),
        title: b.add_text_field("title", text(JA)),
        body: b.add_text_field("body", text(JA)),
        base: b.add_text_field("base", text(JA_BASE)),
        reading: b.add_text_field("reading", text(JA_READING)),
        grams: b.add_text_field("grams", text(BIGRAM)),
        services: b.add_text_field("service", STRING | FAST),
        categories: b.add_text_field("category", STRING | FAST),
        kind: b.add_text_field("kind", STRING | FAST),
        tags: b.add_text_field("tag", STRING | FAST),
        source: b.add_text_field("source", STRING | FAST),
        sentiment: b.add_text_field("sentiment", STRING | FAST),
        published: b.add_date_field(
            "published",
            DateOptions::from(INDEXED | STORED | FAST)
                .set_precision(DateTimePrecision::Milliseconds),
        ),
    };
    (b.build(), fields)
}

/// The `ja`, `ja_base` and `ja_reading` tokenizers: the project's analyzer, minus symbols, as
/// tantivy tokens in the form the field indexes. Queries go through these; documents arrive
/// pre-tokenized from the stored tokens.
#[derive(Clone)]
pub struct JaTokenizer(pub Arc<Analyzer>, Form);

impl Tokenizer for JaTokenizer {
    type TokenStream<'a> = PreTokenizedStream;
    fn token_stream<'a>(&'a mut self, text: &'a str) -> PreTokenizedStream {
        if let Some(encoded) = text.strip_prefix(INDEXED_TOKENS) {
            return PreTokenizedString {
                text: String::new(),
                tokens: decode_indexed(encoded),
            }
            .into();
        }
        // A text the analyzer rejects yields no tokens rather than a panic.
        let tokens = self.0.tokenize(text).unwrap_or_default();
        let form = self.1;
        let tokens = crate::text::index_tokens(&tokens)
            .map(|t| {
                let it = crate::store::IndexToken {
                    text: t.text.clone(),
                    start: t.start,
                    end: t.end,
                    position: t.position,
                    base: Some(t.base.clone()),
                    reading: Some(t.reading.clone()).filter(|r| !r.is_empty()),
                };
                TvToken {
                    offset_from: t.start,
                    offset_to: t.end,
                    position: t.position,
                    text: form_of(&it, form),
                    position_length: 1,
                }
            })
            .collect();
        PreTokenizedString {
            text: text.to_string(),
            tokens,
        }
        .into()
    }
}

/// Marks a document value that carries its tokens already in index form (written by
/// `encode_indexed`): the stored tokens go to the index without being segmented again, and
/// without tantivy's pre-tokenized values, which a document holds as JSON and parses back.
/// Query text and the bodies snippets are cut from never start with it (`strip_controls`),
/// and the pipeline drops NUL from stored text.
const INDEXED_TOKENS: &str = "\u{0}kz\u{0}";

/// Appends tokens in index form: `POSITION \u{1} TEXT \u{0}` each (control characters, which
/// no search can type, are dropped from the text).
fn encode_indexed<'t>(
    out: &mut String,
    tokens: impl Iterator<Item = &'t crate::store::IndexToken>,
    form: Form,
    shift: usize,
) {
    use std::fmt::Write;
    for t in tokens {
        let text = form_of(t, form);
        let _ = write!(out, "{}\u{1}", t.position + shift);
        out.extend(text.chars().filter(|c| !matches!(c, '\u{0}' | '\u{1}')));
        out.push('\u{0}');
    }
}

fn decode_indexed(encoded: &str) -> Vec<TvToken> {
    encoded
        .split_terminator('\u{0}')
        .filter_map(|entry| {
            let (position, text) = entry.split_once('\u{1}')?;
            Some(TvToken {
                offset_from: 0,
                offset_to: 0,
                position: position.parse().ok()?,
                text: text.to_string(),
                position_length: 1,
            })
        })
        .collect()
}

/// Query text without control characters (they mean nothing in a search, and a leading NUL
/// must never read as pre-indexed tokens).
pub fn strip_controls(q: &str) -> std::borrow::Cow<'_, str> {
    if q.chars()
        .any(|c| c.is_control() && !matches!(c, '\t' | '\n' | '\r'))
    {
        q.chars()
            .map(|c| if c.is_control() { ' ' } else { c })
            .collect::<String>()
            .into()
    } else {
        q.into()
    }
}

/// Character bigrams over NFKC/lower-cased text, with real positions (tantivy's NgramTokenizer
/// puts every gram at position 0, which breaks phrases). Runs of letters and digits are split
/// at anything else; a one-character run yields that character.
#[derive(Clone, Default)]
pub struct BigramTokenizer;

pub fn bigrams(text: &str) -> Vec<TvToken> {
    use unicode_normalization::UnicodeNormalization;
    let mut out = Vec::new();
    let mut run: Vec<(char, usize, usize)> = Vec::new();
    let mut position = 0;
    let mut flush = |run: &mut Vec<(char, usize, usize)>, position: &mut usize| {
        if run.len() == 1 {
            let (c, s, e) = run[0];
            out.push(TvToken {
                offset_from: s,
                offset_to: e,
                position: *position,
                text: c.to_string(),
                position_length: 1,
            });
            *position += 1;
        }
        for w in run.windows(2) {
            out.push(TvToken {
                offset_from: w[0].1,
                offset_to: w[1].2,
                position: *position,
                text: format!("{}{}", w[0].0, w[1].0),
                position_length: 1,
            });
            *position += 1;
        }
        if !run.is_empty() {
            *position += 1; // a gap so phrases never span two runs
        }
        run.clear();
    };
    for (start, ch) in text.char_indices() {
        let end = start + ch.len_utf8();
        for n in std::iter::once(ch).nfkc().flat_map(char::to_lowercase) {
            if n.is_alphanumeric() {
                run.push((n, start, end));
            } else {
                flush(&mut run, &mut position);
            }
        }
    }
    flush(&mut run, &mut position);
    out
}

impl Tokenizer for BigramTokenizer {
    type TokenStream<'a> = PreTokenizedStream;
    fn token_stream<'a>(&'a mut self, text: &'a str) -> PreTokenizedStream {
        PreTokenizedString {
            text: text.to_string(),
            tokens: bigrams(text),
        }
        .into()
    }
}

/// What the index has committed, stored in tantivy's commit payload so it is atomic with the
/// documents it describes.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct Watermark {
    /// Highest change sequence applied.
    pub hwm: i64,
    /// Reindex generation the index was built for.
    pub generation: i64,
}

/// One generation of the index: its own directory under the index root, named in `CURRENT`
/// while it is the one served. `kizashi reindex` builds the next generation beside it.
struct Generation {
    index: Index,
    reader: IndexReader,
    dir: PathBuf,
}

/// How far a rebuild into a new generation has come (for `/healthz` and `/admin/status`).
#[derive(Debug, Clone, Copy, Serialize, PartialEq, Eq)]
pub struct RebuildProgress {
    /// The database's reindex generation being built.
    pub generation: i64,
    pub items_done: u64,
    pub items_total: u64,
}

/// The file in the index root that names the live generation's directory.
const CURRENT: &str = "CURRENT";
/// The file in the index root its indexer holds locked.
const LOCK: &str = "LOCK";

/// The index root's lock, held by the one indexer that may build and write generations.
pub struct IndexLock(#[allow(dead_code)] std::fs::File);
/// Items read from the database per step of a rebuild; between steps the live generation
/// catches up, so search stays current while a rebuild runs.
const REBUILD_BATCH: i64 = 2000;
/// Changes read from the database at a time while following.
const FOLLOW_BATCH: i64 = 1000;
/// Most changes applied between two commits while catching up.
const COMMIT_EVERY: usize = 20_000;
/// Memory budget of each index writer (used only as documents arrive): larger segments mean
/// fewer merges (1M items: the index built in 112 s instead of 138 s with 50 MB; BENCHMARKS).
const WRITER_BYTES: usize = 200_000_000;

#[derive(Clone)]
pub struct SearchIndex {
    root: PathBuf,
    live: Arc<RwLock<Arc<Generation>>>,
    rebuilding: Arc<Mutex<Option<RebuildProgress>>>,
    fields: Fields,
    applied: Arc<AtomicI64>,
    /// Normalized service alias → slug, for synonym expansion of queries.
    aliases: Arc<std::collections::HashMap<String, String>>,
    analyzer: Arc<Analyzer>,
    /// Time budget of one text search, in milliseconds.
    budget_ms: Arc<AtomicU64>,
}

/// Sort order of results.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SortBy {
    #[default]
    Relevance,
    Newest,
}

/// A parsed search request (the web layer builds it from query parameters).
#[derive(Debug, Clone, Default)]
pub struct SearchRequest {
    pub q: String,
    pub service: Option<String>,
    pub kind: Option<String>,
    /// epoch ms, half-open [from, to)
    pub from: Option<i64>,
    pub to: Option<i64>,
    pub offset: usize,
    pub limit: usize,
    pub sort: SortBy,
    /// Fill each hit's `evidence` with the stored analysis.
    pub with_evidence: bool,
    pub category: Option<String>,
    pub sentiment: Option<String>,
    pub source: Option<String>,
    /// Count matching items per service, category, sentiment, source and kind.
    pub with_facets: bool,
}

#[derive(Debug, Clone, Serialize)]
pub struct Hit {
    pub id: i64,
    pub url: String,
    pub title: String,
    /// HTML-safe: text escaped, matches wrapped in <b>.
    pub snippet: String,
    pub published_at: String,
    pub source: String,
    pub kind: String,
    pub services: Vec<String>,
    pub sentiment: HitSentiment,
    /// The analysis behind the labels (services, categories and sentiment with evidence),
    /// when asked for.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub evidence: Option<crate::domain::Analysis>,
}

#[derive(Debug, Clone, Serialize)]
pub struct HitSentiment {
    pub label: String,
    pub score: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct SearchResults {
    pub total: usize,
    pub hits: Vec<Hit>,
    /// facet name → value → matching items (when asked for)
    #[serde(skip_serializing_if = "Option::is_none")]
    pub facets: Option<std::collections::BTreeMap<String, std::collections::BTreeMap<String, u64>>>,
}

/// Fields counted as facets (schema names, which are also the query-language field names).
pub const FACETS: [&str; 5] = ["service", "category", "sentiment", "source", "kind"];

/// Rewrites the bare words of a user query (not phrases, not `field:value`, not operators):
/// each also matches its base forms with two tokens of slop (不正利用 finds 不正に利用), and a
/// service alias also matches the service's items (セブンペイ finds 7pay).
pub fn expand_query(q: &str, service_of: impl Fn(&str) -> Option<String>) -> String {
    let q = &*strip_controls(q);
    let mut out = String::with_capacity(q.len() * 2);
    let mut chars = q.char_indices().peekable();
    while let Some((i, c)) = chars.next() {
        if c.is_whitespace() {
            out.push(c);
            continue;
        }
        if c == '"' {
            // a phrase, copied with its optional ~slop
            let mut end = q.len();
            for (j, d) in chars.by_ref() {
                if d == '"' {
                    end = j + 1;
                    break;
                }
            }
            while let Some(&(j, d)) = chars.peek() {
                if d.is_whitespace() {
                    break;
                }
                end = j + d.len_utf8();
                chars.next();
            }
            out.push_str(&q[i..end.max(i + 1).min(q.len())]);
            continue;
        }
        let mut end = i + c.len_utf8();
        while let Some(&(j, d)) = chars.peek() {
            if d.is_whitespace() || d == '"' {
                break;
            }
            end = j + d.len_utf8();
            chars.next();
        }
        let word = &q[i..end];
        let special = matches!(word, "AND" | "OR" | "NOT")
            || word.starts_with(['-', '+', '('])
            || word.contains([':', '(', ')', '[', ']', '{', '}', '^', '*', '~', '\\', '\''])
            || word.ends_with(')');
        if special {
            out.push_str(word);
            continue;
        }
        out.push('(');
        out.push_str(word);
        out.push_str(&format!(" OR base:\"{word}\"~2"));
        if let Some(slug) = service_of(word) {
            out.push_str(&format!(" OR service:{slug}"));
        }
        out.push(')');
    }
    out
}

/// Snippet length in characters; tantivy counts bytes, so it is given three per character.
const SNIPPET_CHARS: usize = 100;

/// Errors tantivy reports only when a parsed query runs (`field:*` on an unknown field or on a
/// text field) are the query's fault: a 400, not a 500.
fn run_error(e: tantivy::TantivyError) -> SearchError {
    match e {
        tantivy::TantivyError::FieldNotFound(f) => SearchError::Query(format!(
            "unknown field {f:?}; fields are title, service, category, sentiment, kind, source, tag"
        )),
        tantivy::TantivyError::SchemaError(m) => SearchError::Query(m),
        other => SearchError::Index(other),
    }
}

/// A built query and how to tell whether its time budget ran out.
struct Built {
    query: Box<dyn Query>,
    expired: Arc<AtomicBool>,
    budget: Duration,
}

impl Built {
    fn check(&self) -> Result<()> {
        if self.expired.load(Ordering::Relaxed) {
            Err(SearchError::OverBudget(self.budget))
        } else {
            Ok(())
        }
    }
}

impl SearchIndex {
    /// Opens the live generation under `root` (or creates an empty one, which the indexer
    /// fills from the database), registering the tokenizers. Every command opens the index;
    /// only the indexer writes it (see `remove_stale_generations`).
    pub fn open(
        root: &Path,
        analyzer: Arc<Analyzer>,
        aliases: std::collections::HashMap<String, String>,
    ) -> Result<Self> {
        std::fs::create_dir_all(root).map_err(dir_error(root))?;
        let live = match current_name(root).filter(|n| root.join(n).is_dir()) {
            Some(name) => match Generation::open(&root.join(&name), &analyzer) {
                Ok(g) => Some(g),
                Err(SearchError::Index(e)) => {
                    // Another schema (or a damaged directory): the database rebuilds it.
                    tracing::warn!(error = %e, generation = %name, "index cannot be opened; rebuilding");
                    None
                }
                Err(e) => return Err(e),
            },
            None => None,
        };
        let live = match live {
            Some(g) => g,
            None => {
                let g = Generation::open(&next_generation_dir(root)?, &analyzer)?;
                set_current(root, &g.dir)?;
                g
            }
        };
        let s = Self {
            root: root.to_path_buf(),
            live: Arc::new(RwLock::new(Arc::new(live))),
            rebuilding: Arc::new(Mutex::new(None)),
            fields: schema().1,
            applied: Arc::new(AtomicI64::new(0)),
            aliases: Arc::new(aliases),
            analyzer,
            budget_ms: Arc::new(AtomicU64::new(DEFAULT_BUDGET.as_millis() as u64)),
        };
        let w = s.committed_watermark()?;
        s.applied.store(w.hwm, Ordering::SeqCst);
        Ok(s)
    }

    /// Takes the index root for this process's indexer: an exclusive lock on `LOCK` in the
    /// root, held while the returned guard lives. `None` when another process (a second node
    /// sharing the data directory) holds it; that process then builds and writes, and this one
    /// follows its generations with `follow_owner`.
    pub fn lock_for_writing(&self) -> Result<Option<IndexLock>> {
        let path = self.root.join(LOCK);
        let file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(dir_error(&path))?;
        match file.try_lock() {
            Ok(()) => Ok(Some(IndexLock(file))),
            Err(std::fs::TryLockError::WouldBlock) => Ok(None),
            Err(std::fs::TryLockError::Error(e)) => Err(dir_error(&path)(e)),
        }
    }

    /// Removes the directories of other generations (a rebuild that a crash interrupted, one
    /// replaced just before a crash) and files of the layout before generations. Only under
    /// the root's lock (`lock_for_writing`): its holder alone builds generations.
    pub fn remove_stale_generations(&self, _lock: &IndexLock) {
        remove_other_generations(&self.root, &self.live().dir);
    }

    /// For a process without the root's lock: moves to the generation `CURRENT` names, or
    /// reloads the live one, so searches see what the lock holder committed.
    pub fn follow_owner(&self) -> Result<()> {
        let named = current_name(&self.root).map(|n| self.root.join(n));
        let live = self.live();
        match named {
            Some(dir) if dir != live.dir && dir.is_dir() => {
                let next = Arc::new(Generation::open(&dir, &self.analyzer)?);
                self.applied
                    .store(watermark_of(&next.index)?.hwm, Ordering::SeqCst);
                *self.live.write().unwrap_or_else(|e| e.into_inner()) = next;
            }
            _ => {
                live.reader.reload()?;
                self.applied
                    .store(watermark_of(&live.index)?.hwm, Ordering::SeqCst);
            }
        }
        Ok(())
    }

    fn live(&self) -> Arc<Generation> {
        self.live.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// The directory of the generation being served.
    pub fn live_dir(&self) -> PathBuf {
        self.live().dir.clone()
    }

    /// A rebuild in progress, if any.
    pub fn rebuild_progress(&self) -> Option<RebuildProgress> {
        *self.rebuilding.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// What the live generation has committed. An index that never committed has generation
    /// -1, so the indexer fills it by a full rebuild rather than by replaying changes.
    pub fn committed_watermark(&self) -> Result<Watermark> {
        watermark_of(&self.live().index)
    }

    /// The change sequence the searchable index reflects.
    pub fn applied_seq(&self) -> i64 {
        self.applied.load(Ordering::SeqCst)
    }

    /// A writer for the live generation (the indexer's; a switch to a new generation
    /// replaces it in place).
    pub fn writer(&self) -> Result<IndexWriter> {
        Ok(self.live().index.writer(WRITER_BYTES)?)
    }

    fn document(&self, item: &StoredItem) -> TantivyDocument {
        let f = self.fields;
        let encoded = |parts: &[(&[crate::store::IndexToken], usize)], form: Form| {
            let mut out =
                String::with_capacity(16 + 24 * parts.iter().map(|p| p.0.len()).sum::<usize>());
            out.push_str(INDEXED_TOKENS);
            for (tokens, shift) in parts {
                encode_indexed(&mut out, tokens.iter(), form, *shift);
            }
            out
        };
        let (title, body) = (&item.tokens.title[..], &item.tokens.body[..]);
        let mut doc = TantivyDocument::default();
        doc.add_u64(f.id, item.id as u64);
        doc.add_text(f.title, encoded(&[(title, 0)], Form::Surface));
        doc.add_text(f.body, encoded(&[(body, 0)], Form::Surface));
        // Title and body share the base and reading fields; a position gap keeps phrases
        // from running across the two.
        let gap = title.iter().map(|t| t.position + 1).max().unwrap_or(0) + 10;
        doc.add_text(f.base, encoded(&[(title, 0), (body, gap)], Form::Base));
        doc.add_text(
            f.reading,
            encoded(&[(title, 0), (body, gap)], Form::Reading),
        );
        doc.add_text(f.grams, format!("{}\n{}", item.title, item.body));
        for s in &item.services {
            doc.add_text(f.services, s);
        }
        for c in &item.categories {
            doc.add_text(f.categories, c);
        }
        doc.add_text(f.kind, &item.kind);
        for t in &item.tags {
            doc.add_text(f.tags, t);
        }
        doc.add_text(f.source, &item.source);
        doc.add_text(f.sentiment, &item.sentiment_label);
        doc.add_date(
            f.published,
            TvDate::from_timestamp_millis(item.published_at),
        );
        doc
    }

    /// Applies changes after the committed watermark; when the database asks for a new
    /// generation (`kizashi reindex`, a restore, an empty index), first builds it beside the
    /// live one and switches to it once complete. Each commit carries its watermark.
    /// Returns the number of changes (or items, for a rebuild) applied. `follower` carries,
    /// between calls, the sequence numbers still awaited for the live generation (PostgreSQL
    /// commits them out of order; see `ChangeFollower`).
    pub async fn catch_up(
        &self,
        store: &Store,
        writer: &Mutex<IndexWriter>,
        follower: &mut Option<ChangeFollower>,
        stop: &AtomicBool,
    ) -> Result<usize> {
        let mark = self.committed_watermark()?;
        let generation: i64 = store
            .meta("reindex_generation")
            .await?
            .and_then(|g| g.parse().ok())
            .unwrap_or(0);
        let mut applied = 0;
        if generation != mark.generation {
            // An index that never committed has nothing to serve meanwhile.
            let follow_live = mark.generation >= 0;
            applied += self
                .rebuild(store, writer, follower, generation, follow_live, stop)
                .await?;
        }
        let live = self.live();
        let mark = watermark_of(&live.index)?;
        applied += self
            .follow(store, &live, writer, follower, mark, true)
            .await?;
        Ok(applied)
    }

    /// Applies the changes after `mark` to `generation`, one commit per batch. A follower
    /// whose mark differs from the committed one (another generation) starts again from the
    /// mark; after a failed batch it is dropped, so late arrivals it had already handed out are
    /// read again (from the mark, with the restart rescan) rather than lost.
    async fn follow(
        &self,
        store: &Store,
        generation: &Generation,
        writer: &Mutex<IndexWriter>,
        follower: &mut Option<ChangeFollower>,
        mark: Watermark,
        live: bool,
    ) -> Result<usize> {
        let result = self
            .follow_with(store, generation, writer, follower, mark, live)
            .await;
        if result.is_err() {
            *follower = None;
        }
        result
    }

    async fn follow_with(
        &self,
        store: &Store,
        generation: &Generation,
        writer: &Mutex<IndexWriter>,
        follower: &mut Option<ChangeFollower>,
        mut mark: Watermark,
        live: bool,
    ) -> Result<usize> {
        let mut applied = 0;
        let follower = match follower {
            Some(f) if f.hwm() == mark.hwm => f,
            _ => follower.insert(ChangeFollower::new(mark.hwm, store.dialect())),
        };
        // A backlog (a start after a bulk import) is committed every COMMIT_EVERY changes, not
        // every read batch: each commit writes a segment that merges must fold in again.
        let mut uncommitted = 0;
        loop {
            let changes = follower.next(store, FOLLOW_BATCH).await?;
            if changes.is_empty() {
                break;
            }
            let mut ids: Vec<i64> = changes.iter().map(|(_, id)| *id).collect();
            ids.sort_unstable();
            ids.dedup();
            let items = store.items(&ids).await?;
            with_writer(writer, |w| {
                // Delete then add by id: idempotent, so replaying a change is harmless, and
                // an id with no row left (a deletion) stays deleted.
                for id in &ids {
                    w.delete_term(Term::from_field_u64(self.fields.id, *id as u64));
                }
                for item in &items {
                    w.add_document(self.document(item))?;
                }
                Ok(())
            })?;
            applied += changes.len();
            uncommitted += changes.len();
            mark.hwm = follower.hwm();
            if uncommitted >= COMMIT_EVERY || changes.len() < FOLLOW_BATCH as usize {
                self.commit(generation, writer, mark, live)?;
                uncommitted = 0;
            }
        }
        if uncommitted > 0 {
            self.commit(generation, writer, mark, live)?;
        }
        Ok(applied)
    }

    /// Builds `generation` in a new directory from every stored item while the live generation
    /// keeps serving and following changes, then switches: `CURRENT` names the new directory,
    /// searches and the indexer's writer move to it, the old directory is removed. A crash
    /// before the switch leaves the old generation live and the next start builds again; an
    /// error removes the new directory and the next call starts over.
    async fn rebuild(
        &self,
        store: &Store,
        live_writer: &Mutex<IndexWriter>,
        live_follower: &mut Option<ChangeFollower>,
        generation: i64,
        follow_live: bool,
        stop: &AtomicBool,
    ) -> Result<usize> {
        let dir = next_generation_dir(&self.root)?;
        let set_progress = |p: Option<RebuildProgress>| {
            *self.rebuilding.lock().unwrap_or_else(|e| e.into_inner()) = p;
        };
        let opened = Generation::open(&dir, &self.analyzer)
            .and_then(|g| Ok((g.index.writer(WRITER_BYTES)?, g)));
        let (writer, next) = match opened {
            Ok((w, g)) => (Mutex::new(w), g),
            Err(e) => {
                let _ = std::fs::remove_dir_all(&dir);
                return Err(e);
            }
        };
        let mut next_follower = None;
        let built = async {
            let upto = store.last_change().await?;
            let total = store.item_count().await?.max(0) as u64;
            let progress = |done: u64| {
                set_progress(Some(RebuildProgress {
                    generation,
                    items_done: done,
                    items_total: total.max(done),
                }))
            };
            progress(0);
            tracing::info!(generation, items = total, dir = %dir.display(), "rebuilding the index in a new generation");
            let mut done = 0u64;
            let mut after = 0;
            loop {
                // A shutdown does not wait for a whole rebuild.
                if stop.load(Ordering::SeqCst) {
                    return Err(SearchError::Stopped);
                }
                let ids = store.item_ids_after(after, REBUILD_BATCH).await?;
                let Some(&last) = ids.last() else { break };
                after = last;
                let items = store.items(&ids).await?;
                done += items.len() as u64;
                with_writer(&writer, |w| {
                    for item in &items {
                        w.add_document(self.document(item))?;
                    }
                    Ok(())
                })?;
                progress(done);
                // Search stays current meanwhile.
                if follow_live {
                    let live = self.live();
                    let mark = watermark_of(&live.index)?;
                    self.follow(store, &live, live_writer, live_follower, mark, true)
                        .await?;
                }
            }
            let mark = Watermark {
                hwm: upto,
                generation,
            };
            self.commit(&next, &writer, mark, false)?;
            // Changes made during the build, then the switch.
            self.follow(store, &next, &writer, &mut next_follower, mark, false)
                .await?;
            set_current(&self.root, &dir)?;
            Ok::<u64, SearchError>(done)
        }
        .await;
        let writer = writer.into_inner().unwrap_or_else(|e| e.into_inner());
        let done = match built {
            Ok(done) => done,
            Err(e) => {
                set_progress(None);
                // Merges still running would write into the directory being removed.
                let _ = writer.wait_merging_threads();
                let _ = std::fs::remove_dir_all(&dir);
                return Err(e);
            }
        };
        let next = Arc::new(next);
        let old = std::mem::replace(
            &mut *self.live.write().unwrap_or_else(|e| e.into_inner()),
            next.clone(),
        );
        let old_writer = std::mem::replace(
            &mut *live_writer.lock().unwrap_or_else(|e| e.into_inner()),
            writer,
        );
        *live_follower = next_follower;
        match watermark_of(&next.index) {
            Ok(w) => self.applied.store(w.hwm, Ordering::SeqCst),
            Err(e) => tracing::warn!(error = %e, "new generation's watermark unreadable"),
        }
        // The old writer's merges finish before its directory goes; searches still holding
        // the old generation keep their memory maps.
        if let Err(e) = old_writer.wait_merging_threads() {
            tracing::warn!(error = %e, "old index generation's merges ended with an error");
        }
        if let Err(e) = std::fs::remove_dir_all(&old.dir) {
            tracing::warn!(error = %e, dir = %old.dir.display(), "old index generation not removed");
        }
        set_progress(None);
        tracing::info!(generation, items = done, dir = %dir.display(), "switched to the new index generation");
        Ok(done as usize)
    }

    fn commit(
        &self,
        generation: &Generation,
        writer: &Mutex<IndexWriter>,
        mark: Watermark,
        live: bool,
    ) -> Result<()> {
        let payload = serde_json::to_string(&mark).unwrap_or_default();
        with_writer(writer, |w| {
            let mut prepared = w.prepare_commit()?;
            prepared.set_payload(&payload);
            prepared.commit()?;
            Ok(())
        })?;
        generation.reader.reload()?;
        if live {
            self.applied.store(mark.hwm, Ordering::SeqCst);
        }
        Ok(())
    }

    /// Sets the time budget of each text search (`limits.search_budget_ms`).
    pub fn set_time_budget(&self, budget: Duration) {
        self.budget_ms.store(
            budget.as_millis().min(u64::MAX as u128) as u64,
            Ordering::Relaxed,
        );
    }

    fn build_query(&self, generation: &Generation, req: &SearchRequest) -> Result<Built> {
        let f = self.fields;
        let mut clauses: Vec<(Occur, Box<dyn Query>)> = Vec::new();
        let budget = Duration::from_millis(self.budget_ms.load(Ordering::Relaxed));
        // The clock starts before parsing: analysis of a long query is part of the cost.
        let deadline = Instant::now() + budget;
        let text_query = !req.q.trim().is_empty();
        if text_query {
            check_query_shape(&req.q)?;
            // Exact surface matches rank first; base forms, readings and bigrams widen recall.
            let mut parser = QueryParser::for_index(
                &generation.index,
                vec![f.title, f.body, f.base, f.reading, f.grams],
            );
            parser.set_conjunction_by_default();
            parser.set_field_boost(f.title, 3.0);
            parser.set_field_boost(f.body, 2.0);
            parser.set_field_boost(f.base, 1.0);
            parser.set_field_boost(f.reading, 0.7);
            parser.set_field_boost(f.grams, 0.3);
            let expanded = expand_query(&req.q, |w| {
                let norm = self.analyzer.normalize_term(w).ok()?;
                self.aliases.get(&norm).cloned()
            });
            let q = parser
                .parse_query(&expanded)
                .map_err(|e| SearchError::Query(e.to_string()))?;
            let mut terms = 0usize;
            q.query_terms(&mut |_, _| terms += 1);
            if terms > MAX_QUERY_TERMS {
                return Err(SearchError::TooComplex(format!(
                    "q: the query expands to {terms} index terms (at most {MAX_QUERY_TERMS}); \
                     use fewer or shorter words"
                )));
            }
            clauses.push((Occur::Must, q));
        }
        for (field, value) in [
            (f.categories, &req.category),
            (f.sentiment, &req.sentiment),
            (f.source, &req.source),
        ] {
            if let Some(v) = value {
                clauses.push((
                    Occur::Must,
                    Box::new(TermQuery::new(
                        Term::from_field_text(field, v),
                        IndexRecordOption::Basic,
                    )),
                ));
            }
        }
        let term = |field: Field, v: &str| -> Box<dyn Query> {
            Box::new(TermQuery::new(
                Term::from_field_text(field, v),
                IndexRecordOption::Basic,
            ))
        };
        if let Some(s) = &req.service {
            clauses.push((Occur::Must, term(f.services, s)));
        }
        if let Some(k) = &req.kind {
            clauses.push((Occur::Must, term(f.kind, k)));
        }
        if req.from.is_some() || req.to.is_some() {
            let bound = |v: Option<i64>, inclusive: bool| match v {
                None => Bound::Unbounded,
                Some(ms) => {
                    let t = Term::from_field_date(f.published, TvDate::from_timestamp_millis(ms));
                    if inclusive {
                        Bound::Included(t)
                    } else {
                        Bound::Excluded(t)
                    }
                }
            };
            clauses.push((
                Occur::Must,
                Box::new(RangeQuery::new(bound(req.from, true), bound(req.to, false))),
            ));
        }
        let query: Box<dyn Query> = match clauses.len() {
            0 => Box::new(AllQuery),
            _ => {
                if clauses
                    .iter()
                    .all(|(_, q)| q.is::<RangeQuery>() || q.is::<TermQuery>())
                {
                    clauses.push((Occur::Must, Box::new(AllQuery)));
                }
                Box::new(BooleanQuery::new(clauses))
            }
        };
        let expired = Arc::new(AtomicBool::new(false));
        // Filters alone cost at most one pass over the index; a text query gets the budget.
        let query: Box<dyn Query> = if text_query {
            Box::new(Budgeted {
                inner: query,
                deadline,
                expired: expired.clone(),
            })
        } else {
            query
        };
        Ok(Built {
            query,
            expired,
            budget,
        })
    }

    /// Runs a search; the hits are filled from the database (the source of truth). The index
    /// work runs on a blocking thread, so a heavy query never holds an HTTP worker.
    pub async fn search(&self, store: &Store, req: &SearchRequest) -> Result<SearchResults> {
        let this = self.clone();
        let owned = req.clone();
        let (total, ids, facets, mut generator) =
            tokio::task::spawn_blocking(move || this.search_index(&owned))
                .await
                .map_err(|e| SearchError::Task(e.to_string()))??;
        let items = store.items(&ids).await?;
        generator.set_max_num_chars(SNIPPET_CHARS * 3);
        let hits = items
            .into_iter()
            .map(|it| {
                // (A stored body never reads as pre-indexed tokens: see INDEXED_TOKENS.)
                let snippet = generator.snippet(&strip_controls(&it.body));
                let snippet = if snippet.is_empty() {
                    html_escape::encode_text(&truncate_chars(&it.body, SNIPPET_CHARS)).into_owned()
                } else {
                    // Adjacent highlighted tokens (不正|利用) read as one highlight.
                    snippet.to_html().replace("</b><b>", "")
                };
                Hit {
                    id: it.id,
                    url: it.url,
                    title: it.title,
                    snippet,
                    published_at: crate::aggregate::jst_rfc3339(it.published_at),
                    source: it.source,
                    kind: it.kind,
                    services: it.services,
                    sentiment: HitSentiment {
                        label: it.sentiment_label,
                        score: it.sentiment_score,
                    },
                    evidence: req
                        .with_evidence
                        .then(|| serde_json::from_str(&it.analysis).ok())
                        .flatten(),
                }
            })
            .collect();
        Ok(SearchResults {
            total,
            hits,
            facets,
        })
    }

    /// The index part of `search`: total, ids of the requested page, facets, and the snippet
    /// generator for the query. Fails with `OverBudget` when the time budget ran out.
    #[allow(clippy::type_complexity)]
    fn search_index(
        &self,
        req: &SearchRequest,
    ) -> Result<(
        usize,
        Vec<i64>,
        Option<std::collections::BTreeMap<String, std::collections::BTreeMap<String, u64>>>,
        tantivy::snippet::SnippetGenerator,
    )> {
        let generation = self.live();
        let built = self.build_query(&generation, req)?;
        let query: &dyn Query = &*built.query;
        let searcher = generation.reader.searcher();
        let limit = req.limit.max(1);
        // One pass over the matches: the count, the page and the facet counts are collected
        // together (a phrase query checks positions once, not three times).
        let agg = if req.with_facets {
            Some(self.facet_collector(&searcher)?)
        } else {
            None
        };
        let top = TopDocs::with_limit(limit).and_offset(req.offset);
        let (total, addrs, aggs) = match req.sort {
            SortBy::Relevance => {
                let (n, page, aggs) = searcher
                    .search(query, &(Count, top.order_by_score(), agg))
                    .map_err(run_error)?;
                (
                    n,
                    page.into_iter().map(|(_, a)| a).collect::<Vec<_>>(),
                    aggs,
                )
            }
            SortBy::Newest => {
                let (n, page, aggs) = searcher
                    .search(
                        query,
                        &(
                            Count,
                            top.order_by_fast_field::<TvDate>("published", Order::Desc),
                            agg,
                        ),
                    )
                    .map_err(run_error)?;
                (
                    n,
                    page.into_iter().map(|(_, a)| a).collect::<Vec<_>>(),
                    aggs,
                )
            }
        };
        let mut ids = Vec::with_capacity(addrs.len());
        for a in addrs {
            let doc: TantivyDocument = searcher.doc(a)?;
            if let Some(id) = doc.get_first(self.fields.id).and_then(|v| v.as_u64()) {
                ids.push(id as i64);
            }
        }
        let facets = aggs.map(|a| facet_counts(&a)).transpose()?;
        built.check()?;
        let generator =
            tantivy::snippet::SnippetGenerator::create(&searcher, query, self.fields.body)?;
        Ok((total, ids, facets, generator))
    }

    /// Counts of matching items per facet value: terms aggregations on the fast fields.
    fn facet_collector(
        &self,
        searcher: &tantivy::Searcher,
    ) -> Result<tantivy::aggregation::AggregationCollector> {
        use tantivy::aggregation::{
            AggContextParams, AggregationCollector, AggregationLimitsGuard,
        };
        let request: serde_json::Map<String, serde_json::Value> = FACETS
            .iter()
            .map(|f| {
                (
                    f.to_string(),
                    serde_json::json!({ "terms": { "field": f, "size": 100 } }),
                )
            })
            .collect();
        let aggs: tantivy::aggregation::agg_req::Aggregations =
            serde_json::from_value(serde_json::Value::Object(request))
                .map_err(|e| SearchError::Query(format!("facet request: {e}")))?;
        Ok(AggregationCollector::from_aggs(
            aggs,
            AggContextParams::new(
                AggregationLimitsGuard::default(),
                searcher.index().tokenizers().clone(),
            ),
        ))
    }

    /// Ids of every item matching the request.
    pub fn matching_ids(&self, req: &SearchRequest) -> Result<Vec<i64>> {
        let mut out = self.matching_values(req, |seg, docs, out| {
            let col = seg.fast_fields().u64("id")?;
            out.extend(
                docs.iter()
                    .filter_map(|d| col.first(*d))
                    .map(|id| id as i64),
            );
            Ok(())
        })?;
        out.sort_unstable();
        Ok(out)
    }

    /// Publication times (epoch ms) of every item matching the request, for time series.
    pub fn matching_times(&self, req: &SearchRequest) -> Result<Vec<i64>> {
        self.matching_values(req, |seg, docs, out| {
            let col = seg.fast_fields().date("published")?;
            out.extend(
                docs.iter()
                    .filter_map(|d| col.first(*d))
                    .map(|t| t.into_timestamp_millis()),
            );
            Ok(())
        })
    }

    /// Runs the request and reads one fast-field value per matching document, segment by
    /// segment.
    fn matching_values(
        &self,
        req: &SearchRequest,
        read: impl Fn(&tantivy::SegmentReader, &[tantivy::DocId], &mut Vec<i64>) -> tantivy::Result<()>,
    ) -> Result<Vec<i64>> {
        let generation = self.live();
        let built = self.build_query(&generation, req)?;
        let searcher = generation.reader.searcher();
        let docs = searcher
            .search(&*built.query, &tantivy::collector::DocSetCollector)
            .map_err(run_error)?;
        built.check()?;
        let mut by_segment: std::collections::BTreeMap<u32, Vec<tantivy::DocId>> =
            Default::default();
        for a in &docs {
            by_segment.entry(a.segment_ord).or_default().push(a.doc_id);
        }
        let mut out = Vec::with_capacity(docs.len());
        for (seg_ord, ids) in by_segment {
            read(searcher.segment_reader(seg_ord), &ids, &mut out)?;
        }
        Ok(out)
    }
}

/// Facet name → value → count, from the facet aggregations' results.
type FacetCounts = std::collections::BTreeMap<String, std::collections::BTreeMap<String, u64>>;

fn facet_counts(
    result: &tantivy::aggregation::agg_result::AggregationResults,
) -> Result<FacetCounts> {
    let json = serde_json::to_value(result).map_err(|e| SearchError::Query(e.to_string()))?;
    let mut out = std::collections::BTreeMap::new();
    for f in FACETS {
        let mut counts = std::collections::BTreeMap::new();
        for b in json[f]["buckets"].as_array().into_iter().flatten() {
            if let (Some(k), Some(n)) = (b["key"].as_str(), b["doc_count"].as_u64()) {
                counts.insert(k.to_string(), n);
            }
        }
        out.insert(f.to_string(), counts);
    }
    Ok(out)
}

impl Generation {
    /// Opens or creates the index in `dir` with the one schema and the tokenizers by role.
    fn open(dir: &Path, analyzer: &Arc<Analyzer>) -> Result<Self> {
        std::fs::create_dir_all(dir).map_err(dir_error(dir))?;
        let mmap = tantivy::directory::MmapDirectory::open(dir)
            .map_err(|e| SearchError::Dir(format!("{}: {e}", dir.display())))?;
        let index = Index::open_or_create(mmap, schema().0)?;
        let t = index.tokenizers();
        t.register(JA, JaTokenizer(analyzer.clone(), Form::Surface));
        t.register(JA_BASE, JaTokenizer(analyzer.clone(), Form::Base));
        t.register(JA_READING, JaTokenizer(analyzer.clone(), Form::Reading));
        t.register(BIGRAM, BigramTokenizer);
        let reader = index
            .reader_builder()
            .reload_policy(ReloadPolicy::Manual)
            .try_into()?;
        Ok(Self {
            index,
            reader,
            dir: dir.to_path_buf(),
        })
    }
}

fn watermark_of(index: &Index) -> Result<Watermark> {
    let metas = index.load_metas()?;
    Ok(metas
        .payload
        .and_then(|p| serde_json::from_str(&p).ok())
        .unwrap_or(Watermark {
            hwm: 0,
            generation: -1,
        }))
}

fn with_writer<T>(
    writer: &Mutex<IndexWriter>,
    f: impl FnOnce(&mut IndexWriter) -> tantivy::Result<T>,
) -> Result<T> {
    let mut w = writer.lock().unwrap_or_else(|e| e.into_inner());
    Ok(f(&mut w)?)
}

fn dir_error(path: &Path) -> impl Fn(std::io::Error) -> SearchError + Copy + '_ {
    move |e| SearchError::Dir(format!("{}: {e}", path.display()))
}

/// Generation directories are `g` and a number: `g1`, `g2`, …
fn generation_number(name: &str) -> Option<u64> {
    let n = name.strip_prefix('g')?;
    n.bytes()
        .all(|b| b.is_ascii_digit())
        .then(|| n.parse().ok())
        .flatten()
}

/// The generation directory `CURRENT` names, if it names one.
fn current_name(root: &Path) -> Option<String> {
    let name = std::fs::read_to_string(root.join(CURRENT)).ok()?;
    let name = name.trim();
    generation_number(name).map(|_| name.to_string())
}

fn generation_dirs(root: &Path) -> Vec<(u64, PathBuf)> {
    std::fs::read_dir(root)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| Some((generation_number(e.file_name().to_str()?)?, e.path())))
        .collect()
}

/// A new, empty directory for the next generation (a leftover of that name is cleared).
fn next_generation_dir(root: &Path) -> Result<PathBuf> {
    let n = generation_dirs(root)
        .iter()
        .map(|(n, _)| *n)
        .max()
        .unwrap_or(0)
        + 1;
    let dir = root.join(format!("g{n}"));
    if dir.exists() {
        std::fs::remove_dir_all(&dir).map_err(dir_error(&dir))?;
    }
    Ok(dir)
}

/// Names `dir` in `CURRENT`, atomically (written beside it, synced, renamed over it).
fn set_current(root: &Path, dir: &Path) -> Result<()> {
    use std::io::Write;
    let name = dir
        .file_name()
        .and_then(|n| n.to_str())
        .ok_or_else(|| SearchError::Dir(format!("{}: not a generation", dir.display())))?;
    let io = dir_error(root);
    let tmp = root.join(format!("{CURRENT}.tmp"));
    let mut f = std::fs::File::create(&tmp).map_err(io)?;
    f.write_all(name.as_bytes()).map_err(io)?;
    f.sync_all().map_err(io)?;
    std::fs::rename(&tmp, root.join(CURRENT)).map_err(io)?;
    if let Ok(d) = std::fs::File::open(root) {
        let _ = d.sync_all();
    }
    Ok(())
}

/// Removes every generation directory but `keep`, and the files of the layout before
/// generations (an index directly in the root), which the database rebuilds.
fn remove_other_generations(root: &Path, keep: &Path) {
    for (_, dir) in generation_dirs(root) {
        if dir != keep {
            if let Err(e) = std::fs::remove_dir_all(&dir) {
                tracing::warn!(error = %e, dir = %dir.display(), "stale index generation not removed");
            }
        }
    }
    for e in std::fs::read_dir(root).into_iter().flatten().flatten() {
        let name = e.file_name();
        let legacy = name != CURRENT && name != LOCK && e.file_type().is_ok_and(|t| t.is_file());
        if legacy {
            let _ = std::fs::remove_file(e.path());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn grams(s: &str) -> Vec<(String, usize)> {
        bigrams(s)
            .into_iter()
            .map(|t| (t.text, t.position))
            .collect()
    }

    #[test]
    fn bare_words_expand_phrases_and_fields_stay() {
        let svc = |w: &str| (w == "セブンペイ").then(|| "7pay".to_string());
        assert_eq!(
            expand_query("セブンペイ", svc),
            "(セブンペイ OR base:\"セブンペイ\"~2 OR service:7pay)"
        );
        assert_eq!(
            expand_query("\"不正 利用\" title:障害 -広告 OR x", svc),
            "\"不正 利用\" title:障害 -広告 OR (x OR base:\"x\"~2)"
        );
        assert_eq!(expand_query("\"unclosed", svc), "\"unclosed");
    }

    #[test]
    fn search_forms_fold_numerals_and_long_vowels() {
        assert_eq!(search_form("二段階"), "2段階");
        assert_eq!(search_form("サーバー"), "サーバ");
        assert_eq!(search_form("ー"), "ー");
        assert_eq!(
            reading_form("申込", Some("モウシコミ")).as_deref(),
            Some("モウシコミ")
        );
        assert_eq!(reading_form("ぺいぺい", None).as_deref(), Some("ペイペイ"));
    }

    #[test]
    fn bigrams_have_real_positions_and_break_at_punctuation() {
        assert_eq!(
            grams("東京都"),
            vec![("東京".into(), 0), ("京都".into(), 1)]
        );
        assert_eq!(
            grams("ＰａｙＰａｙ、京"),
            vec![
                ("pa".into(), 0),
                ("ay".into(), 1),
                ("yp".into(), 2),
                ("pa".into(), 3),
                ("ay".into(), 4),
                ("京".into(), 6)
            ]
        );
    }
}
