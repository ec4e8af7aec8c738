//! classify: pure functions from tokens to services, incident categories and sentiment.
//! Nothing here reads the clock, the network or the database.
//!
//! Matching works on a sentence's *compact* form — the normalized texts of its non-symbol tokens
//! concatenated — and a match counts only when it starts and ends on token boundaries. That one
//! rule gives word-boundary awareness in Latin and Japanese alike: "pay" in 「payで払う」 is not
//! PayPay, 「LINEで送った」 is not LINE Pay, and 障害 does not fire inside 障害者.
use crate::dictionaries::Dictionaries;
use crate::domain::{Analysis, CategoryHit, Sentiment, SentimentLabel, TargetSentiment};
use crate::text::{is_kana, to_katakana, Analyzer, TextError, Token};
use std::collections::{BTreeSet, HashMap, HashSet};

/// Bump when lexicons, aliases or rules change meaning, so stored items can be rescored.
pub const ANALYSIS_VERSION: i64 = 3;

struct ServiceMatcher {
    slug: String,
    aliases: Vec<String>,
    exclusions: Vec<String>,
}

struct CategoryMatcher {
    slug: String,
    /// (normalized compact form, term as written in the lexicon)
    terms: Vec<(String, String)>,
}

pub struct Classifier {
    services: Vec<ServiceMatcher>,
    categories: Vec<CategoryMatcher>,
    /// single-token lexicon terms by normalized form
    polarity: HashMap<String, f64>,
    /// lexicon terms that span several tokens, matched on the compact form
    polarity_phrases: Vec<(String, f64)>,
    /// single-token terms by katakana reading, for words written in kana (こわい → 怖い)
    by_reading: HashMap<String, f64>,
    /// Every multi-character needle above (aliases, exclusions, category terms, phrases) and
    /// one automaton that finds them all in a sentence at once.
    needles: Vec<String>,
    automaton: aho_corasick::AhoCorasick,
    /// Needle → its places in `polarity_phrases`, and → the (category, term as written) it
    /// is: a sentence visits only the needles it contains, not every phrase and term.
    phrase_ranks: HashMap<String, Vec<usize>>,
    category_terms: HashMap<String, Vec<(usize, String)>>,
}

/// One sentence of analyzed text, in compact form with its token boundaries.
struct Sentence<'a> {
    tokens: Vec<&'a Token>,
    compact: String,
    /// byte offset in `compact` where each token starts; the last entry is `compact.len()`
    bounds: Vec<usize>,
    /// The sentence's original text, symbols and emoji included.
    raw: String,
    /// Ends with a question mark or a question particle.
    question: bool,
    /// Per token: whether a comma stood before it (a clause may start there).
    after_comma: Vec<bool>,
    /// Every occurrence of every dictionary needle in `compact` (byte ranges), found in one
    /// Aho–Corasick pass.
    matches: HashMap<&'a str, Vec<(usize, usize)>>,
}

impl<'a> Sentence<'a> {
    /// Token-aligned occurrences of `needle`: (first token index, one past the last).
    fn find_aligned(&self, needle: &str) -> Vec<(usize, usize)> {
        self.ranges(needle)
            .iter()
            .filter_map(|&(at, end)| {
                let first = self.bounds.binary_search(&at).ok()?;
                let last = self.bounds.binary_search(&end).ok()?;
                Some((first, last))
            })
            .collect()
    }

    /// Byte ranges of `needle` in the compact form, aligned or not.
    fn ranges(&self, needle: &str) -> &[(usize, usize)] {
        self.matches.get(needle).map_or(&[], Vec::as_slice)
    }

    fn annotate(&mut self, ac: &aho_corasick::AhoCorasick, needles: &'a [String]) {
        for m in ac.find_overlapping_iter(&self.compact) {
            if let Some(n) = needles.get(m.pattern().as_usize()) {
                self.matches
                    .entry(n.as_str())
                    .or_default()
                    .push((m.start(), m.end()));
            }
        }
    }
}

fn is_sentence_end(t: &Token) -> bool {
    matches!(t.text.as_str(), "。" | "." | "!" | "?" | "…" | "‼" | "⁉")
}

/// Splits the parts (title, body …) into sentences at sentence-final punctuation and line breaks.
fn sentences<'a>(parts: &[(&str, &'a [Token])]) -> Vec<Sentence<'a>> {
    let mut out = Vec::new();
    for (text, tokens) in parts {
        let mut current: Vec<&Token> = Vec::new();
        let mut start: Option<usize> = None;
        let mut prev_end: Option<usize> = None;
        let mut flush = |current: &mut Vec<&'a Token>, start: &mut Option<usize>, end: usize| {
            if !current.is_empty() {
                let raw = start
                    .and_then(|s| text.get(s..end))
                    .unwrap_or("")
                    .to_string();
                // Which tokens follow a comma (the symbols themselves are not kept).
                let after_comma: Vec<bool> = current
                    .iter()
                    .enumerate()
                    .map(|(i, t)| {
                        i > 0
                            && text
                                .get(current[i - 1].end..t.start)
                                .is_some_and(|gap| gap.contains(['、', ',', '，']))
                    })
                    .collect();
                out.push(build_sentence(std::mem::take(current), raw, after_comma));
            }
            current.clear();
            *start = None;
        };
        for t in tokens.iter() {
            let gap_has_newline = prev_end
                .and_then(|p| text.get(p..t.start))
                .is_some_and(|gap| gap.contains('\n'));
            if gap_has_newline {
                flush(&mut current, &mut start, prev_end.unwrap_or(t.start));
            }
            start.get_or_insert(t.start);
            prev_end = Some(t.end);
            if is_sentence_end(t) {
                flush(&mut current, &mut start, t.end);
                continue;
            }
            if !t.is_symbol() {
                current.push(t);
            }
        }
        flush(&mut current, &mut start, text.len());
    }
    out
}

