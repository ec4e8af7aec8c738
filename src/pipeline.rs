//! pipeline: the one place that orders the stages for an item: tokens (once) → services,
//! categories, sentiment → stored with its tokens. A bad item is counted and reported, never
//! fatal to the batch.
use crate::classify::{Classifier, ANALYSIS_VERSION};
use crate::dictionaries::Dictionaries;
use crate::domain::{Analysis, RawItem};
use crate::store::{EncodedTokens, NewItem, Store, StoreError, StoredTokens, UpsertCounts};
use crate::text::{index_tokens, Analyzer, TextError, Token};
use chrono::{DateTime, Utc};
use serde::Serialize;
use sha2::{Digest, Sha256};
use std::sync::Arc;

#[derive(Debug, thiserror::Error)]
pub enum ItemError {
    #[error("url {0:?} is not an absolute http(s) URL")]
    BadUrl(String),
    #[error("{0}")]
    Text(#[from] TextError),
}

/// What a batch did.
#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct IngestReport {
    #[serde(flatten)]
    pub counts: UpsertCounts,
    pub failed: u64,
    pub errors: Vec<String>,
}

/// Cheap to clone (shared analyzer and classifier), so a batch can be analyzed on other
/// threads while the previous one is written.
#[derive(Clone)]
pub struct Pipeline {
    analyzer: Arc<Analyzer>,
    classifier: Arc<Classifier>,
    version: i64,
}

/// A batch analyzed and ready to store, with what was skipped or failed on the way.
pub struct Prepared {
    items: Vec<NewItem>,
    report: IngestReport,
}

/// An item's URL (for error reports) and what its analysis gave.
type Outcome = (String, Result<NewItem, ItemError>);

impl Pipeline {
    pub fn new(dicts: &Dictionaries) -> Result<Self, TextError> {
        let analyzer = Arc::new(Analyzer::new(dicts.userdic())?);
        let classifier = Classifier::new(dicts, &analyzer)?;
        Ok(Self {
            analyzer,
            classifier: Arc::new(classifier),
            version: analysis_version(dicts),
        })
    }

    /// The analysis version items are scored with: the code's rules and the dictionaries'
    /// content together, so editing a lexicon is a new version too.
    pub fn version(&self) -> i64 {
        self.version
    }

    pub fn analyzer(&self) -> Arc<Analyzer> {
        self.analyzer.clone()
    }

    /// Analyzes one free text (the `analyze` command).
    pub fn analyze_text(&self, text: &str) -> Result<Analysis, TextError> {
        let tokens = self.analyzer.tokenize(text)?;
        Ok(self.classifier.classify(&[(text, &tokens)]))
    }

    /// Tokenizes title and body once and classifies them; pure.
    pub fn prepare(&self, raw: RawItem) -> Result<NewItem, ItemError> {
        let raw = without_nul(raw);
        let (url, identity, content_hash) = fingerprint(&raw)?;
        let title_tokens = self.analyzer.tokenize(&raw.title)?;
        let body_tokens = self.analyzer.tokenize(&raw.body)?;
        let analysis = self
            .classifier
            .classify(&[(&raw.title, &title_tokens), (&raw.body, &body_tokens)]);
        // Near-duplicate grouping is for syndicated articles; short posts are separate voices.
        let words: Vec<&str> = title_tokens
            .iter()
            .chain(&body_tokens)
            .filter(|t| !t.is_symbol())
            .map(|t| t.text.as_str())
            .collect();
        let minhash = (raw.kind == crate::domain::ItemKind::News)
            .then(|| minhash(&words))
            .flatten();
        let tokens = EncodedTokens::new(
            StoredTokens {
                title: compact(&title_tokens),
                body: compact(&body_tokens),
            },
            &raw.title,
            &raw.body,
        );
        Ok(NewItem {
            identity,
            source: raw.source,
            guid: raw.guid,
            url,
            title: raw.title,
            body: raw.body,
            author: raw.author,
            kind: raw.kind,
            bookmarks: raw.bookmarks,
            tags: raw.tags.clone(),
            published_at: raw.published_at,
            content_hash,
            analysis,
            tokens,
            analysis_version: self.version,
            minhash,
            imported: false,
        })
    }

