//! Benchmark baseline (bench/status.sh): the smallest actix-web server that returns the same
//! pre-compressed status bytes as kizashi, from memory, with the same headers and nothing else
//! (no routing table, no middleware, no state).
//!
//!     minimal_status ADDR DIR      # DIR from `kizashi export-status DIR`
use actix_web::http::header;
use actix_web::{web, App, HttpRequest, HttpResponse, HttpServer};
use std::collections::HashMap;
use std::sync::Arc;

struct Doc {
    content_type: &'static str,
    br: web::Bytes,
    etag: String,
}

#[actix_web::main]
async fn main() -> std::io::Result<()> {
    let mut args = std::env::args().skip(1);
    let (Some(addr), Some(dir)) = (args.next(), args.next()) else {
        eprintln!("usage: minimal_status ADDR DIR");
        std::process::exit(2);
    };
    let dir = std::path::PathBuf::from(dir);
    let mut docs = HashMap::new();
    for (path, file, content_type) in [
        (
            "/status",
            "status/index.html.br",
            "text/html; charset=utf-8",
        ),
        (
            "/api/v2/summary.json",
            "api/v2/summary.json.br",
            "application/json",
        ),
    ] {
        let br = std::fs::read(dir.join(file))?;
        let etag = format!("\"{:x}-br\"", br.len());
        docs.insert(
            path.to_string(),
            Doc {
                content_type,
                br: br.into(),
                etag,
            },
        );
    }
    let docs = Arc::new(docs);
    HttpServer::new(move || {
        let docs = docs.clone();
        App::new().default_service(web::to(move |req: HttpRequest| {
            let docs = docs.clone();
            async move {
                match docs.get(req.path()) {
                    Some(d) => HttpResponse::Ok()
                        .content_type(d.content_type)
                        .insert_header((header::CONTENT_ENCODING, "br"))
                        .insert_header((header::ETAG, d.etag.as_str()))
                        .insert_header((header::VARY, "Accept-Encoding"))
                        .insert_header((
                            header::CACHE_CONTROL,
                            "public, max-age=10, stale-while-revalidate=60",
                        ))
                        .body(d.br.clone()),
                    None => HttpResponse::NotFound().finish(),
                }
            }
        }))
    })
    .bind(addr)?
    .run()
    .await
}
