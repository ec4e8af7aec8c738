//! JSON documents: JSON Feed (through feed-rs), Mastodon statuses, Misskey notes and Bluesky
//! posts (searchPosts and getPostThread). Authors are kept, so charts can count unique authors.
use super::feed::{parse_date, SourceCtx};
use super::CrawlError;
use crate::domain::{ItemKind, RawItem};
use crate::text::html_to_text;
use serde_json::Value;

/// Parses a JSON document by its shape.
pub fn parse_json(text: &str, ctx: &SourceCtx<'_>) -> Result<Vec<RawItem>, CrawlError> {
    let v: Value =
        serde_json::from_str(text).map_err(|e| CrawlError::Parse(format!("invalid JSON: {e}")))?;
    if v.get("version")
        .and_then(Value::as_str)
        .is_some_and(|s| s.contains("jsonfeed.org"))
    {
        let feed = feed_rs::parser::Builder::new()
            .id_generator(|_, _, _| String::new())
            .build()
            .parse(text.as_bytes())
            .map_err(|e| CrawlError::Parse(e.to_string()))?;
        return Ok(feed
            .entries
            .into_iter()
            .filter_map(|e| {
                let url = e.links.first().map(|l| l.href.clone())?;
                Some(RawItem {
                    source: ctx.name.to_string(),
                    guid: Some(e.id).filter(|g| !g.is_empty()),
                    url,
                    title: e
                        .title
                        .map(|t| html_to_text(&t.content))
                        .unwrap_or_default(),
                    body: html_to_text(
                        &e.content
                            .and_then(|c| c.body)
                            .or(e.summary.map(|s| s.content))
                            .unwrap_or_default(),
                    ),
                    published_at: e.published.or(e.updated),
                    author: e
                        .authors
                        .first()
                        .map(|a| a.name.clone())
                        .filter(|a| !a.is_empty()),
                    kind: ctx.item_kind,
                    bookmarks: None,
                    tags: Vec::new(),
                })
            })
            .collect());
    }
    if let Some(posts) = v.get("posts").and_then(Value::as_array) {
        return Ok(posts.iter().filter_map(|p| bluesky_post(p, ctx)).collect());
    }
    if let Some(post) = v.get("thread").and_then(|t| t.get("post")) {
        return Ok(bluesky_post(post, ctx).into_iter().collect());
    }
    let statuses = v
        .as_array()
        .or_else(|| v.get("statuses").and_then(Value::as_array))
        .ok_or_else(|| {
            CrawlError::NotAFeed(
                "JSON of an unknown shape (not JSON Feed, Mastodon, Misskey or Bluesky)".into(),
            )
        })?;
    Ok(statuses
        .iter()
        .filter_map(|s| {
            if s.get("account").is_some() && s.get("content").is_some() {
                mastodon_status(s, ctx)
            } else if s.get("user").is_some() && s.get("createdAt").is_some() {
                misskey_note(s, ctx)
            } else {
                None
            }
        })
        .collect())
}

fn str_of<'a>(v: &'a Value, path: &[&str]) -> Option<&'a str> {
    let mut cur = v;
    for k in path {
        cur = cur.get(k)?;
    }
    cur.as_str()
}