    /// Re-analyzes stored items scored with another version (or, with `since`, every item
    /// published since then) in batches; the index follows through the change sequence.
    pub async fn reanalyze(
        &self,
        store: &Store,
        since: Option<i64>,
        now: DateTime<Utc>,
    ) -> Result<IngestReport, StoreError> {
        let mut report = IngestReport::default();
        let mut after = 0;
        let last_id = store.max_item_id().await?;
        loop {
            let batch = store
                .items_to_reanalyze(self.version, since, after, 500)
                .await?;
            let Some(&(last, _)) = batch.last() else {
                break;
            };
            after = last;
            let mut ready = Vec::with_capacity(batch.len());
            for (id, raw) in batch {
                match self.prepare(raw) {
                    Ok(item) => ready.push(item),
                    Err(e) => {
                        report.failed += 1;
                        crate::metrics::global().stage_error(crate::metrics::Stage::Analyze, 1);
                        report.errors.push(format!("item {id}: {e}"));
                    }
                }
            }
            let counts = store.rescore_items(&ready, now).await.inspect_err(|_| {
                crate::metrics::global().stage_error(crate::metrics::Stage::Store, 1)
            })?;
            crate::metrics::global().items_ingested(counts.new, counts.updated);
            report.counts += counts;
            if after >= last_id {
                break;
            }
        }
        Ok(report)
    }

    /// Analyzes and stores a batch in one transaction; returns only after the commit.
    pub async fn ingest(
        &self,
        store: &Store,
        raws: Vec<RawItem>,
        now: DateTime<Utc>,
    ) -> Result<IngestReport, StoreError> {
        self.ingest_as(store, raws, now, false).await
    }

    /// Like `ingest`, for history loaded after the fact: each item counts as visible from its
    /// publication time, so detection replays see it when it appeared, not when imported.
    pub async fn import(
        &self,
        store: &Store,
        raws: Vec<RawItem>,
        now: DateTime<Utc>,
    ) -> Result<IngestReport, StoreError> {
        self.ingest_as(store, raws, now, true).await
    }

    /// Prepares a batch on every core (analysis is pure and the analyzer is shared), keeping
    /// the batch's order; each result with its URL.
    fn prepare_all(&self, raws: Vec<RawItem>) -> Vec<Outcome> {
        let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
        if threads < 2 || raws.len() < 32 {
            return raws
                .into_iter()
                .map(|r| (r.url.clone(), self.prepare(r)))
                .collect();
        }
        // Items are handed out one at a time (articles and posts differ a hundredfold in
        // length, so fixed halves left a core idle at the end of every batch); results are put
        // back in input order, which the write path relies on for repeated identities. The
        // lock is held only to take the next item, so a poisoned one still hands out items.
        let queue = std::sync::Mutex::new(raws.into_iter().enumerate());
        let mut done: Vec<(usize, Outcome)> = std::thread::scope(|scope| {
            let handles: Vec<_> = (0..threads)
                .map(|_| {
                    scope.spawn(|| {
                        let mut out = Vec::new();
                        loop {
                            let next = queue
                                .lock()
                                .unwrap_or_else(std::sync::PoisonError::into_inner)
                                .next();
                            let Some((i, r)) = next else { break };
                            out.push((i, (r.url.clone(), self.prepare(r))));
                        }
                        out
                    })
                })
                .collect();
            handles
                .into_iter()
                .flat_map(|h| {
                    h.join()
                        .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
                })
                .collect()
        });
        done.sort_unstable_by_key(|(i, _)| *i);
        done.into_iter().map(|(_, r)| r).collect()
    }

    async fn ingest_as(
        &self,
        store: &Store,
        raws: Vec<RawItem>,
        now: DateTime<Utc>,
        imported: bool,
    ) -> Result<IngestReport, StoreError> {
        let prepared = self.prepare_batch(store, raws, imported).await?;
        self.store_batch(store, prepared, now).await
    }

    /// Analyzes a batch on every core, off the async threads, leaving out items stored before
    /// with the same content and analysis version (a feed repeats most of its items on every
    /// fetch). `imported`: history loaded after the fact (see `import`).
    pub async fn prepare_batch(
        &self,
        store: &Store,
        raws: Vec<RawItem>,
        imported: bool,
    ) -> Result<Prepared, StoreError> {
        let mut report = IngestReport::default();
        let raws: Vec<RawItem> = raws.into_iter().map(without_nul).collect();
        let prints: Vec<Option<(String, String)>> = raws
            .iter()
            .map(|r| fingerprint(r).ok().map(|(_, id, hash)| (id, hash)))
            .collect();
        let ids: Vec<&str> = prints.iter().flatten().map(|(id, _)| id.as_str()).collect();
        let known = store.stored_versions(&ids).await?;
        let mut todo = Vec::with_capacity(raws.len());
        for (raw, print) in raws.into_iter().zip(prints) {
            if let Some((id, hash)) = &print {
                if known.get(id) == Some(&(hash.clone(), self.version)) {
                    report.counts.unchanged += 1;
                    continue;
                }
            }
            todo.push(raw);
        }
        let pipeline = self.clone();
        let prepared = tokio::task::spawn_blocking(move || pipeline.prepare_all(todo))
            .await
            .map_err(|e| StoreError::Invalid(format!("analysis task failed: {e}")))?;
        let mut items = Vec::with_capacity(prepared.len());
        for (url, prepared) in prepared {
            match prepared {
                Ok(item) => items.push(NewItem { imported, ..item }),
                Err(e) => {
                    report.failed += 1;
                    report.errors.push(format!("{url}: {e}"));
                }
            }
        }
        crate::metrics::global().stage_error(crate::metrics::Stage::Analyze, report.failed);
        Ok(Prepared { items, report })
    }