fn build_sentence(tokens: Vec<&Token>, raw: String, after_comma: Vec<bool>) -> Sentence<'_> {
    let mut compact = String::new();
    let mut bounds = Vec::with_capacity(tokens.len() + 1);
    for t in &tokens {
        bounds.push(compact.len());
        compact.push_str(&t.text);
    }
    bounds.push(compact.len());
    let trimmed = raw.trim_end_matches(|c: char| {
        c.is_whitespace() || matches!(c, '。' | '.' | '…' | '!' | '！' | 'w' | 'ｗ' | '笑' | '草')
    });
    let question = trimmed.ends_with(['?', '？', '⁉'])
        || tokens.last().is_some_and(|t| {
            matches!(t.text.as_str(), "か" | "かな" | "かね" | "かしら")
                && t.pos.starts_with("助詞")
        });
    Sentence {
        tokens,
        compact,
        bounds,
        raw,
        question,
        matches: HashMap::new(),
        after_comma,
    }
}

/// A polar word found in a sentence, after the rules.
struct PolarHit {
    /// Index of the hit's last token in the sentence.
    token: usize,
    score: f64,
    evidence: String,
}

/// Words that strengthen the polar word right after them.
const INTENSIFIERS: &[&str] = &[
    "すごい",
    "すごく",
    "すげー",
    "すっごく",
    "めっちゃ",
    "めちゃ",
    "めちゃくちゃ",
    "超",
    "マジ",
    "まじ",
    "本当に",
    "ほんと",
    "ほんとに",
    "完全",
    "完全に",
    "とても",
    "非常",
    "非常に",
    "かなり",
    "大変",
    "極めて",
    "相当",
    "激しく",
    "鬼",
    "最も",
    "一番",
    "本当",
];
/// Words that soften the polar word right after them.
const SOFTENERS: &[&str] = &[
    "ちょっと",
    "少し",
    "やや",
    "若干",
    "多少",
    "少々",
    "ちょい",
    "微妙に",
    "いまいち",
];
/// Conjunctions after which the later clause carries the stance (〜けど, 〜が, 〜のに …).
const CONTRAST_PARTICLES: &[&str] = &[
    "けど",
    "けれど",
    "けれども",
    "のに",
    "ものの",
    "が",
    "だけど",
    "ながら",
];
/// Clause-initial contrastive conjunctions.
const CONTRAST_CONJUNCTIONS: &[&str] = &[
    "しかし",
    "でも",
    "だが",
    "ただ",
    "とはいえ",
    "だけど",
    "けど",
    "ところが",
    "一方",
];
/// Safeguards whose absence is itself bad news (「二段階認証もない」).
const SAFEGUARDS: &[&str] = &[
    "二段階認証",
    "2段階認証",
    "二要素認証",
    "本人認証",
    "3dセキュア",
    "セキュリティ",
    "対策",
    "補償",
    "説明",
    "認証",
    "連絡",
    "対応",
    "サポート",
];
/// Emoji and kaomoji with a clear stance, matched in the raw sentence.
const POSITIVE_MARKS: &[&str] = &[
    "😊",
    "😄",
    "😁",
    "😆",
    "😍",
    "🥰",
    "😋",
    "👍",
    "✨",
    "🎉",
    "💕",
    "❤",
    "♡",
    "☺",
    "😀",
    "🤗",
    "🙌",
    "(^^)",
    "(^_^)",
    "^^",
    "(^o^)",
    "(*^^*)",
    "(≧▽≦)",
    "ヽ(^o^)ノ",
    "(^ω^)",
    "(*´ω`*)",
    "(^▽^)",
];
const NEGATIVE_MARKS: &[&str] = &[
    "😡",
    "😠",
    "🤬",
    "😢",
    "😭",
    "😱",
    "😨",
    "😰",
    "💢",
    "👎",
    "😞",
    "😔",
    "😩",
    "😫",
    "🥲",
    "😤",
    "orz",
    "(T_T)",
    "(;_;)",
    "(´；ω；`)",
    "(TT)",
    "T_T",
];
/// Weight of a clause that a later contrast overrides.
const BEFORE_CONTRAST: f64 = 0.35;
/// Weight of polar words inside a question that is not rhetorical.
const IN_QUESTION: f64 = 0.3;
/// Verbs and nouns of occurring or being found: a harm word they negate did not happen.
const OCCURRENCE: &[&str] = &[
    "出る",
    "起きる",
    "起こる",
    "発生",
    "見つかる",
    "確認",
    "報告",
    "生じる",
    "及ぶ",
];
/// Score of a word of degree run past its limit (「長すぎ」「待たされすぎ」) with no
/// evaluative word of its own.
const TOO_MUCH: f64 = -0.4;
/// Stems whose excess is praise (「安すぎ」「可愛すぎ」), not a complaint.
const GOOD_EXCESS: &[&str] = &[
    "安",
    "可愛",
    "かわい",
    "美味",
    "うま",
    "面白",
    "楽し",
    "嬉し",
    "優し",
    "良",
    "尊",
    "強",
];
/// Score of a negated verb in a sentence without evaluative words.
const VERB_NEGATION: f64 = -0.35;
/// Extra weight of a sentence's last polar word when there are several.
const END_FOCUS: f64 = 1.4;

