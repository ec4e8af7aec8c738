//! text: normalization and tokenization. Owns the one lindera analyzer every stage shares, so
//! classification, indexing and queries all see the same tokens.
//!
//! Normalization runs as lindera-analysis character filters (NFKC, Latin lower-casing, iteration
//! marks), which keep byte offsets mapped back to the original text: tokens carry the normalized
//! form for matching and the original offsets for highlighting.
use lindera::dictionary::{load_embedded_dictionary, DictionaryBuilder, DictionaryKind};
use lindera::mode::Mode;
use lindera::segmenter::Segmenter;
use lindera_analysis::character_filter::japanese_iteration_mark::JapaneseIterationMarkCharacterFilter;
use lindera_analysis::character_filter::mapping::MappingCharacterFilter;
use lindera_analysis::character_filter::regex::RegexCharacterFilter;
use lindera_analysis::character_filter::unicode_normalize::{
    UnicodeNormalizeCharacterFilter, UnicodeNormalizeKind,
};
use lindera_analysis::tokenizer::Tokenizer;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;

#[derive(Debug, thiserror::Error)]
pub enum TextError {
    #[error("cannot load the IPADIC dictionary: {0}")]
    Dictionary(String),
    #[error("cannot load the user dictionary: {0}")]
    UserDictionary(String),
    #[error("tokenization failed: {0}")]
    Tokenize(String),
}

/// One token of analyzed text.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Token {
    /// Normalized surface (NFKC, Latin lower-case): what matching and the index use.
    pub text: String,
    /// Dictionary base form (終止形) in normalized form; the surface when unknown.
    pub base: String,
    /// Katakana reading, empty when unknown.
    pub reading: String,
    /// Part-of-speech path, e.g. `名詞,固有名詞,組織,*`.
    pub pos: String,
    /// Byte offsets into the original (un-normalized) text.
    pub start: usize,
    pub end: usize,
    /// Token position (stop-word removal downstream leaves gaps, so phrases still line up).
    pub position: usize,
}

impl Token {
    /// Punctuation and symbols: kept for sentence splitting, never indexed.
    pub fn is_symbol(&self) -> bool {
        self.pos.starts_with("記号") || self.text.chars().all(|c| !c.is_alphanumeric())
    }
}

/// The analyzer: IPADIC plus the project's user dictionary behind normalizing filters.
pub struct Analyzer {
    tokenizer: Tokenizer,
    /// Names this analyzer's entries in the per-thread word cache (word ids mean nothing
    /// across dictionaries).
    id: u64,
}

/// What the dictionary says of a word, as tokens carry it.
struct WordDetails {
    pos: String,
    /// Lower-cased base form; None when the dictionary has none (the surface stands in).
    base: Option<String>,
    reading: String,
}

/// Most tokens are frequent words: their details are read from the dictionary once per thread
/// (lindera decodes a word's detail fields on every token otherwise, which cost as much as
/// segmenting). Indexed by word id, so a lookup is an array access; emptied when it holds
/// `WORD_CACHE_LIMIT` words (long-lived threads — web workers, the blocking pool — each keep
/// one: a few MB at most).
#[derive(Default)]
struct WordCache {
    /// The analyzer whose dictionaries the ids belong to (ids mean nothing across them).
    analyzer: u64,
    words: usize,
    system: Vec<Option<std::rc::Rc<WordDetails>>>,
    user: Vec<Option<std::rc::Rc<WordDetails>>>,
}

const WORD_CACHE_LIMIT: usize = 50_000;

thread_local! {
    static WORD_CACHE: std::cell::RefCell<WordCache> = std::cell::RefCell::new(WordCache::default());
}

static NEXT_ANALYZER_ID: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);

