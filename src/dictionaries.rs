//! The plain files in dictionaries/: user dictionary, services, categories, sentiment lexicon.
//! Built into the binary; a `dictionaries_dir` in the config replaces them with files on disk,
//! so they can be edited without recompiling.
use serde::Deserialize;
use std::path::Path;

#[derive(Debug, thiserror::Error)]
pub enum DictionaryError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("{file}: {reason}")]
    Parse { file: String, reason: String },
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServiceEntry {
    pub slug: String,
    pub name_ja: String,
    pub name_en: String,
    pub aliases: Vec<String>,
    #[serde(default)]
    pub exclusions: Vec<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CategoryEntry {
    pub slug: String,
    pub name_ja: String,
    pub name_en: String,
    pub terms: Vec<String>,
}

#[derive(Debug, Deserialize)]
struct ServicesFile {
    service: Vec<ServiceEntry>,
}

#[derive(Debug, Deserialize)]
struct CategoriesFile {
    category: Vec<CategoryEntry>,
}

/// The dictionaries, parsed.
#[derive(Debug, Clone)]
pub struct Dictionaries {
    userdic: String,
    pub services: Vec<ServiceEntry>,
    pub categories: Vec<CategoryEntry>,
    /// (term, polarity in [-1, 1])
    pub sentiment: Vec<(String, f64)>,
}

const USERDIC: &str = include_str!("../dictionaries/userdic.csv");
const SERVICES: &str = include_str!("../dictionaries/services.toml");
const CATEGORIES: &str = include_str!("../dictionaries/categories.toml");
const SENTIMENT: &str = include_str!("../dictionaries/sentiment.tsv");

impl Dictionaries {
    /// The copies built into the binary. They are checked by tests, so this cannot fail.
    pub fn builtin() -> Self {
        Self::parse(USERDIC, SERVICES, CATEGORIES, SENTIMENT)
            .unwrap_or_else(|e| panic!("built-in dictionaries are broken: {e}"))
    }

    /// Reads the four files from `dir`; a file that is missing there falls back to the built-in.
    pub fn load_dir(dir: &Path) -> Result<Self, DictionaryError> {
        let read = |name: &str, builtin: &'static str| -> Result<String, DictionaryError> {
            let path = dir.join(name);
            match std::fs::read_to_string(&path) {
                Ok(s) => Ok(s),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(builtin.to_string()),
                Err(source) => Err(DictionaryError::Read {
                    path: path.display().to_string(),
                    source,
                }),
            }
        };
        Self::parse(
            &read("userdic.csv", USERDIC)?,
            &read("services.toml", SERVICES)?,
            &read("categories.toml", CATEGORIES)?,
            &read("sentiment.tsv", SENTIMENT)?,
        )
    }

    pub fn parse(
        userdic: &str,
        services: &str,
        categories: &str,
        sentiment: &str,
    ) -> Result<Self, DictionaryError> {
        let services: ServicesFile =
            toml::from_str(services).map_err(|e| DictionaryError::Parse {
                file: "services.toml".into(),
                reason: e.to_string(),
            })?;
        let categories: CategoriesFile =
            toml::from_str(categories).map_err(|e| DictionaryError::Parse {
                file: "categories.toml".into(),
                reason: e.to_string(),
            })?;
        for slug in services
            .service
            .iter()
            .map(|s| &s.slug)
            .chain(categories.category.iter().map(|c| &c.slug))
        {
            crate::domain::Slug::parse(slug).map_err(|reason| DictionaryError::Parse {
                file: "services.toml/categories.toml".into(),
                reason,
            })?;
        }
        let mut lexicon = Vec::new();
        for (n, line) in sentiment.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let parsed = line.split_once('\t').and_then(|(term, score)| {
                let score: f64 = score.trim().parse().ok()?;
                (score.is_finite() && (-1.0..=1.0).contains(&score))
                    .then(|| (term.trim().to_string(), score))
            });
            match parsed {
                Some(entry) => lexicon.push(entry),
                None => {
                    return Err(DictionaryError::Parse {
                        file: "sentiment.tsv".into(),
                        reason: format!(
                            "line {}: expected `term<TAB>score` with score in [-1, 1]",
                            n + 1
                        ),
                    })
                }
            }
        }
        Ok(Self {
            userdic: userdic.to_string(),
            services: services.service,
            categories: categories.category,
            sentiment: lexicon,
        })
    }

    pub fn userdic(&self) -> &str {
        &self.userdic
    }

    pub fn service(&self, slug: &str) -> Option<&ServiceEntry> {
        self.services.iter().find(|s| s.slug == slug)
    }

    pub fn category(&self, slug: &str) -> Option<&CategoryEntry> {
        self.categories.iter().find(|c| c.slug == slug)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builtin_dictionaries_parse_and_name_the_fixed_slugs() {
        let d = Dictionaries::builtin();
        let services: Vec<_> = d.services.iter().map(|s| s.slug.as_str()).collect();
        assert_eq!(
            services,
            [
                "7pay",
                "paypay",
                "linepay",
                "merpay",
                "famipay",
                "dbarai",
                "aupay",
                "rakutenpay",
                "coincheck",
                "zaif"
            ]
        );
        let categories: Vec<_> = d.categories.iter().map(|c| c.slug.as_str()).collect();
        assert_eq!(
            categories,
            [
                "fraud",
                "outage",
                "leak",
                "security",
                "suspension",
                "compensation",
                "promotion",
                "response"
            ]
        );
        assert!(d.sentiment.len() > 20);
    }

    #[test]
    fn a_bad_lexicon_line_is_reported_with_its_number() {
        let err = Dictionaries::parse("", "service = []", "category = []", "# c\n良い\t2.0\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("line 2"), "{err}");
    }
}
