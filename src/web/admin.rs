//! Admin pages (admin role once accounts exist).
use super::error::WebError;
use super::i18n::{Labels, Lang};
use super::{css_name, State};
use crate::jobs::SourceStatus;
use actix_web::HttpResponse;
use askama::Template;

#[derive(Template)]
#[template(path = "admin/sources.html")]
struct SourcesPage<'a> {
    t: &'a Labels,
    css: &'a str,
    path: &'a str,
    sources: Vec<SourceStatus>,
}

pub async fn sources_ja(state: State) -> Result<HttpResponse, WebError> {
    sources(state, Lang::Ja).await
}
pub async fn sources_en(state: State) -> Result<HttpResponse, WebError> {
    sources(state, Lang::En).await
}

async fn sources(state: State, lang: Lang) -> Result<HttpResponse, WebError> {
    let page = SourcesPage {
        t: lang.labels(),
        css: css_name(),
        path: "/admin/sources",
        sources: crate::jobs::source_statuses(&state.store, state.clock.now()).await?,
    };
    Ok(HttpResponse::Ok()
        .content_type("text/html; charset=utf-8")
        .body(page.render()?))
}
