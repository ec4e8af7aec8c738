//! Incident text is Markdown, rendered to HTML and then sanitized. Raw HTML in the source is
//! shown as text, never passed through; links keep only http, https and mailto.
use pulldown_cmark::{html, Event, Options, Parser};
use std::collections::HashSet;

pub fn to_html(md: &str) -> String {
    let parser = Parser::new_ext(md, Options::ENABLE_STRIKETHROUGH | Options::ENABLE_TABLES).map(
        |e| match e {
            Event::Html(s) | Event::InlineHtml(s) => Event::Text(s),
            other => other,
        },
    );
    let mut out = String::new();
    html::push_html(&mut out, parser);
    ammonia::Builder::default()
        .url_schemes(HashSet::from(["http", "https", "mailto"]))
        .link_rel(Some("noopener noreferrer nofollow"))
        .clean(&out)
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::to_html;

    #[test]
    fn markdown_is_rendered_and_html_is_neutralised() {
        let rows = [
            ("**決済** が遅延", "<strong>決済</strong>"),
            ("<script>alert(1)</script>", "&lt;script&gt;"),
            (
                "[x](javascript:alert(1))",
                "<a rel=\"noopener noreferrer nofollow\">x</a>",
            ),
            ("<img src=x onerror=alert(1)>", "&lt;img"),
            (
                "[ok](https://example.com/)",
                "href=\"https://example.com/\"",
            ),
        ];
        for (md, want) in rows {
            let got = to_html(md);
            assert!(got.contains(want), "{md:?} gave {got:?}");
            assert!(!got.contains("<script"), "{md:?} gave {got:?}");
            assert!(!got.contains("<img"), "{md:?} gave {got:?}");
        }
    }
}
