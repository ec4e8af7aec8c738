//! The stored form of an item's tokens: compact text the indexer reads back without
//! re-segmenting. Most of a token is implied by its neighbours and by the original text, so
//! only what differs is written: a start relative to the previous token's end, a byte length,
//! a position step when it is not one, the normalized text only when it differs from the
//! original slice, the reading only when it is not the token's own kana in katakana.
//! Strings are length-prefixed, so no character needs escaping. About a fifth of the JSON
//! this replaced (rows written before are still read: they start with `{`).
//!
//! ```text
//! tokens := "t1;" list list
//! list   := COUNT ";" token*
//! token  := FLAGS "," LEN ["," START_STEP] ["," POSITION_STEP] ("," BYTES ":" STRING)* ";"
//! ```
use super::{IndexToken, StoredTokens};

const TEXT: u32 = 1;
const BASE: u32 = 2;
const READING: u32 = 4;
const START_STEP: u32 = 8;
const POSITION_STEP: u32 = 16;
/// The reading is the token's kana in katakana (particles, kana words): not written.
const KANA_READING: u32 = 32;

const MAGIC: &str = "t1;";

/// Tokens with their stored form, encoded once where the item is analyzed (on every core)
/// rather than inside the single write transaction.
#[derive(Debug, Clone, PartialEq)]
pub struct EncodedTokens {
    tokens: StoredTokens,
    stored: String,
}

impl EncodedTokens {
    /// `title` and `body` are the texts the tokens' offsets point into.
    pub fn new(tokens: StoredTokens, title: &str, body: &str) -> Self {
        let stored = tokens.encode(title, body);
        Self { tokens, stored }
    }

    pub fn tokens(&self) -> &StoredTokens {
        &self.tokens
    }

    /// What the `tokens` column holds.
    pub fn stored(&self) -> &str {
        &self.stored
    }
}

impl StoredTokens {
    /// The stored form; `title` and `body` are the original texts the offsets point into.
    pub fn encode(&self, title: &str, body: &str) -> String {
        let mut out = String::with_capacity(16 + 12 * (self.title.len() + self.body.len()));
        out.push_str(MAGIC);
        encode_list(&mut out, &self.title, title);
        encode_list(&mut out, &self.body, body);
        out
    }

    /// Reads either stored form back.
    pub fn decode(stored: &str, title: &str, body: &str) -> Result<Self, String> {
        if stored.starts_with('{') {
            return serde_json::from_str(stored).map_err(|e| e.to_string());
        }
        let mut r = Reader(
            stored
                .strip_prefix(MAGIC)
                .ok_or_else(|| "unknown token format".to_string())?,
        );
        let tokens = Self {
            title: decode_list(&mut r, title)?,
            body: decode_list(&mut r, body)?,
        };
        if !r.0.is_empty() {
            return Err("trailing bytes after the token lists".into());
        }
        Ok(tokens)
    }
}

/// The token's own kana in katakana, if it is written in kana.
fn katakana(s: &str) -> Option<String> {
    s.chars()
        .all(crate::text::is_kana_char)
        .then(|| crate::text::to_katakana(s))
}

fn encode_list(out: &mut String, tokens: &[IndexToken], original: &str) {
    use std::fmt::Write;
    let _ = write!(out, "{};", tokens.len());
    let (mut prev_end, mut prev_position) = (0i64, -1i64);
    for t in tokens {
        let step = t.start as i64 - prev_end;
        let position_step = t.position as i64 - prev_position;
        let text = (original.get(t.start..t.end) != Some(t.text.as_str())).then_some(&t.text);
        let reading = t
            .reading
            .as_ref()
            .filter(|r| katakana(&t.text).as_ref() != Some(*r));
        let mut flags = 0;
        flags |= if text.is_some() { TEXT } else { 0 };
        flags |= if t.base.is_some() { BASE } else { 0 };
        flags |= if reading.is_some() { READING } else { 0 };
        flags |= if t.reading.is_some() && reading.is_none() {
            KANA_READING
        } else {
            0
        };
        flags |= if step != 0 { START_STEP } else { 0 };
        flags |= if position_step != 1 { POSITION_STEP } else { 0 };
        let _ = write!(out, "{flags},{}", t.end - t.start);
        if step != 0 {
            let _ = write!(out, ",{step}");
        }
        if position_step != 1 {
            let _ = write!(out, ",{position_step}");
        }
        for s in [text, t.base.as_ref(), reading].into_iter().flatten() {
            let _ = write!(out, ",{}:{s}", s.len());
        }
        out.push(';');
        prev_end = t.end as i64;
        prev_position = t.position as i64;
    }
}

