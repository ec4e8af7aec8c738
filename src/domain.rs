//! Plain types shared by every stage. No IO here; constructors parse, so bad data stops at the edge.
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use std::fmt;

/// An ASCII slug: lower-case letters, digits and '-', 1..=32 chars. Services, categories and
/// sources are named by slugs in URLs, the API, queries and the database.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Slug(String);

impl Slug {
    pub fn parse(s: &str) -> Result<Self, String> {
        let ok = !s.is_empty()
            && s.len() <= 32
            && s.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
        if ok {
            Ok(Self(s.to_string()))
        } else {
            Err(format!(
                "{s:?} is not a slug (use 1-32 characters of a-z, 0-9 and '-')"
            ))
        }
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for Slug {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        Slug::parse(&s)
    }
}
impl From<Slug> for String {
    fn from(s: Slug) -> String {
        s.0
    }
}
impl fmt::Display for Slug {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Whether an item is a news article or a social post.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ItemKind {
    News,
    Social,
}

impl ItemKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ItemKind::News => "news",
            ItemKind::Social => "social",
        }
    }
    pub fn parse(s: &str) -> Result<Self, String> {
        match s {
            "news" => Ok(ItemKind::News),
            "social" => Ok(ItemKind::Social),
            other => Err(format!("{other:?} is not a kind (use news or social)")),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SentimentLabel {
    Negative,
    Neutral,
    Positive,
}

impl SentimentLabel {
    pub fn as_str(self) -> &'static str {
        match self {
            SentimentLabel::Negative => "negative",
            SentimentLabel::Neutral => "neutral",
            SentimentLabel::Positive => "positive",
        }
    }
    pub fn parse(s: &str) -> Result<Self, String> {
        match s {
            "negative" => Ok(Self::Negative),
            "neutral" => Ok(Self::Neutral),
            "positive" => Ok(Self::Positive),
            other => Err(format!(
                "{other:?} is not a sentiment (use negative, neutral or positive)"
            )),
        }
    }
    /// The label a score in [-1, 1] falls into; a small dead zone keeps faint signals neutral.
    pub fn from_score(score: f64) -> Self {
        if score <= -0.15 {
            Self::Negative
        } else if score >= 0.15 {
            Self::Positive
        } else {
            Self::Neutral
        }
    }
}

/// How trustworthy an item's publication time is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DateQuality {
    /// The source gave a full timestamp.
    Exact,
    /// The source gave no date; first seen is used.
    Missing,
    /// The source's date lay in the future; clamped to first seen.
    ClampedFuture,
}

impl DateQuality {
    pub fn as_str(self) -> &'static str {
        match self {
            DateQuality::Exact => "exact",
            DateQuality::Missing => "missing",
            DateQuality::ClampedFuture => "clamped_future",
        }
    }
}

/// An item as a source (feed, import) hands it over, before analysis.
#[derive(Debug, Clone, PartialEq)]
pub struct RawItem {
    pub source: String,
    /// The source's own identifier, when it has a stable one (RSS guid, Atom id).
    pub guid: Option<String>,
    pub url: String,
    pub title: String,
    /// Plain text (HTML already reduced to text by the caller).
    pub body: String,
    pub published_at: Option<DateTime<Utc>>,
    pub author: Option<String>,
    pub kind: ItemKind,
    /// Engagement the source reports, e.g. Hatena Bookmark's bookmark count.
    pub bookmarks: Option<i64>,
    /// The source's own subjects or categories (RSS category, dc:subject, Atom category).
    pub tags: Vec<String>,
}

/// Evidence that a category applies: the lexicon terms found in the text.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CategoryHit {
    pub name: String,
    pub evidence: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Sentiment {
    pub label: SentimentLabel,
    pub score: f64,
    #[serde(default)]
    pub evidence: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TargetSentiment {
    pub service: String,
    pub label: SentimentLabel,
    pub score: f64,
}

/// Everything classification says about one text.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Analysis {
    pub services: Vec<String>,
    pub categories: Vec<CategoryHit>,
    pub sentiment: Sentiment,
    pub targets: Vec<TargetSentiment>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slugs_are_ascii_lowercase() {
        assert!(Slug::parse("7pay").is_ok());
        assert!(Slug::parse("line-pay").is_ok());
        assert!(Slug::parse("PayPay").is_err());
        assert!(Slug::parse("").is_err());
        assert!(Slug::parse("ペイ").is_err());
    }

    #[test]
    fn labels_follow_scores() {
        assert_eq!(SentimentLabel::from_score(-0.5), SentimentLabel::Negative);
        assert_eq!(SentimentLabel::from_score(0.0), SentimentLabel::Neutral);
        assert_eq!(SentimentLabel::from_score(0.3), SentimentLabel::Positive);
    }
}

pub mod status;
