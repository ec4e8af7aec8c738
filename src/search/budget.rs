//! The search budgets: a complexity check of the query text before parsing, and a time
//! budget for the parsed query (`Budgeted`), whose scorers stop producing documents once the
//! deadline passes. Tantivy has no cancellation, so the check sits where every collector
//! pulls documents: the scorer.
use super::{Result, SearchError};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tantivy::query::Query;
use tantivy::Term;

/// The complexity budget of a text query, checked before and after parsing, so a
/// pathological query is refused with a message instead of running.
pub const MAX_QUERY_CHARS: usize = 500;
/// Words, phrases and `field:value` terms in one query.
pub const MAX_QUERY_OPERANDS: usize = 32;
/// Nesting of parentheses.
pub const MAX_QUERY_DEPTH: usize = 8;
/// Index terms after expansion into the searched fields (each word becomes surface, base,
/// reading and bigram terms).
pub const MAX_QUERY_TERMS: usize = 4_000;
/// Time budget of a text search unless configured (`limits.search_budget_ms`).
pub const DEFAULT_BUDGET: Duration = Duration::from_secs(3);

/// Refuses queries over the complexity budget (length, operands, nesting) before parsing.
pub fn check_query_shape(q: &str) -> Result<()> {
    let chars = q.chars().count();
    if chars > MAX_QUERY_CHARS {
        return Err(SearchError::TooComplex(format!(
            "q: at most {MAX_QUERY_CHARS} characters (this one has {chars})"
        )));
    }
    let (mut depth, mut deepest, mut operands) = (0usize, 0usize, 0usize);
    let (mut in_phrase, mut in_word) = (false, false);
    for c in q.chars() {
        if in_phrase {
            in_phrase = c != '"';
            continue;
        }
        match c {
            '"' => {
                in_phrase = true;
                in_word = false;
                operands += 1;
            }
            '(' => {
                depth += 1;
                deepest = deepest.max(depth);
                in_word = false;
            }
            ')' => {
                depth = depth.saturating_sub(1);
                in_word = false;
            }
            c if c.is_whitespace() => in_word = false,
            _ => {
                if !in_word {
                    in_word = true;
                    operands += 1;
                }
            }
        }
    }
    if deepest > MAX_QUERY_DEPTH {
        return Err(SearchError::TooComplex(format!(
            "q: parentheses nest at most {MAX_QUERY_DEPTH} deep (this query: {deepest})"
        )));
    }
    if operands > MAX_QUERY_OPERANDS {
        return Err(SearchError::TooComplex(format!(
            "q: at most {MAX_QUERY_OPERANDS} words, phrases and operators (this query has \
             {operands}); narrow it with filters (service, category, dates) instead"
        )));
    }
    Ok(())
}

/// A query with a time budget: its scorers stop (report no further documents) once the
/// deadline passes, and `expired` tells the caller the results are incomplete. Tantivy has no
/// cancellation, so the check sits where every collector pulls documents: the scorer.
#[derive(Debug)]
pub(super) struct Budgeted {
    pub(super) inner: Box<dyn Query>,
    pub(super) deadline: Instant,
    pub(super) expired: Arc<AtomicBool>,
}

impl Clone for Budgeted {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.box_clone(),
            deadline: self.deadline,
            expired: self.expired.clone(),
        }
    }
}

impl Query for Budgeted {
    fn weight(
        &self,
        scoring: tantivy::query::EnableScoring<'_>,
    ) -> tantivy::Result<Box<dyn tantivy::query::Weight>> {
        Ok(Box::new(BudgetedWeight {
            inner: self.inner.weight(scoring)?,
            deadline: self.deadline,
            expired: self.expired.clone(),
        }))
    }

    fn query_terms<'a>(&'a self, visitor: &mut dyn FnMut(&'a Term, bool)) {
        self.inner.query_terms(visitor);
    }
}

struct BudgetedWeight {
    inner: Box<dyn tantivy::query::Weight>,
    deadline: Instant,
    expired: Arc<AtomicBool>,
}

impl BudgetedWeight {
    fn over(&self) -> bool {
        let over = Instant::now() >= self.deadline;
        if over {
            self.expired.store(true, Ordering::Relaxed);
        }
        over
    }
}

impl tantivy::query::Weight for BudgetedWeight {
    fn scorer(
        &self,
        reader: &tantivy::SegmentReader,
        boost: tantivy::Score,
    ) -> tantivy::Result<Box<dyn tantivy::query::Scorer>> {
        if self.over() {
            return Ok(Box::new(tantivy::query::EmptyScorer));
        }
        Ok(Box::new(BudgetedScorer {
            inner: self.inner.scorer(reader, boost)?,
            deadline: self.deadline,
            expired: self.expired.clone(),
            steps: 0,
            stopped: false,
        }))
    }

    fn explain(
        &self,
        reader: &tantivy::SegmentReader,
        doc: tantivy::DocId,
    ) -> tantivy::Result<tantivy::query::Explanation> {
        self.inner.explain(reader, doc)
    }
}