struct Reader<'a>(&'a str);

impl<'a> Reader<'a> {
    /// A signed number up to the next `,` or `;`, and that separator.
    fn number(&mut self) -> Result<(i64, char), String> {
        let end = self
            .0
            .find([',', ';'])
            .ok_or_else(|| "token list cut short".to_string())?;
        let n = self.0[..end]
            .parse()
            .map_err(|_| format!("bad number {:?}", &self.0[..end]))?;
        let sep = self.0.as_bytes()[end] as char;
        self.0 = &self.0[end + 1..];
        Ok((n, sep))
    }

    fn string(&mut self) -> Result<(&'a str, char), String> {
        let colon = self
            .0
            .find(':')
            .ok_or_else(|| "string without length".to_string())?;
        let len: usize = self.0[..colon]
            .parse()
            .map_err(|_| "bad string length".to_string())?;
        let rest = &self.0[colon + 1..];
        let s = rest
            .get(..len)
            .ok_or_else(|| "string cut short".to_string())?;
        let sep = rest[len..]
            .chars()
            .next()
            .filter(|c| matches!(c, ',' | ';'))
            .ok_or_else(|| "string not followed by a separator".to_string())?;
        self.0 = &rest[len + 1..];
        Ok((s, sep))
    }
}

fn decode_list(r: &mut Reader, original: &str) -> Result<Vec<IndexToken>, String> {
    let (count, sep) = r.number()?;
    if sep != ';' || count < 0 {
        return Err("bad token count".into());
    }
    // Never trust a count for an allocation larger than the input could describe.
    let mut out = Vec::with_capacity((count as usize).min(r.0.len() / 4 + 1));
    let (mut prev_end, mut prev_position) = (0i64, -1i64);
    for _ in 0..count {
        let (flags, sep) = r.number()?;
        let flags = u32::try_from(flags).map_err(|_| "bad flags".to_string())?;
        let mut sep = sep;
        let mut field = |sep: &mut char| -> Result<i64, String> {
            if *sep != ',' {
                return Err("token cut short".into());
            }
            let (n, s) = r.number()?;
            *sep = s;
            Ok(n)
        };
        let len = field(&mut sep)?;
        let step = if flags & START_STEP != 0 {
            field(&mut sep)?
        } else {
            0
        };
        let position_step = if flags & POSITION_STEP != 0 {
            field(&mut sep)?
        } else {
            1
        };
        let mut strings = [None, None, None];
        for (i, flag) in [TEXT, BASE, READING].into_iter().enumerate() {
            if flags & flag != 0 {
                if sep != ',' {
                    return Err("token cut short".into());
                }
                let (s, next) = r.string()?;
                strings[i] = Some(s.to_string());
                sep = next;
            }
        }
        if sep != ';' {
            return Err("token not closed".into());
        }
        // Offsets stay inside the original text and positions within u32, whatever the row
        // says (checked arithmetic: a damaged row is an error, never an overflow).
        let bad = || "offset or position out of range".to_string();
        let start = prev_end.checked_add(step).ok_or_else(bad)?;
        let end = start.checked_add(len).ok_or_else(bad)?;
        let position = prev_position.checked_add(position_step).ok_or_else(bad)?;
        if start < 0 || len < 0 || end > original.len() as i64 {
            return Err(bad());
        }
        if !(0..=i64::from(u32::MAX)).contains(&position) {
            return Err(bad());
        }
        let [text, base, reading] = strings;
        let text = match text {
            Some(t) => t,
            None => original
                .get(start as usize..end as usize)
                .ok_or_else(|| "offsets outside the text".to_string())?
                .to_string(),
        };
        let reading = match reading {
            Some(r) => Some(r),
            None if flags & KANA_READING != 0 => katakana(&text),
            None => None,
        };
        out.push(IndexToken {
            text,
            start: start as usize,
            end: end as usize,
            position: position as usize,
            base,
            reading,
        });
        prev_end = end;
        prev_position = position;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn token(text: &str, start: usize, end: usize, position: usize) -> IndexToken {
        IndexToken {
            text: text.into(),
            start,
            end,
            position,
            base: None,
            reading: None,
        }
    }

    #[test]
    fn tokens_round_trip_and_are_smaller_than_json() {
        let title = "ＰａｙＰａｙで不正利用";
        let body = "使えなかった は、";
        let tokens = StoredTokens {
            title: vec![
                IndexToken {
                    reading: Some("ペイペイ".into()),
                    ..token("paypay", 0, 18, 0)
                },
                IndexToken {
                    reading: Some("デ".into()),
                    ..token("で", 18, 21, 1)
                },
                IndexToken {
                    reading: Some("フセイ".into()),
                    ..token("不正", 21, 27, 2)
                },
                IndexToken {
                    reading: Some("リヨウ".into()),
                    ..token("利用", 27, 33, 3)
                },
            ],
            body: vec![
                IndexToken {
                    base: Some("使える".into()),
                    reading: Some("ツカエ".into()),
                    ..token("使え", 0, 6, 0)
                },
                IndexToken {
                    base: Some("ない".into()),
                    reading: Some("ナカッ".into()),
                    ..token("なかっ", 6, 15, 1)
                },
                // after a gap in text and position (a space and a dropped symbol)
                IndexToken {
                    reading: Some("ハ".into()),
                    ..token("は", 19, 22, 4)
                },
            ],
        };
        let stored = tokens.encode(title, body);
        assert_eq!(
            StoredTokens::decode(&stored, title, body),
            Ok(tokens.clone())
        );
        let json = serde_json::to_string(&tokens).unwrap();
        assert!(stored.len() * 2 < json.len(), "{stored} vs {json}");
        // Rows written before the compact form are still read.
        assert_eq!(StoredTokens::decode(&json, title, body), Ok(tokens));
    }

    #[test]
    fn damaged_token_text_is_an_error_not_a_panic() {
        let title = "決済";
        for bad in [
            "t1;",
            "t1;1;",
            "t1;1;0,6;",
            "t1;1;0,7;0;",
            "t1;1;1,6,99:x;0;",
            "t1;1;0,-6;0;",
            "t1;99999999999999;",
            // overflowing steps, offsets past the text, huge positions
            "t1;1;8,1,9223372036854775807;0;",
            "t1;1;1,9223372036854775807,1:x;0;",
            "t1;1;1,7,2:ab;0;",
            "t1;1;16,6,99999999999;0;",
            "x",
        ] {
            assert!(StoredTokens::decode(bad, title, "").is_err(), "{bad}");
        }
        assert!(StoredTokens::decode("t1;1;0,6;0;", title, "").is_ok());
    }

    proptest! {
        #[test]
        fn any_tokens_round_trip(
            title in "[a-zあ-んア-ン決済不正;:,0-9 ]{0,20}",
            raw in proptest::collection::vec(
                (0usize..64, 0usize..64, 0usize..4, proptest::option::of("[a-zあ-ん;:,]{0,4}"),
                 proptest::option::of("[ア-ン;:,ー]{0,4}"), "[a-zあ-ん;:,]{0,4}"),
                0..12,
            ),
        ) {
            let mut position = 0;
            let title_tokens: Vec<IndexToken> = raw
                .into_iter()
                .map(|(a, b, step, base, reading, text)| {
                    position += step;
                    let (start, end) = (a.min(b).min(title.len()), a.max(b).min(title.len()));
                    // Offsets inside a character keep their own text.
                    let text = title.get(start..end).map(String::from).unwrap_or(text);
                    IndexToken { text, start, end, position, base, reading }
                })
                .collect();
            let tokens = StoredTokens { title: title_tokens, body: Vec::new() };
            let stored = tokens.encode(&title, "");
            prop_assert_eq!(StoredTokens::decode(&stored, &title, ""), Ok(tokens));
        }

        #[test]
        fn any_stored_text_decodes_or_errs(s in "t1;[0-9,;:a-zア-ン-]{0,40}") {
            let _ = StoredTokens::decode(&s, "決済テスト", "");
        }
    }
}
