//! The admin page: static files from `assets/admin/`, embedded into the binary, served
//! under `/admin/`. Each answer carries an ETag (a hash of the file) and
//! `Cache-Control: no-cache`, so a browser revalidates and an upgrade shows at once
//! without reloading unchanged files. The page itself does everything through `/api/v1`.

use actix_web::http::{header, StatusCode};
use actix_web::{web, HttpRequest, HttpResponse, ResponseError};

use super::ApiError;

/// The files of the admin page. `debug-embed` embeds them in debug builds too, so tests
/// serve exactly what a release serves.
#[derive(rust_embed::Embed)]
#[folder = "assets/admin/"]
struct AdminAssets;

/// Where the page lives; `/` and `/admin` lead here.
const PAGE_ROOT: &str = "/admin/";

/// Mounts `/`, `/admin`, `/admin/` and `/admin/{file}`.
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/", web::get().to(to_page_root))
        .route("/admin", web::get().to(to_page_root))
        .route("/admin/", web::get().to(index))
        .route("/admin/{file:.*}", web::get().to(asset));
}

async fn to_page_root() -> HttpResponse {
    HttpResponse::Found()
        .insert_header((header::LOCATION, PAGE_ROOT))
        .finish()
}

async fn index(request: HttpRequest) -> HttpResponse {
    serve(&request, "index.html")
}

async fn asset(request: HttpRequest, file: web::Path<String>) -> HttpResponse {
    serve(&request, &file)
}

fn serve(request: &HttpRequest, name: &str) -> HttpResponse {
    let Some(file) = AdminAssets::get(name) else {
        return ApiError::new(
            StatusCode::NOT_FOUND,
            format!("the admin page has no file {name:?}"),
        )
        .error_response();
    };
    let etag = etag_of(&file.metadata.sha256_hash());
    // Each answer replaces the API's `no-store`: keep the file, but ask before using it.
    if matches_etag(request, &etag) {
        return HttpResponse::NotModified()
            .insert_header((header::ETAG, etag))
            .insert_header((header::CACHE_CONTROL, "no-cache"))
            .finish();
    }
    HttpResponse::Ok()
        .insert_header((header::ETAG, etag))
        .insert_header((header::CACHE_CONTROL, "no-cache"))
        .insert_header((header::CONTENT_TYPE, content_type_of(name)))
        .body(file.data.into_owned())
}

/// A strong ETag: the first 16 bytes of the file's SHA-256, in hex.
fn etag_of(sha256: &[u8; 32]) -> String {
    let hex: String = sha256[..16].iter().map(|b| format!("{b:02x}")).collect();
    format!("\"{hex}\"")
}

/// Whether `If-None-Match` names `etag` (or is `*`). Weak validators compare by their
/// opaque part, as RFC 9110 asks for `If-None-Match`.
fn matches_etag(request: &HttpRequest, etag: &str) -> bool {
    request
        .headers()
        .get_all(header::IF_NONE_MATCH)
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .map(|tag| tag.trim())
        .any(|tag| tag == "*" || tag.strip_prefix("W/").unwrap_or(tag) == etag)
}

/// The Content-Type for a file of the page, by its extension.
fn content_type_of(name: &str) -> &'static str {
    let extension = name.rsplit_once('.').map(|(_, ext)| ext).unwrap_or("");
    match extension.to_ascii_lowercase().as_str() {
        "html" => "text/html; charset=utf-8",
        "js" => "text/javascript; charset=utf-8",
        "css" => "text/css; charset=utf-8",
        "svg" => "image/svg+xml",
        "png" => "image/png",
        "ico" => "image/x-icon",
        "json" => "application/json",
        "txt" => "text/plain; charset=utf-8",
        _ => "application/octet-stream",
    }
}

#[cfg(test)]
mod tests;