fn is_negator(t: &Token) -> bool {
    (matches!(t.base.as_str(), "ない" | "ぬ" | "ず" | "ん")
        && (t.pos.starts_with("助動詞") || t.pos.starts_with("形容詞")))
        || matches!(t.base.as_str(), "なし" | "無し" | "無い")
}

/// Verbs that take away what their object is: 「信頼を失う」 is bad although 信頼 is good.
const LOSS_VERBS: &[&str] = &[
    "失う",
    "損なう",
    "欠く",
    "裏切る",
    "なくす",
    "無くす",
    "奪う",
    "揺らぐ",
    "対象外",
    "見送り",
    "見送る",
    "打ち切り",
    "打ち切る",
    "中止",
    "停止",
    "終了",
    "廃止",
    "撤回",
    "引き下げる",
    "引き下げ",
    "縮小",
];
/// Rhetorical markers strong enough without a question mark.
const STRONG_RHETORICAL: &[&str] = &["どの口", "正気", "何回目", "ふざけ"];
/// Verbs and nouns that stop or undo what precedes them: 「被害を防ぐ」「障害が解消」 is good news.
const REMEDY_WORDS: &[&str] = &[
    "防ぐ",
    "防止",
    "未然",
    "阻止",
    "抑える",
    "抑止",
    "減少",
    "減る",
    "減らす",
    "解消",
    "根絶",
    "撲滅",
    "食い止める",
    "封じる",
    "検知",
    "なくす",
];
/// Words that make a question rhetorical (a reproach, not a request for information).
const RHETORICAL: &[&str] = &[
    "なんで",
    "どうして",
    "なぜ",
    "本気",
    "正気",
    "どの口",
    "何回目",
    "いつまで",
    "マジ",
    "まじ",
    "ふざけ",
];

/// Tokens that may stand between a word and the negation or verb that governs it:
/// particles, auxiliaries, dependent words, adverbs, and する/いる/ある.
fn is_glue(t: &Token) -> bool {
    t.pos.starts_with("助詞")
        || t.pos.starts_with("助動詞")
        || t.pos.starts_with("副詞")
        || t.pos.contains("非自立")
        || t.pos.starts_with("名詞,接尾")
        || matches!(
            t.base.as_str(),
            "する" | "いる" | "ある" | "なる" | "られる" | "れる" | "てる" | "できる" | "出来る"
        )
}

fn is_contrast(t: &Token, at_clause_start: bool) -> bool {
    (CONTRAST_PARTICLES.contains(&t.text.as_str()) && t.pos.starts_with("助詞,接続助詞"))
        || t.text == "一方"
        || (at_clause_start
            && CONTRAST_CONJUNCTIONS.contains(&t.text.as_str())
            && t.pos.starts_with("接続詞"))
}

/// Clause index of each token and each clause's weight: clauses before a contrast weigh less.
fn clauses(s: &Sentence<'_>) -> (Vec<usize>, Vec<f64>) {
    let mut of = Vec::with_capacity(s.tokens.len());
    let mut clause = 0;
    let mut contrast_after: Vec<bool> = vec![false];
    for (i, t) in s.tokens.iter().enumerate() {
        let at_clause_start = i == 0 || s.after_comma.get(i).copied().unwrap_or(false);
        if is_contrast(t, at_clause_start) && i + 1 < s.tokens.len() {
            if t.pos.starts_with("接続詞") {
                // 「…。でも…」: the conjunction opens a new clause.
                contrast_after[clause] = true;
                clause += 1;
                contrast_after.push(false);
                of.push(clause);
            } else {
                of.push(clause);
                contrast_after[clause] = true;
                clause += 1;
                contrast_after.push(false);
            }
            continue;
        }
        of.push(clause);
    }
    let weights = contrast_after
        .iter()
        .map(|c| if *c { BEFORE_CONTRAST } else { 1.0 })
        .collect();
    (of, weights)
}

