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
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
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
        _ if text
            .chars()
            .all(|c| matches!(c, 'ぁ'..='ゖ' | 'ァ'..='ヺ' | 'ー')) =>
        {
            text.chars()
                .map(|c| {
                    if matches!(c, 'ぁ'..='ゖ') {
                        char::from_u32(c as u32 + 0x60).unwrap_or(c)
                    } else {
                        c
                    }
                })
                .collect()
        }
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

#[derive(Clone)]
pub struct SearchIndex {
    index: Index,
    reader: IndexReader,
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
    /// Opens or creates the index in `dir`, registering the tokenizers.
    pub fn open(
        dir: &Path,
        analyzer: Arc<Analyzer>,
        aliases: std::collections::HashMap<String, String>,
    ) -> Result<Self> {
        let (schema, fields) = schema();
        let open = |dir: &Path| -> Result<Index> {
            std::fs::create_dir_all(dir)
                .map_err(|e| SearchError::Dir(format!("{}: {e}", dir.display())))?;
            let mmap = tantivy::directory::MmapDirectory::open(dir)
                .map_err(|e| SearchError::Dir(format!("{}: {e}", dir.display())))?;
            Ok(Index::open_or_create(mmap, schema.clone())?)
        };
        let index = match open(dir) {
            Ok(index) => index,
            Err(SearchError::Index(e)) if e.to_string().contains("schema") => {
                // An index built with another schema is set aside; the database rebuilds it.
                let aside = dir.with_extension(format!("old-{}", std::process::id()));
                tracing::warn!(error = %e, moved_to = %aside.display(), "index schema changed; rebuilding");
                std::fs::rename(dir, &aside)
                    .map_err(|e| SearchError::Dir(format!("{}: {e}", dir.display())))?;
                open(dir)?
            }
            Err(e) => return Err(e),
        };
        let s_analyzer = analyzer.clone();
        index
            .tokenizers()
            .register(JA, JaTokenizer(analyzer.clone(), Form::Surface));
        index
            .tokenizers()
            .register(JA_BASE, JaTokenizer(analyzer.clone(), Form::Base));
        index
            .tokenizers()
            .register(JA_READING, JaTokenizer(analyzer, Form::Reading));
        index.tokenizers().register(BIGRAM, BigramTokenizer);
        let reader = index
            .reader_builder()
            .reload_policy(ReloadPolicy::Manual)
            .try_into()?;
        let s = Self {
            index,
            reader,
            fields,
            applied: Arc::new(AtomicI64::new(0)),
            aliases: Arc::new(aliases),
            analyzer: s_analyzer,
            budget_ms: Arc::new(AtomicU64::new(DEFAULT_BUDGET.as_millis() as u64)),
        };
        let w = s.committed_watermark()?;
        s.applied.store(w.hwm, Ordering::SeqCst);
        Ok(s)
    }

    pub fn committed_watermark(&self) -> Result<Watermark> {
        let metas = self.index.load_metas()?;
        Ok(metas
            .payload
            .and_then(|p| serde_json::from_str(&p).ok())
            .unwrap_or_default())
    }

    /// The change sequence the searchable index reflects.
    pub fn applied_seq(&self) -> i64 {
        self.applied.load(Ordering::SeqCst)
    }

    pub fn writer(&self) -> Result<IndexWriter> {
        Ok(self.index.writer(50_000_000)?)
    }