fn id_of(v: &Value) -> Option<String> {
    match v.get("id")? {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

fn social(ctx: &SourceCtx<'_>) -> ItemKind {
    // A JSON API is social by nature unless the source says otherwise.
    if ctx.item_kind == ItemKind::News {
        ItemKind::Social
    } else {
        ctx.item_kind
    }
}

fn mastodon_status(s: &Value, ctx: &SourceCtx<'_>) -> Option<RawItem> {
    // A boost carries the original status.
    let s = s.get("reblog").filter(|r| r.is_object()).unwrap_or(s);
    let url = str_of(s, &["url"]).or(str_of(s, &["uri"]))?.to_string();
    let body = html_to_text(str_of(s, &["content"]).unwrap_or(""));
    Some(RawItem {
        source: ctx.name.to_string(),
        guid: str_of(s, &["uri"]).map(String::from).or_else(|| id_of(s)),
        url,
        title: String::new(),
        body,
        published_at: str_of(s, &["created_at"]).and_then(|d| parse_date(d, ctx.tz)),
        author: str_of(s, &["account", "acct"]).map(String::from),
        kind: social(ctx),
        bookmarks: None,
        tags: Vec::new(),
    })
}

fn misskey_note(n: &Value, ctx: &SourceCtx<'_>) -> Option<RawItem> {
    let id = id_of(n)?;
    let url = str_of(n, &["url"])
        .or(str_of(n, &["uri"]))
        .map(String::from)
        .or_else(|| {
            let base = url::Url::parse(ctx.url?).ok()?;
            Some(format!(
                "{}://{}/notes/{id}",
                base.scheme(),
                base.host_str()?
            ))
        })?;
    let mut body = str_of(n, &["text"]).unwrap_or("").to_string();
    if let Some(cw) = str_of(n, &["cw"]) {
        body = format!("{cw}\n{body}");
    }
    Some(RawItem {
        source: ctx.name.to_string(),
        guid: Some(id),
        url,
        title: String::new(),
        body,
        published_at: str_of(n, &["createdAt"]).and_then(|d| parse_date(d, ctx.tz)),
        author: str_of(n, &["user", "username"]).map(String::from),
        kind: social(ctx),
        bookmarks: None,
        tags: Vec::new(),
    })
}

fn bluesky_post(p: &Value, ctx: &SourceCtx<'_>) -> Option<RawItem> {
    let uri = str_of(p, &["uri"])?;
    let handle = str_of(p, &["author", "handle"])?;
    let rkey = uri.rsplit('/').next()?;
    Some(RawItem {
        source: ctx.name.to_string(),
        guid: Some(uri.to_string()),
        url: format!("https://bsky.app/profile/{handle}/post/{rkey}"),
        title: String::new(),
        body: str_of(p, &["record", "text"]).unwrap_or("").to_string(),
        published_at: str_of(p, &["record", "createdAt"])
            .or(str_of(p, &["indexedAt"]))
            .and_then(|d| parse_date(d, ctx.tz)),
        author: Some(handle.to_string()),
        kind: social(ctx),
        bookmarks: None,
        tags: Vec::new(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const CTX: SourceCtx<'static> = SourceCtx {
        name: "m",
        item_kind: ItemKind::Social,
        tz: chrono_tz::Asia::Tokyo,
        url: Some("https://misskey.example/api/notes/search"),
    };

    #[test]
    fn mastodon_misskey_and_bluesky_shapes() {
        let mastodon = r#"[{"id":"1","uri":"https://m.example/users/a/statuses/1","url":"https://m.example/@a/1","created_at":"2019-07-03T01:00:00.000Z","content":"<p>7pay<br>こわい</p>","account":{"acct":"a"}}]"#;
        let it = parse_json(mastodon, &CTX).unwrap();
        assert_eq!(
            (it[0].body.as_str(), it[0].author.as_deref()),
            ("7pay\nこわい", Some("a"))
        );
        assert_eq!(
            it[0].published_at.unwrap().to_rfc3339(),
            "2019-07-03T01:00:00+00:00"
        );

        let misskey = r#"[{"id":"8abc","createdAt":"2019-07-03T01:00:00.000Z","text":"PayPayが使えない","cw":null,"user":{"username":"b"}}]"#;
        let it = parse_json(misskey, &CTX).unwrap();
        assert_eq!(it[0].url, "https://misskey.example/notes/8abc");
        assert_eq!(it[0].author.as_deref(), Some("b"));

        let bsky = r#"{"posts":[{"uri":"at://did:plc:x/app.bsky.feed.post/3k","author":{"handle":"c.bsky.social"},"record":{"text":"LINE Pay便利","createdAt":"2019-07-03T10:00:00+09:00"}}]}"#;
        let it = parse_json(bsky, &CTX).unwrap();
        assert_eq!(it[0].url, "https://bsky.app/profile/c.bsky.social/post/3k");
        assert_eq!(it[0].body, "LINE Pay便利");
    }

    #[test]
    fn unknown_json_is_not_a_feed() {
        assert!(matches!(
            parse_json(r#"{"hello":1}"#, &CTX),
            Err(CrawlError::NotAFeed(_))
        ));
        assert!(parse_json("{broken", &CTX).is_err());
    }
}