impl Analyzer {
    /// Builds the analyzer from the user dictionary's CSV text (simple format
    /// `surface,part_of_speech,reading`).
    pub fn new(user_dictionary_csv: &str) -> Result<Self, TextError> {
        let dictionary = load_embedded_dictionary(DictionaryKind::IPADIC)
            .map_err(|e| TextError::Dictionary(e.to_string()))?;
        let user_dictionary = DictionaryBuilder::new((*dictionary.metadata).clone())
            .build_user_dict_from_reader(user_dictionary_csv.as_bytes())
            .map_err(|e| TextError::UserDictionary(e.to_string()))?;
        let segmenter = Segmenter::new(Mode::Normal, dictionary, Some(user_dictionary));
        let mut tokenizer = Tokenizer::new(segmenter);
        tokenizer.append_character_filter(
            UnicodeNormalizeCharacterFilter::new(UnicodeNormalizeKind::NFKC).into(),
        );
        let lower: HashMap<String, String> = ('A'..='Z')
            .map(|c| (c.to_string(), c.to_ascii_lowercase().to_string()))
            .collect();
        tokenizer.append_character_filter(
            MappingCharacterFilter::new(lower)
                .map_err(|e| TextError::Dictionary(e.to_string()))?
                .into(),
        );
        tokenizer
            .append_character_filter(JapaneseIterationMarkCharacterFilter::new(true, true).into());
        // Left out of analysis (kept in the stored text for display): URLs and @mentions.
        // Elongations are folded: 「すごーーい」「wwww」「やばっっ」.
        for (pattern, replacement) in [
            (r"https?://[^\s　]+", " "),
            (r"@[a-z0-9_]{1,30}", " "),
            (r"ー{2,}", "ー"),
            (r"〜{2,}", "〜"),
            (r"w{2,}", "w"),
            (r"っ{2,}", "っ"),
        ] {
            tokenizer.append_character_filter(
                RegexCharacterFilter::new(pattern, replacement)
                    .map_err(|e| TextError::Dictionary(e.to_string()))?
                    .into(),
            );
        }
        Ok(Self {
            tokenizer,
            id: NEXT_ANALYZER_ID.fetch_add(1, std::sync::atomic::Ordering::Relaxed),
        })
    }

    /// A token's dictionary details, from the per-thread cache when the word was seen.
    fn word_details(&self, t: &mut lindera::token::Token) -> std::rc::Rc<WordDetails> {
        let read = |t: &mut lindera::token::Token| {
            let details = t.details();
            let field = |i: usize| {
                details
                    .get(i)
                    .copied()
                    .filter(|d| !d.is_empty() && *d != "*")
            };
            std::rc::Rc::new(WordDetails {
                pos: (0..4)
                    .map(|i| details.get(i).copied().unwrap_or("*"))
                    .collect::<Vec<_>>()
                    .join(","),
                base: field(6).map(|b| b.to_lowercase()),
                reading: field(7).unwrap_or("").to_string(),
            })
        };
        // Only dictionary words are cached: unknown words take their details from their
        // character class. (IPADIC has about 400,000 entries; an id past the bound below is
        // read, not cached.)
        let id = t.word_id.id() as usize;
        if t.word_id.is_unknown() || id >= 1 << 22 {
            return read(t);
        }
        WORD_CACHE.with(|cache| {
            let mut cache = cache.borrow_mut();
            if cache.analyzer != self.id || cache.words >= WORD_CACHE_LIMIT {
                *cache = WordCache {
                    analyzer: self.id,
                    ..WordCache::default()
                };
            }
            let slots = if t.word_id.is_system() {
                &mut cache.system
            } else {
                &mut cache.user
            };
            if slots.len() <= id {
                slots.resize(id + 1, None);
            }
            if let Some(word) = &slots[id] {
                return word.clone();
            }
            let word = read(t);
            slots[id] = Some(word.clone());
            cache.words += 1;
            word
        })
    }

    /// Segments `text` once; every later stage reuses these tokens.
    pub fn tokenize(&self, text: &str) -> Result<Vec<Token>, TextError> {
        if text.trim().is_empty() {
            return Ok(Vec::new());
        }
        let raw = self
            .tokenizer
            .tokenize(text)
            .map_err(|e| TextError::Tokenize(e.to_string()))?;
        let mut out = Vec::with_capacity(raw.len());
        for mut t in raw {
            let surface = t.surface.to_string();
            if surface.trim().is_empty() {
                continue;
            }
            // Character filters can map an offset into the middle of a character (㍿ becomes
            // 株式会社): widen to character boundaries, so slicing the original never panics.
            let mut start = t.byte_start.min(text.len());
            while !text.is_char_boundary(start) {
                start -= 1;
            }
            let mut end = t.byte_end.min(text.len()).max(start);
            while !text.is_char_boundary(end) {
                end += 1;
            }
            let position = t.position;
            let word = self.word_details(&mut t);
            let base = word.base.clone().unwrap_or_else(|| surface.clone());
            out.push(Token {
                text: surface,
                base,
                reading: word.reading.clone(),
                pos: word.pos.clone(),
                start,
                end,
                position,
            });
        }
        Ok(out)
    }