struct BudgetedScorer {
    inner: Box<dyn tantivy::query::Scorer>,
    deadline: Instant,
    expired: Arc<AtomicBool>,
    steps: u32,
    stopped: bool,
}

/// Documents between two looks at the clock (a clock read costs about as much as a few
/// documents; this keeps the check under a percent of the work).
const BUDGET_CHECK_EVERY: u32 = 1024;

impl tantivy::DocSet for BudgetedScorer {
    fn advance(&mut self) -> tantivy::DocId {
        if self.stopped {
            return tantivy::TERMINATED;
        }
        self.steps = self.steps.wrapping_add(1);
        if self.steps.is_multiple_of(BUDGET_CHECK_EVERY) && Instant::now() >= self.deadline {
            self.expired.store(true, Ordering::Relaxed);
            self.stopped = true;
            return tantivy::TERMINATED;
        }
        self.inner.advance()
    }

    fn seek(&mut self, target: tantivy::DocId) -> tantivy::DocId {
        if self.stopped {
            return tantivy::TERMINATED;
        }
        self.inner.seek(target)
    }

    /// Batches go to the inner scorer's own (faster) implementation, with the clock checked
    /// about as often as in `advance`.
    fn fill_buffer(
        &mut self,
        buffer: &mut [tantivy::DocId; tantivy::COLLECT_BLOCK_BUFFER_LEN],
    ) -> usize {
        if self.stopped {
            return 0;
        }
        self.steps = self.steps.wrapping_add(buffer.len() as u32);
        if self.steps % BUDGET_CHECK_EVERY < buffer.len() as u32 && Instant::now() >= self.deadline
        {
            self.expired.store(true, Ordering::Relaxed);
            self.stopped = true;
            return 0;
        }
        self.inner.fill_buffer(buffer)
    }

    fn doc(&self) -> tantivy::DocId {
        if self.stopped {
            tantivy::TERMINATED
        } else {
            self.inner.doc()
        }
    }

    fn size_hint(&self) -> u32 {
        self.inner.size_hint()
    }

    fn cost(&self) -> u64 {
        self.inner.cost()
    }
}

impl tantivy::query::Scorer for BudgetedScorer {
    fn score(&mut self) -> tantivy::Score {
        self.inner.score()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tantivy::query::TermQuery;
    use tantivy::schema::{IndexRecordOption, Schema};
    use tantivy::{Index, IndexWriter};

    /// Past the deadline a budgeted scorer stops within a check interval, by `advance` and by
    /// `fill_buffer`, and says it stopped early.
    #[test]
    fn a_budgeted_scorer_stops_at_the_deadline() {
        use tantivy::schema::TEXT;
        use tantivy::DocSet;
        let mut b = Schema::builder();
        let f = b.add_text_field("t", TEXT);
        let index = Index::create_in_ram(b.build());
        let mut w: IndexWriter = index.writer(15_000_000).unwrap();
        for _ in 0..5_000 {
            w.add_document(tantivy::doc!(f => "a")).unwrap();
        }
        w.commit().unwrap();
        let searcher = index.reader().unwrap().searcher();
        let q = TermQuery::new(Term::from_field_text(f, "a"), IndexRecordOption::Basic);
        let weight = q
            .weight(tantivy::query::EnableScoring::disabled_from_searcher(
                &searcher,
            ))
            .unwrap();
        let budgeted = |deadline: Instant| {
            let expired = Arc::new(AtomicBool::new(false));
            let scorer = BudgetedScorer {
                inner: weight.scorer(searcher.segment_reader(0), 1.0).unwrap(),
                deadline,
                expired: expired.clone(),
                steps: 0,
                stopped: false,
            };
            (scorer, expired)
        };
        let past = Instant::now();
        let (mut s, expired) = budgeted(past);
        let mut n = 1;
        while s.advance() != tantivy::TERMINATED {
            n += 1;
        }
        assert_eq!(n, BUDGET_CHECK_EVERY as usize);
        assert!(expired.load(Ordering::Relaxed));
        assert_eq!(s.doc(), tantivy::TERMINATED);

        let (mut s, expired) = budgeted(past);
        let mut buf = [0; tantivy::COLLECT_BLOCK_BUFFER_LEN];
        let mut filled = 0;
        loop {
            let k = s.fill_buffer(&mut buf);
            filled += k;
            if k < buf.len() {
                break;
            }
        }
        assert!(
            filled < 5_000 && expired.load(Ordering::Relaxed),
            "{filled}"
        );

        // With time left nothing is cut.
        let (mut s, expired) = budgeted(Instant::now() + Duration::from_secs(3600));
        let mut n = 1;
        while s.advance() != tantivy::TERMINATED {
            n += 1;
        }
        assert_eq!(n, 5_000);
        assert!(!expired.load(Ordering::Relaxed));
    }
}