    /// Stores a prepared batch in one transaction; returns only after the commit.
    pub async fn store_batch(
        &self,
        store: &Store,
        prepared: Prepared,
        now: DateTime<Utc>,
    ) -> Result<IngestReport, StoreError> {
        let Prepared { items, mut report } = prepared;
        let m = crate::metrics::global();
        report.counts += store
            .upsert_items(&items, now)
            .await
            .inspect_err(|_| m.stage_error(crate::metrics::Stage::Store, 1))?;
        m.items_ingested(report.counts.new, report.counts.updated);
        Ok(report)
    }
}

fn compact(tokens: &[Token]) -> Vec<crate::store::IndexToken> {
    index_tokens(tokens)
        .map(|t| crate::store::IndexToken {
            text: t.text.clone(),
            start: t.start,
            end: t.end,
            position: t.position,
            base: (t.base != t.text).then(|| t.base.clone()),
            reading: (!t.reading.is_empty() && t.reading != t.text).then(|| t.reading.clone()),
        })
        .collect()
}

/// NUL characters dropped from the text an item is stored with: PostgreSQL refuses them in
/// text columns (one would fail its whole batch), and nothing shows them.
fn without_nul(mut raw: RawItem) -> RawItem {
    for s in [&mut raw.title, &mut raw.body] {
        if s.contains('\0') {
            s.retain(|c| c != '\0');
        }
    }
    if let Some(a) = raw.author.as_mut().filter(|a| a.contains('\0')) {
        a.retain(|c| c != '\0');
    }
    raw
}

/// A raw item's canonical URL, identity and content hash: cheap (no analysis), so a crawl
/// can skip what it already stored.
pub fn fingerprint(raw: &RawItem) -> Result<(String, String, String), ItemError> {
    let url = canonical_url(&raw.url).ok_or_else(|| ItemError::BadUrl(raw.url.clone()))?;
    let identity = identity(raw, &url);
    let mut h = Sha256::new();
    for part in [
        &raw.title,
        &raw.body,
        &url,
        raw.author.as_deref().unwrap_or(""),
    ] {
        h.update(part.as_bytes());
        h.update([0]);
    }
    // A changed bookmark count is an update too: the stored count stays current.
    h.update(raw.bookmarks.unwrap_or(-1).to_le_bytes());
    h.update(raw.tags.join("\n").as_bytes());
    h.update(
        raw.published_at
            .map(|t| t.timestamp_millis())
            .unwrap_or(0)
            .to_le_bytes(),
    );
    let content_hash = format!("{:x}", h.finalize())[..32].to_string();
    Ok((url, identity, content_hash))
}

/// Number of MinHash values per signature and the LSH banding (8 bands of 2 rows).
pub const MINHASH_LEN: usize = 16;
pub const MINHASH_BANDS: usize = 8;

fn fnv1a(seed: u64, parts: &[&str]) -> u64 {
    let mut h: u64 = 0xcbf29ce484222325 ^ seed.wrapping_mul(0x9E3779B97F4A7C15);
    for (i, p) in parts.iter().enumerate() {
        if i > 0 {
            h ^= 0xff;
            h = h.wrapping_mul(0x100000001b3);
        }
        for b in p.bytes() {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x100000001b3);
        }
    }
    // final avalanche so seeds give independent-looking orders
    h ^= h >> 33;
    h = h.wrapping_mul(0xff51afd7ed558ccd);
    h ^ (h >> 33)
}

/// MinHash signature over token-bigram shingles: the share of equal values between two
/// signatures estimates the Jaccard similarity of their shingle sets. None for texts too
/// short to judge (fewer than 20 shingles).
pub fn minhash(tokens: &[&str]) -> Option<[u64; MINHASH_LEN]> {
    if tokens.len() < 21 {
        return None;
    }
    let mut sig = [u64::MAX; MINHASH_LEN];
    for w in tokens.windows(2) {
        for (seed, slot) in sig.iter_mut().enumerate() {
            *slot = (*slot).min(fnv1a(seed as u64, w));
        }
    }
    Some(sig)
}