    fn document(&self, item: &StoredItem) -> TantivyDocument {
        let f = self.fields;
        let pre = |text: &str, toks: &[crate::store::IndexToken], form: Form| PreTokenizedString {
            text: text.to_string(),
            tokens: toks
                .iter()
                .map(|t| TvToken {
                    offset_from: t.start,
                    offset_to: t.end,
                    position: t.position,
                    text: form_of(t, form),
                    position_length: 1,
                })
                .collect(),
        };
        let mut doc = TantivyDocument::default();
        doc.add_u64(f.id, item.id as u64);
        doc.add_pre_tokenized_text(f.title, pre(&item.title, &item.tokens.title, Form::Surface));
        doc.add_pre_tokenized_text(f.body, pre(&item.body, &item.tokens.body, Form::Surface));
        // Title and body share the base and reading fields; a position gap keeps phrases
        // from running across the two.
        let gap = item
            .tokens
            .title
            .iter()
            .map(|t| t.position + 1)
            .max()
            .unwrap_or(0)
            + 10;
        let shifted: Vec<crate::store::IndexToken> = item
            .tokens
            .title
            .iter()
            .cloned()
            .chain(item.tokens.body.iter().cloned().map(|mut t| {
                t.position += gap;
                t
            }))
            .collect();
        let both = format!("{}\n{}", item.title, item.body);
        let shift_offsets = |mut toks: Vec<crate::store::IndexToken>| {
            let title_len = item.title.len() + 1;
            let n_title = item.tokens.title.len();
            for t in toks.iter_mut().skip(n_title) {
                t.start += title_len;
                t.end += title_len;
            }
            toks
        };
        let shifted = shift_offsets(shifted);
        doc.add_pre_tokenized_text(f.base, pre(&both, &shifted, Form::Base));
        doc.add_pre_tokenized_text(f.reading, pre(&both, &shifted, Form::Reading));
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

    /// Applies changes after the committed watermark, or rebuilds everything when the database
    /// asks for a new generation. Commits the documents and the new watermark together.
    /// Returns the number of changes applied. `follower` carries, between calls, the sequence
    /// numbers still awaited (PostgreSQL commits them out of order; see `ChangeFollower`).
    pub async fn catch_up(
        &self,
        store: &Store,
        writer: &Mutex<IndexWriter>,
        follower: &mut Option<ChangeFollower>,
    ) -> Result<usize> {
        let mut mark = self.committed_watermark()?;
        let generation: i64 = store
            .meta("reindex_generation")
            .await?
            .and_then(|g| g.parse().ok())
            .unwrap_or(0);
        let mut applied = 0;
        if generation != mark.generation {
            let upto = store.last_change().await?;
            self.with_writer(writer, |w| {
                w.delete_all_documents()?;
                Ok(())
            })?;
            let mut after = 0;
            loop {
                let ids = store.item_ids_after(after, 500).await?;
                let Some(&last) = ids.last() else { break };
                after = last;
                let items = store.items(&ids).await?;
                applied += items.len();
                self.with_writer(writer, |w| {
                    for item in &items {
                        w.add_document(self.document(item))?;
                    }
                    Ok(())
                })?;
            }
            mark = Watermark {
                hwm: upto,
                generation,
            };
            self.commit(writer, mark)?;
        }
        // A follower ahead of the committed mark lost a failed batch: start again from the mark.
        let follower = match follower {
            Some(f) if f.hwm() == mark.hwm => f,
            _ => follower.insert(ChangeFollower::new(mark.hwm, store.dialect())),
        };
        loop {
            let changes = follower.next(store, 1000).await?;
            if changes.is_empty() {
                break;
            }
            let mut ids: Vec<i64> = changes.iter().map(|(_, id)| *id).collect();
            ids.sort_unstable();
            ids.dedup();
            let items = store.items(&ids).await?;
            self.with_writer(writer, |w| {
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
            mark.hwm = follower.hwm();
            self.commit(writer, mark)?;
        }
        Ok(applied)
    }

    fn with_writer<T>(
        &self,
        writer: &Mutex<IndexWriter>,
        f: impl FnOnce(&mut IndexWriter) -> tantivy::Result<T>,
    ) -> Result<T> {
        let mut w = writer.lock().unwrap_or_else(|e| e.into_inner());
        Ok(f(&mut w)?)
    }

    fn commit(&self, writer: &Mutex<IndexWriter>, mark: Watermark) -> Result<()> {
        let payload = serde_json::to_string(&mark).unwrap_or_default();
        self.with_writer(writer, |w| {
            let mut prepared = w.prepare_commit()?;
            prepared.set_payload(&payload);
            prepared.commit()?;
            Ok(())
        })?;
        self.reader.reload()?;
        self.applied.store(mark.hwm, Ordering::SeqCst);
        Ok(())
    }

    /// Sets the time budget of each text search (`limits.search_budget_ms`).
    pub fn set_time_budget(&self, budget: Duration) {
        self.budget_ms.store(
            budget.as_millis().min(u64::MAX as u128) as u64,
            Ordering::Relaxed,
        );
    }

    fn build_query(&self, req: &SearchRequest) -> Result<Built> {
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
                &self.index,
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
                let snippet = generator.snippet(&it.body);
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
        let built = self.build_query(req)?;
        let query: &dyn Query = &*built.query;
        let searcher = self.reader.searcher();
        let limit = req.limit.max(1);
        let (total, addrs) = (|| -> Result<_> {
            let total = searcher.search(query, &Count).map_err(run_error)?;
            let addrs: Vec<tantivy::DocAddress> = match req.sort {
                SortBy::Relevance => searcher
                    .search(
                        query,
                        &TopDocs::with_limit(limit)
                            .and_offset(req.offset)
                            .order_by_score(),
                    )
                    .map_err(run_error)?
                    .into_iter()
                    .map(|(_, a)| a)
                    .collect(),
                SortBy::Newest => searcher
                    .search(
                        query,
                        &TopDocs::with_limit(limit)
                            .and_offset(req.offset)
                            .order_by_fast_field::<TvDate>("published", Order::Desc),
                    )
                    .map_err(run_error)?
                    .into_iter()
                    .map(|(_, a)| a)
                    .collect(),
            };
            Ok((total, addrs))
        })()?;
        let mut ids = Vec::with_capacity(addrs.len());
        for a in addrs {
            let doc: TantivyDocument = searcher.doc(a)?;
            if let Some(id) = doc.get_first(self.fields.id).and_then(|v| v.as_u64()) {
                ids.push(id as i64);
            }
        }
        let facets = if req.with_facets {
            Some(self.facets(&searcher, query)?)
        } else {
            None
        };
        built.check()?;
        let generator =
            tantivy::snippet::SnippetGenerator::create(&searcher, query, self.fields.body)?;
        Ok((total, ids, facets, generator))
    }

    /// Counts of matching items per facet value (terms aggregations on the fast fields).
    fn facets(
        &self,
        searcher: &tantivy::Searcher,
        query: &dyn Query,
    ) -> Result<std::collections::BTreeMap<String, std::collections::BTreeMap<String, u64>>> {
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
        let collector = AggregationCollector::from_aggs(
            aggs,
            AggContextParams::new(
                AggregationLimitsGuard::default(),
                self.index.tokenizers().clone(),
            ),
        );
        let result = searcher.search(query, &collector).map_err(run_error)?;
        let json = serde_json::to_value(&result).map_err(|e| SearchError::Query(e.to_string()))?;
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
        let built = self.build_query(req)?;
        let searcher = self.reader.searcher();
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