    /// Normalized form of a short string (a lexicon term, an alias): the concatenated token
    /// texts, so terms are compared the same way text is.
    pub fn normalize_term(&self, term: &str) -> Result<String, TextError> {
        Ok(self
            .tokenize(term)?
            .iter()
            .filter(|t| !t.is_symbol())
            .map(|t| t.text.as_str())
            .collect())
    }
}

/// Hiragana, katakana or the long-vowel mark.
pub fn is_kana_char(c: char) -> bool {
    matches!(c, 'ぁ'..='ゖ' | 'ァ'..='ヺ' | 'ー')
}

/// A non-empty word written in kana only.
pub fn is_kana(s: &str) -> bool {
    !s.is_empty() && s.chars().all(is_kana_char)
}

/// Hiragana turned into katakana; everything else kept.
pub fn to_katakana(s: &str) -> String {
    s.chars()
        .map(|c| match c {
            'ぁ'..='ゖ' => char::from_u32(c as u32 + 0x60).unwrap_or(c),
            other => other,
        })
        .collect()
}

/// Tokens that enter the search index: no symbols, no whitespace; positions kept.
pub fn index_tokens(tokens: &[Token]) -> impl Iterator<Item = &Token> {
    tokens.iter().filter(|t| !t.is_symbol())
}

/// Reduces HTML (feed descriptions, Atom content) to plain text: tags dropped, entities decoded,
/// block elements and <br> become line breaks, script and style dropped.
pub fn html_to_text(html: &str) -> String {
    if !html.contains('<') && !html.contains('&') {
        return collapse_whitespace(html);
    }
    // A full HTML parser is quadratic on pathological nesting; past this size a linear tag
    // stripper does the job (no feed summary needs a DOM of this size).
    if html.len() > MAX_PARSED_HTML {
        return collapse_whitespace(&strip_tags(html));
    }
    let fragment = scraper::Html::parse_fragment(html);
    let mut out = String::with_capacity(html.len());
    walk(*fragment.root_element(), &mut out);
    collapse_whitespace(&out)
}

const MAX_PARSED_HTML: usize = 64 * 1024;

/// Linear tag stripping for oversized HTML: block tags become line breaks, script and style
/// content is dropped, entities are decoded.
fn strip_tags(html: &str) -> String {
    let mut out = String::with_capacity(html.len() / 2);
    let mut rest = html;
    while let Some(lt) = rest.find('<') {
        out.push_str(&rest[..lt]);
        let tail = &rest[lt + 1..];
        let Some(gt) = tail.find('>') else {
            rest = "";
            break;
        };
        let tag = tail[..gt].trim_start_matches('/').to_ascii_lowercase();
        let name: String = tag
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric())
            .collect();
        rest = &tail[gt + 1..];
        if matches!(name.as_str(), "script" | "style") && !tail.starts_with('/') {
            let close = format!("</{name}");
            let lower = rest.to_ascii_lowercase();
            rest = lower.find(&close).map(|i| &rest[i..]).unwrap_or("");
            continue;
        }
        if is_block(&name) {
            out.push('\n');
        }
    }
    out.push_str(rest);
    html_escape::decode_html_entities(&out).into_owned()
}

/// Walks the tree without recursion (ego_tree's traverse), so deeply nested input — a
/// hostile feed can nest 100,000 <div>s — cannot overflow the stack.
fn walk(node: ego_tree::NodeRef<'_, scraper::Node>, out: &mut String) {
    use ego_tree::iter::Edge;
    let mut skipping: Option<ego_tree::NodeId> = None;
    for edge in node.traverse() {
        match edge {
            Edge::Open(n) => {
                if skipping.is_some() {
                    continue;
                }
                match n.value() {
                    scraper::Node::Text(t) => out.push_str(t),
                    scraper::Node::Element(e) => {
                        if matches!(e.name(), "script" | "style" | "noscript" | "template") {
                            skipping = Some(n.id());
                        } else if is_block(e.name()) {
                            out.push('\n');
                        }
                    }
                    _ => {}
                }
            }
            Edge::Close(n) => {
                if skipping == Some(n.id()) {
                    skipping = None;
                } else if skipping.is_none() {
                    if let scraper::Node::Element(e) = n.value() {
                        if is_block(e.name()) {
                            out.push('\n');
                        }
                    }
                }
            }
        }
    }
}

fn is_block(name: &str) -> bool {
    matches!(
        name,
        "p" | "div"
            | "br"
            | "li"
            | "ul"
            | "ol"
            | "h1"
            | "h2"
            | "h3"
            | "h4"
            | "h5"
            | "h6"
            | "tr"
            | "table"
            | "blockquote"
            | "section"
            | "article"
            | "pre"
    )
}