impl Classifier {
    pub fn new(dicts: &Dictionaries, analyzer: &Analyzer) -> Result<Self, TextError> {
        let norm = |s: &str| analyzer.normalize_term(s);
        let mut services = Vec::new();
        for s in &dicts.services {
            services.push(ServiceMatcher {
                slug: s.slug.clone(),
                aliases: s
                    .aliases
                    .iter()
                    .map(|a| norm(a))
                    .collect::<Result<_, _>>()?,
                exclusions: s
                    .exclusions
                    .iter()
                    .map(|a| norm(a))
                    .collect::<Result<_, _>>()?,
            });
        }
        let mut categories = Vec::new();
        for c in &dicts.categories {
            let mut terms = Vec::new();
            for t in &c.terms {
                terms.push((norm(t)?, t.clone()));
            }
            categories.push(CategoryMatcher {
                slug: c.slug.clone(),
                terms,
            });
        }
        let mut polarity = HashMap::new();
        let mut polarity_phrases = Vec::new();
        let mut by_reading = HashMap::new();
        for (term, score) in &dicts.sentiment {
            let tokens: Vec<Token> = analyzer
                .tokenize(term)?
                .into_iter()
                .filter(|t| !t.is_symbol())
                .collect();
            match tokens.as_slice() {
                [] => {}
                [one] => {
                    polarity.insert(one.text.clone(), *score);
                    polarity.entry(one.base.clone()).or_insert(*score);
                    if !one.reading.is_empty() && one.text.chars().count() >= 2 {
                        by_reading.entry(one.reading.clone()).or_insert(*score);
                    }
                }
                many => {
                    polarity_phrases.push((many.iter().map(|t| t.text.as_str()).collect(), *score))
                }
            }
        }
        let mut needles: Vec<String> = services
            .iter()
            .flat_map(|s: &ServiceMatcher| s.aliases.iter().chain(&s.exclusions).cloned())
            .chain(
                categories
                    .iter()
                    .flat_map(|c: &CategoryMatcher| c.terms.iter().map(|(n, _)| n.clone())),
            )
            .chain(
                polarity_phrases
                    .iter()
                    .map(|(p, _): &(String, f64)| p.clone()),
            )
            .filter(|n| !n.is_empty())
            .collect();
        needles.sort();
        needles.dedup();
        let automaton = aho_corasick::AhoCorasick::new(&needles)
            .map_err(|e| TextError::Dictionary(e.to_string()))?;
        // Longer phrases first: 「問題ない」 wins over 「問題」.
        polarity_phrases.sort_by_key(|p: &(String, f64)| std::cmp::Reverse(p.0.len()));
        let mut phrase_ranks: HashMap<String, Vec<usize>> = HashMap::new();
        for (rank, (phrase, _)) in polarity_phrases.iter().enumerate() {
            phrase_ranks.entry(phrase.clone()).or_default().push(rank);
        }
        let mut category_terms: HashMap<String, Vec<(usize, String)>> = HashMap::new();
        for (ci, c) in categories.iter().enumerate() {
            for (norm, display) in &c.terms {
                category_terms
                    .entry(norm.clone())
                    .or_default()
                    .push((ci, display.clone()));
            }
        }
        Ok(Self {
            services,
            categories,
            polarity,
            polarity_phrases,
            by_reading,
            needles,
            automaton,
            phrase_ranks,
            category_terms,
        })
    }