/// Estimated Jaccard similarity of two signatures.
pub fn minhash_similarity(a: &[u64], b: &[u64]) -> f64 {
    let same = a.iter().zip(b).filter(|(x, y)| x == y).count();
    same as f64 / a.len().max(1) as f64
}

/// LSH band keys: each band hashes two consecutive signature values.
pub fn minhash_bands(sig: &[u64; MINHASH_LEN]) -> [i64; MINHASH_BANDS] {
    std::array::from_fn(|b| {
        let (x, y) = (sig[2 * b], sig[2 * b + 1]);
        (x.rotate_left(17) ^ y.wrapping_mul(0x9E3779B97F4A7C15)) as i64
    })
}

/// `ANALYSIS_VERSION` × 10⁶ plus a fingerprint of the dictionaries.
pub fn analysis_version(dicts: &Dictionaries) -> i64 {
    let mut h = Sha256::new();
    h.update(dicts.userdic().as_bytes());
    for s in &dicts.services {
        h.update(format!("{s:?}").as_bytes());
    }
    for c in &dicts.categories {
        h.update(format!("{c:?}").as_bytes());
    }
    for (term, score) in &dicts.sentiment {
        h.update(format!("{term}\t{score}\n").as_bytes());
    }
    let d = h.finalize();
    let fingerprint = u32::from_le_bytes([d[0], d[1], d[2], d[3]]) as i64 % 1_000_000;
    ANALYSIS_VERSION * 1_000_000 + fingerprint
}

/// An item's identity: (source, guid) when the source gave a guid, else its canonical URL.
pub fn identity(raw: &RawItem, canonical: &str) -> String {
    match &raw.guid {
        Some(g) => format!("g:{}:{}", raw.source, g),
        None => format!("u:{canonical}"),
    }
}

/// Hex SHA-256 of some bytes, shortened to 128 bits (content and body hashes).
pub fn hash_hex(bytes: &[u8]) -> String {
    let digest = Sha256::digest(bytes);
    format!("{digest:x}")[..32].to_string()
}

/// The URL an item is known by: fragment and utm_* tracking parameters dropped.
pub fn canonical_url(raw: &str) -> Option<String> {
    let mut url = url::Url::parse(raw.trim()).ok()?;
    if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
        return None;
    }
    url.set_fragment(None);
    let kept: Vec<(String, String)> = url
        .query_pairs()
        .filter(|(k, _)| !k.starts_with("utm_"))
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect();
    if kept.is_empty() {
        url.set_query(None);
    } else {
        url.query_pairs_mut().clear().extend_pairs(kept);
    }
    Some(url.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nul_characters_never_reach_the_store() {
        let pipeline = Pipeline::new(&Dictionaries::builtin()).unwrap();
        let raw = RawItem {
            source: "t".into(),
            guid: None,
            url: "https://example.jp/nul".into(),
            title: "\0kz\0決済".into(),
            body: "障害\0発生".into(),
            published_at: None,
            author: Some("a\0b".into()),
            kind: crate::domain::ItemKind::Social,
            bookmarks: None,
            tags: Vec::new(),
        };
        let item = pipeline.prepare(raw).unwrap();
        assert_eq!(
            (
                item.title.as_str(),
                item.body.as_str(),
                item.author.as_deref()
            ),
            ("kz決済", "障害発生", Some("ab"))
        );
    }

    #[test]
    fn minhash_is_close_for_near_duplicates_and_far_otherwise() {
        let a: Vec<String> = (0..40).map(|i| format!("w{i}")).collect();
        let mut b = a.clone();
        b[20] = "changed".into();
        let c: Vec<String> = (0..40).map(|i| format!("other{i}")).collect();
        let sig =
            |v: &[String]| minhash(&v.iter().map(String::as_str).collect::<Vec<_>>()).unwrap();
        assert!(minhash_similarity(&sig(&a), &sig(&b)) >= 0.6);
        assert!(minhash_similarity(&sig(&a), &sig(&c)) < 0.2);
        let (ba, bb) = (minhash_bands(&sig(&a)), minhash_bands(&sig(&b)));
        assert!(
            ba.iter().zip(&bb).any(|(x, y)| x == y),
            "near duplicates share a band"
        );
        assert_eq!(minhash(&["too", "short"]), None);
    }

    #[test]
    fn canonical_urls_drop_tracking_and_fragments() {
        let rows = [
            (
                "https://Example.jp/a?utm_source=x&id=3#top",
                Some("https://example.jp/a?id=3"),
            ),
            (
                "https://example.jp/a?utm_medium=rss",
                Some("https://example.jp/a"),
            ),
            ("ftp://example.jp/a", None),
            ("not a url", None),
        ];
        for (raw, want) in rows {
            assert_eq!(canonical_url(raw).as_deref(), want, "{raw}");
        }
    }
}