/// Trims each line, collapses runs of spaces, drops blank lines.
pub fn collapse_whitespace(s: &str) -> String {
    s.lines()
        .map(|line| line.split_whitespace().collect::<Vec<_>>().join(" "))
        .filter(|line| !line.is_empty())
        .collect::<Vec<_>>()
        .join("\n")
}

/// Truncates to at most `max_chars` characters (not bytes), adding an ellipsis when cut.
pub fn truncate_chars(s: &str, max_chars: usize) -> String {
    match s.char_indices().nth(max_chars) {
        Some((i, _)) => format!("{}…", &s[..i]),
        None => s.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::OnceLock;

    pub(crate) fn analyzer() -> &'static Analyzer {
        static A: OnceLock<Analyzer> = OnceLock::new();
        A.get_or_init(|| {
            Analyzer::new(crate::dictionaries::Dictionaries::builtin().userdic()).unwrap()
        })
    }

    fn texts(s: &str) -> Vec<String> {
        index_tokens(&analyzer().tokenize(s).unwrap())
            .map(|t| t.text.clone())
            .collect()
    }

    #[test]
    fn normalization_table() {
        // (input, normalized term)
        let rows = [
            ("ＰａｙＰａｙ", "paypay"),
            ("７ｐａｙ", "7pay"),
            ("7PAY", "7pay"),
            ("ＬＩＮＥ　Ｐａｙ", "linepay"),
            ("ｾﾌﾞﾝﾍﾟｲ", "セブンペイ"),
        ];
        for (input, want) in rows {
            assert_eq!(analyzer().normalize_term(input).unwrap(), want, "{input}");
        }
    }

    #[test]
    fn user_dictionary_keeps_service_names_whole() {
        assert_eq!(
            texts("７ｐａｙで不正利用"),
            vec!["7pay", "で", "不正", "利用"]
        );
        assert!(texts("セブンペイが怖い").contains(&"セブンペイ".to_string()));
    }

    #[test]
    fn urls_and_mentions_are_left_out_elongations_folded() {
        assert_eq!(
            texts("詳細は https://paypay.example/7pay を見て"),
            vec!["詳細", "は", "を", "見", "て"]
        );
        assert!(!texts("@paypay_jp 返信して")
            .iter()
            .any(|t| t.contains("paypay")));
        assert_eq!(texts("wwww"), vec!["w"]);
        let a = analyzer().tokenize("すごーーーい").unwrap();
        assert_eq!(
            a.iter().map(|t| t.text.as_str()).collect::<String>(),
            "すごーい"
        );
    }

    #[test]
    fn offsets_point_into_the_original_text() {
        let s = "ＰａｙＰａｙで払った";
        let toks = analyzer().tokenize(s).unwrap();
        assert_eq!(&s[toks[0].start..toks[0].end], "ＰａｙＰａｙ");
        assert_eq!(toks[0].text, "paypay");
    }

    #[test]
    fn tokens_carry_base_form_reading_and_pos() {
        let toks = analyzer().tokenize("使えなかった").unwrap();
        assert_eq!(toks[0].base, "使える");
        assert!(toks[0].pos.starts_with("動詞"));
        assert!(!toks[0].reading.is_empty());
    }

    #[test]
    fn html_becomes_text() {
        assert_eq!(
            html_to_text("<p>7payで&amp;<b>不正</b></p><p>被害&#x3002;</p><script>x()</script>"),
            "7payで&不正\n被害。"
        );
        assert_eq!(html_to_text("plain  text"), "plain text");
    }

    #[test]
    fn hostile_input_neither_overflows_nor_breaks_offsets() {
        let deep = "<div>".repeat(100_000) + "7pay" + &"</div>".repeat(100_000);
        assert_eq!(html_to_text(&deep), "7pay");
        let big = format!(
            "<p>被害&amp;補償</p><script>x()</script>{}",
            "<b>a</b>".repeat(20_000)
        );
        assert!(html_to_text(&big).starts_with("被害&補償\n"));
        // NFKC expands ㍿ to 株式会社: token offsets stay on character boundaries.
        let s = "㍿セブン・ペイ";
        for t in analyzer().tokenize(s).unwrap() {
            assert!(
                s.is_char_boundary(t.start) && s.is_char_boundary(t.end),
                "{t:?}"
            );
        }
    }

    #[test]
    fn truncation_counts_characters() {
        assert_eq!(truncate_chars("二段階認証", 3), "二段階…");
        assert_eq!(truncate_chars("abc", 3), "abc");
    }
}