    /// Polar words of a sentence with negation, intensifiers, softeners, absent safeguards
    /// and emoji applied. Longer lexicon phrases win over the words inside them.
    fn polar_hits(&self, s: &Sentence<'_>) -> Vec<PolarHit> {
        let mut hits = Vec::new();
        let mut covered = HashSet::new();
        // The sentence's phrases in lexicon order (longest first).
        let mut ranks: Vec<usize> = s
            .matches
            .keys()
            .filter_map(|needle| self.phrase_ranks.get(*needle))
            .flatten()
            .copied()
            .collect();
        ranks.sort_unstable();
        for (phrase, score) in ranks.into_iter().map(|r| &self.polarity_phrases[r]) {
            for (first, last) in s.find_aligned(phrase) {
                if (first..last).any(|i| covered.contains(&i)) {
                    continue;
                }
                covered.extend(first..last);
                hits.push(self.apply_rules(s, first, last - 1, *score, phrase.clone()));
            }
        }
        for (i, t) in s.tokens.iter().enumerate() {
            if covered.contains(&i) || self.is_modifier_before_polar(s, i) {
                continue;
            }
            let score = self
                .polarity
                .get(&t.text)
                .or_else(|| self.polarity.get(&t.base))
                .or_else(|| {
                    // A word written in kana matches its kanji entry by reading (こわい → 怖い).
                    (is_kana(&t.base) && t.base.chars().count() >= 2)
                        .then(|| self.by_reading.get(&to_katakana(&t.base)))
                        .flatten()
                });
            if let Some(&score) = score {
                hits.push(self.apply_rules(s, i, i, score, t.text.clone()));
            } else if SAFEGUARDS.contains(&t.text.as_str()) {
                // 「二段階認証もない」「補償なし」: a missing safeguard is bad news.
                let missing = s.tokens[i + 1..]
                    .iter()
                    .take(3)
                    .take_while(|n| is_glue(n) || is_negator(n))
                    .any(|n| is_negator(n));
                if missing {
                    hits.push(PolarHit {
                        token: i,
                        score: -0.7,
                        evidence: format!("{}+否定", t.text),
                    });
                }
            }
        }
        if hits.is_empty() {
            // No evaluative word, but a verb is negated: 「読めない」「届かない」「表示されない」 —
            // in posts about services, something that does not work is a complaint.
            for (i, t) in s.tokens.iter().enumerate() {
                if !t.pos.starts_with("動詞,自立")
                    || matches!(
                        t.base.as_str(),
                        "ある" | "いる" | "する" | "なる" | "知る" | "わかる" | "分かる" | "問う"
                    )
                {
                    continue;
                }
                // 「〜ず(に)」 joins clauses ("without"), it does not complain.
                let negated = s.tokens[i + 1..]
                    .iter()
                    .take(3)
                    .take_while(|n| is_glue(n) || is_negator(n))
                    .any(|n| is_negator(n) && n.text != "ず");
                if negated {
                    hits.push(PolarHit {
                        token: i,
                        score: VERB_NEGATION,
                        evidence: format!("{}+否定", t.text),
                    });
                    break;
                }
            }
        }
        // 「長すぎ」「待たされすぎ」: too much of something neutral is a complaint.
        for (i, t) in s.tokens.iter().enumerate().skip(1) {
            if !(t.base == "すぎる" || t.text == "すぎ") || hits.iter().any(|h| h.token + 1 == i)
            {
                continue;
            }
            let prev = s.tokens[i - 1];
            // IPADIC splits 「長すぎ」 into a one-kanji suffix noun and すぎ.
            // (Not a counter: 「3時すぎ」 is a time, not an excess.)
            let stem = prev.pos.starts_with("名詞,接尾")
                && !prev.pos.starts_with("名詞,接尾,助数詞")
                && prev.text.chars().count() == 1;
            let praise = GOOD_EXCESS.contains(&prev.text.as_str());
            if (prev.pos.starts_with("形容詞") || prev.pos.starts_with("動詞") || stem) && !praise
            {
                hits.push(PolarHit {
                    token: i,
                    score: TOO_MUCH,
                    evidence: format!("{}{}", prev.text, t.text),
                });
            }
        }
        for mark in POSITIVE_MARKS {
            if s.raw.contains(mark) {
                hits.push(PolarHit {
                    token: s.tokens.len().saturating_sub(1),
                    score: 0.5,
                    evidence: mark.to_string(),
                });
            }
        }
        for mark in NEGATIVE_MARKS {
            if s.raw.contains(mark) {
                hits.push(PolarHit {
                    token: s.tokens.len().saturating_sub(1),
                    score: -0.5,
                    evidence: mark.to_string(),
                });
            }
        }
        // 「さすがだね（棒）」: the stick marks praise read flatly, that is, sarcasm.
        if s.raw.contains("(棒)") || s.raw.contains("（棒）") {
            for h in hits.iter_mut().filter(|h| h.score > 0.0) {
                h.score = -h.score;
                h.evidence.push_str("+(棒)");
            }
        }
        hits.sort_by_key(|h| h.token);
        hits
    }

    /// An intensifier that is also a polar word (すごい) only intensifies when a polar word
    /// follows closely.
    fn is_modifier_before_polar(&self, s: &Sentence<'_>, i: usize) -> bool {
        let t = s.tokens[i];
        INTENSIFIERS.contains(&t.text.as_str())
            && s.tokens[i + 1..]
                .iter()
                .take(2)
                .any(|n| self.polarity.contains_key(&n.text) || self.polarity.contains_key(&n.base))
    }

    /// Applies negation after the word, and intensifiers or softeners before it.
    fn apply_rules(
        &self,
        s: &Sentence<'_>,
        first: usize,
        last: usize,
        score: f64,
        word: String,
    ) -> PolarHit {
        let mut score = score;
        let mut evidence = word;
        let before = &s.tokens[first.saturating_sub(2)..first];
        if before
            .iter()
            .any(|t| INTENSIFIERS.contains(&t.text.as_str()))
        {
            score = (score * 1.5).clamp(-1.0, 1.0);
        } else if before.iter().any(|t| SOFTENERS.contains(&t.text.as_str())) {
            score *= 0.5;
        }
        // The tokens after the word, up to six and within its clause: the first four decide
        // negation and strength, all six what governs it (「Xの件数が減少」).
        let ahead: Vec<&Token> = s.tokens[last + 1..]
            .iter()
            .copied()
            .take(6)
            .take_while(|t| {
                !(t.pos.starts_with("助詞,接続助詞")
                    && CONTRAST_PARTICLES.contains(&t.text.as_str()))
            })
            .collect();
        let after = &ahead[..ahead.len().min(4)];
        // The negation must govern this word: only glue may stand between them. 「〜しかない」
        // ("nothing but") is not a negation.
        // A harm that did not happen is good news: 「被害は出なかった」「事故の報告はない」.
        let occurs = |t: &Token| score < 0.0 && OCCURRENCE.contains(&t.base.as_str());
        let governed: Vec<&&Token> = after
            .iter()
            .take_while(|t| is_glue(t) || is_negator(t) || occurs(t))
            .collect();
        let exclusive = governed.iter().any(|t| t.text == "しか");
        let negated = !exclusive && governed.iter().any(|t| is_negator(t));
        // 「〜すぎる」 strengthens what it follows (高すぎる, 便利すぎ).
        if exclusive
            || after
                .first()
                .is_some_and(|t| t.base == "すぎる" || t.text == "すぎ")
        {
            score = (score * 1.3).clamp(-1.0, 1.0);
        }
        if negated {
            // 「悪くない」 is praise, but milder than 「良い」; 「安全ではない」 is a warning.
            score = if score < 0.0 {
                -score * 0.7
            } else {
                -score * 0.9
            };
            evidence.push_str("+否定");
        } else {
            // What governs the thing decides whether it is lost or remedied: the next content
            // word, or the one after 「Xの件数が」-style nouns.
            // A governing verb that is itself negated (「解消されない」「防止できなかった」)
            // changes nothing: the harm stays.
            let governs = |words: &[&str]| {
                let i = ahead.iter().position(|t| {
                    words.contains(&t.base.as_str()) || words.contains(&t.text.as_str())
                })?;
                let negated = ahead[i + 1..]
                    .iter()
                    .copied()
                    .chain(
                        s.tokens[(last + 1 + ahead.len()).min(s.tokens.len())..]
                            .iter()
                            .copied()
                            .take(3),
                    )
                    .take(4)
                    .take_while(|t| is_glue(t) || is_negator(t))
                    .any(is_negator);
                (!negated).then(|| ahead[i].base.clone())
            };
            if score > 0.0 {
                if let Some(v) = governs(LOSS_VERBS) {
                    score = -score;
                    evidence = format!("{evidence}+{v}");
                }
            } else if let Some(v) = governs(REMEDY_WORDS) {
                score = -score * 0.7;
                evidence = format!("{evidence}+{v}");
            }
            // A polar noun that only modifies the next noun (「不正利用の手口」) says less.
            if after
                .first()
                .is_some_and(|t| t.text == "の" && t.pos.starts_with("助詞,連体化"))
            {
                score *= 0.6;
            }
        }
        PolarHit {
            token: last,
            score,
            evidence,
        }
    }

    /// Scores a sentence: each polar hit weighted by its clause (later clauses of a contrast
    /// weigh more) and damped in a plain question. Returns the hits with their final weights
    /// and each token's clause.
    fn score_sentence(&self, s: &Sentence<'_>) -> (Vec<(PolarHit, f64)>, Vec<usize>) {
        let mut hits = self.polar_hits(s);
        let (clause_of, weights) = clauses(s);
        let rhetorical = (s.question
            && (s.tokens.iter().any(|t| {
                RHETORICAL.contains(&t.text.as_str()) || RHETORICAL.contains(&t.base.as_str())
            })))
            || STRONG_RHETORICAL.iter().any(|r| s.compact.contains(r));
        if rhetorical {
            // 「安心ってどの口が言うの」: praise quoted in a reproach is turned against itself.
            for h in hits.iter_mut().filter(|h| h.score > 0.0) {
                h.score = -h.score;
                h.evidence.push_str("+反語");
            }
        }
        // A plain question asks; its polar words say little.
        let damp = if s.question && !rhetorical {
            IN_QUESTION
        } else {
            1.0
        };
        let n = hits.len();
        let weighted = hits
            .into_iter()
            .enumerate()
            .map(|(i, h)| {
                let clause = weights[clause_of
                    .get(h.token)
                    .copied()
                    .unwrap_or(0)
                    .min(weights.len() - 1)];
                // Japanese puts the verdict at the end: the last polar word weighs a bit more.
                let end_focus = if n > 1 && i == n - 1 { END_FOCUS } else { 1.0 };
                (h, clause * damp * end_focus)
            })
            .collect();
        (weighted, clause_of)
    }

    /// Classifies one item whose parts (title, body …) were tokenized once each.
    pub fn classify(&self, parts: &[(&str, &[Token])]) -> Analysis {
        let mut sentences = sentences(parts);
        for s in &mut sentences {
            s.annotate(&self.automaton, &self.needles);
        }
        let mut services: BTreeSet<(usize, &str)> = BTreeSet::new();
        let mut per_service: HashMap<&str, f64> = HashMap::new();
        let mut total = 0.0;
        let mut evidence = Vec::new();
        let mut category_evidence: Vec<BTreeSet<String>> =
            vec![BTreeSet::new(); self.categories.len()];
        // 「便利。でも怖い。」: a sentence opening with a contrastive conjunction overrides the
        // one before it.
        let sentence_weight: Vec<f64> = (0..sentences.len())
            .map(|i| {
                let next_opens_contrast = sentences
                    .get(i + 1)
                    .and_then(|n| n.tokens.first())
                    .is_some_and(|t| {
                        CONTRAST_CONJUNCTIONS.contains(&t.text.as_str())
                            && t.pos.starts_with("接続詞")
                    });
                if next_opens_contrast {
                    BEFORE_CONTRAST
                } else {
                    1.0
                }
            })
            .collect();
        for (si, s) in sentences.iter().enumerate() {
            let (mut hits, clause_of) = self.score_sentence(s);
            for (_, w) in hits.iter_mut() {
                *w *= sentence_weight[si];
            }
            for (h, w) in &hits {
                total += h.score * w;
                evidence.push(format!("{} ({:+.2})", h.evidence, h.score * w));
            }
            // Target-aware: a service takes the polar words of the clauses that name it; a
            // service named only in clauses without polar words takes the sentence's others.
            let mentions = self.service_clauses(s, &clause_of);
            for (slug, own) in &mentions {
                let order = self
                    .services
                    .iter()
                    .position(|m| m.slug == *slug)
                    .unwrap_or(0);
                services.insert((order, slug));
                let in_own: Vec<f64> = hits
                    .iter()
                    .filter(|(h, _)| own.contains(&clause_of.get(h.token).copied().unwrap_or(0)))
                    .map(|(h, w)| h.score * w)
                    .collect();
                let score: f64 = if in_own.is_empty() {
                    let others: HashSet<usize> = mentions
                        .iter()
                        .filter(|(o, _)| o != slug)
                        .flat_map(|(_, c)| c.iter().copied())
                        .collect();
                    hits.iter()
                        .filter(|(h, _)| {
                            !others.contains(&clause_of.get(h.token).copied().unwrap_or(0))
                        })
                        .map(|(h, w)| h.score * w)
                        .sum()
                } else {
                    in_own.iter().sum()
                };
                *per_service.entry(slug).or_default() += score;
            }
            for needle in s.matches.keys() {
                let Some(terms) = self.category_terms.get(*needle) else {
                    continue;
                };
                if !s.find_aligned(needle).is_empty() {
                    for (ci, display) in terms {
                        category_evidence[*ci].insert(display.clone());
                    }
                }
            }
        }
        let score = squash(total);
        let services: Vec<&str> = services.into_iter().map(|(_, s)| s).collect();
        let targets = services
            .iter()
            .map(|slug| {
                let score = squash(per_service.get(slug).copied().unwrap_or(0.0));
                TargetSentiment {
                    service: slug.to_string(),
                    label: SentimentLabel::from_score(score),
                    score,
                }
            })
            .collect();
        let categories = self
            .categories
            .iter()
            .zip(category_evidence)
            .filter(|(_, ev)| !ev.is_empty())
            .map(|(c, ev)| CategoryHit {
                name: c.slug.clone(),
                evidence: ev.into_iter().collect(),
            })
            .collect();
        Analysis {
            services: services.iter().map(|s| s.to_string()).collect(),
            categories,
            sentiment: Sentiment {
                label: SentimentLabel::from_score(score),
                score,
                evidence,
            },
            targets,
        }
    }

    /// The services a sentence names, each with the clauses that name it.
    fn service_clauses<'s>(
        &'s self,
        s: &Sentence<'_>,
        clause_of: &[usize],
    ) -> Vec<(&'s str, HashSet<usize>)> {
        let mut out = Vec::new();
        for m in &self.services {
            let excluded: Vec<(usize, usize)> = m
                .exclusions
                .iter()
                .flat_map(|e| s.ranges(e).iter().copied())
                .collect();
            let mut clauses = HashSet::new();
            for alias in &m.aliases {
                for (first, last) in s.find_aligned(alias) {
                    let (a, b) = (s.bounds[first], s.bounds[last]);
                    if !excluded.iter().any(|&(x, y)| a < y && x < b) {
                        clauses.insert(clause_of.get(first).copied().unwrap_or(0));
                    }
                }
            }
            if !clauses.is_empty() {
                out.push((m.slug.as_str(), clauses));
            }
        }
        out
    }
}

/// Maps a weighted sum of word polarities to [-1, 1]: one clear word gives about ±0.6,
/// several agreeing words approach ±1, mixed words cancel out.
fn squash(sum: f64) -> f64 {
    ((sum.tanh()) * 1000.0).round() / 1000.0
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::OnceLock;

    pub(super) fn setup() -> &'static (Analyzer, Classifier) {
        static S: OnceLock<(Analyzer, Classifier)> = OnceLock::new();
        S.get_or_init(|| {
            let d = Dictionaries::builtin();
            let a = Analyzer::new(d.userdic()).unwrap();
            let c = Classifier::new(&d, &a).unwrap();
            (a, c)
        })
    }

    pub(super) fn analyze(text: &str) -> Analysis {
        let (a, c) = setup();
        let tokens = a.tokenize(text).unwrap();
        c.classify(&[(text, &tokens)])
    }

    #[test]
    fn alias_matching_table() {
        // (text, services that must be found)
        let rows: &[(&str, &[&str])] = &[
            ("ＰａｙＰａｙで払った", &["paypay"]),
            ("LINE Payで払った", &["linepay"]),
            ("ＬＩＮＥ Ｐａｙが使えない", &["linepay"]),
            ("７ｐａｙで不正利用", &["7pay"]),
            ("セブンペイの被害", &["7pay"]),
            ("ｾﾌﾞﾝ･ﾍﾟｲ怖い", &["7pay"]),
            ("メルペイとd払いとau PAY", &["merpay", "dbarai", "aupay"]),
            ("LINEで送った", &[]),
            ("payで払う", &[]),
            ("PayPayドームで観戦", &[]),
            ("PayPay銀行に振り込んだ", &[]),
            ("au PAY マーケットで買い物", &[]),
            ("PayPayドームに行ってPayPayで払った", &["paypay"]),
            ("オンラインペイメント", &[]),
            ("onlinepayment", &[]),
        ];
        for (text, want) in rows {
            assert_eq!(analyze(text).services, *want, "{text}");
        }
    }

    #[test]
    fn categories_come_with_evidence_and_respect_token_boundaries() {
        let a = analyze("7payで不正利用の被害。二段階認証がない。");
        let names: Vec<_> = a.categories.iter().map(|c| c.name.as_str()).collect();
        assert_eq!(names, ["fraud", "security"]);
        assert!(a.categories[0].evidence.contains(&"不正利用".to_string()));
        assert!(
            analyze("不正確な情報").categories.is_empty(),
            "{:?}",
            analyze("不正確な情報")
        );
    }

    #[test]
    fn sentiment_is_computed_from_words_with_negation() {
        assert_eq!(
            analyze("7payは怖い").sentiment.label,
            SentimentLabel::Negative
        );
        assert_eq!(
            analyze("PayPayは便利で安心").sentiment.label,
            SentimentLabel::Positive
        );
        assert_eq!(
            analyze("今日は晴れ").sentiment.label,
            SentimentLabel::Neutral
        );
        let neg = analyze("このアプリは安全ではない");
        assert_eq!(neg.sentiment.label, SentimentLabel::Negative, "{neg:?}");
        assert!(neg.sentiment.evidence.iter().any(|e| e.contains("否定")));
    }

    #[test]
    fn targets_are_scored_from_their_own_sentences() {
        let a = analyze("PayPayは便利で安心。7payは不正で怖い。");
        let t: HashMap<_, _> = a
            .targets
            .iter()
            .map(|t| (t.service.as_str(), t.label))
            .collect();
        assert_eq!(t["paypay"], SentimentLabel::Positive);
        assert_eq!(t["7pay"], SentimentLabel::Negative);
    }

    #[test]
    fn sentiment_rules_table() {
        use SentimentLabel::*;
        // (text, expected item label) — sentences written for this test, not from the eval set.
        let rows = [
            ("ここのアプリ、悪くない", Positive),     // negated negative
            ("レジの決済は問題なかった", Positive),   // lexicon phrase through inflection
            ("チャージが全然反映されない", Negative), // 〜されない
            ("最初は面倒だったけど、今は手放せない", Positive), // contrast: later clause wins
            ("便利だけど、ちょっと怖い", Negative),   // contrast with a softener
            ("このお店でPayPay使えますか？", Neutral), // plain question
            ("安心って本気で言ってるの？", Negative), // rhetorical question
            ("不安しかない", Negative),               // しかない is not negation
            ("新しい認証で不正送金を防ぐ", Positive), // remedy verb
            ("今回の対応で信頼を失った", Negative),   // loss verb
            ("補償なし、説明もなし", Negative),       // missing safeguards
            ("ポイント還元が最高すぎる😊", Positive), // intensifier + emoji
            ("明日の会議は10時から", Neutral),
        ];
        for (text, want) in rows {
            let a = analyze(text);
            assert_eq!(a.sentiment.label, want, "{text}: {:?}", a.sentiment);
        }
    }

    #[test]
    fn review_cases() {
        use SentimentLabel::*;
        let rows = [
            ("障害が解消されない", Negative), // negated remedy: the harm stays
            ("不正利用を防止できなかった", Negative),
            ("便利。でも不正利用が怖い。", Negative), // sentence-initial でも
            ("便利だ、しかし怖い", Negative),         // conjunction after a comma
            ("まじめに対応してくれて安心", Positive), // まじめ is not マジ
            ("対応が早くて素晴らしいですね（棒）", Negative), // sarcasm marker
            ("地震による被害は出なかった", Positive), // a harm that did not happen
            ("トラブルの報告はないという", Positive),
            ("会議が長すぎ", Negative), // too much of a neutral word
            ("年齢を問わず参加できる", Neutral), // 〜ず joins, not a complaint
            ("待たずに注文できた", Neutral),
            ("午後3時すぎに会議が始まった", Neutral), // a time, not an excess
            ("還元率を引き下げると発表", Negative),   // a benefit reduced
        ];
        for (text, want) in rows {
            let a = analyze(text);
            assert_eq!(a.sentiment.label, want, "{text}: {:?}", a.sentiment);
        }
    }

    #[test]
    fn contrast_splits_targets_within_one_sentence() {
        let a = analyze("PayPayは大丈夫だけど7payは怖い");
        let t: HashMap<_, _> = a
            .targets
            .iter()
            .map(|t| (t.service.as_str(), t.label))
            .collect();
        assert_eq!(t["paypay"], SentimentLabel::Positive);
        assert_eq!(t["7pay"], SentimentLabel::Negative);
        assert_eq!(
            a.sentiment.label,
            SentimentLabel::Negative,
            "the later clause weighs more"
        );
    }
}
