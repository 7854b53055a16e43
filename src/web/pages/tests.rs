//! The admin page's routes (redirects, content types, ETag revalidation, 404s, the
//! security headers), and the page's markup and script kept inside the
//! Content-Security-Policy: no inline script, handlers or styles.

use actix_web::http::header::{self, HeaderMap};
use actix_web::http::StatusCode;
use actix_web::{test as actix_test, App};

use super::{configure, AdminAssets};

/// GETs `path` from an app with the page's routes and the real security headers.
async fn get(
    path: &str,
    headers: &[(header::HeaderName, &str)],
) -> (StatusCode, HeaderMap, String) {
    let app = actix_test::init_service(
        App::new()
            .wrap(crate::web::security_headers())
            .configure(configure),
    )
    .await;
    let mut request = actix_test::TestRequest::get().uri(path);
    for (name, value) in headers {
        request = request.insert_header((name.clone(), *value));
    }
    let response = actix_test::call_service(&app, request.to_request()).await;
    let status = response.status();
    let headers = response.headers().clone();
    let body = actix_test::read_body(response).await;
    (status, headers, String::from_utf8_lossy(&body).into_owned())
}

fn header_of(headers: &HeaderMap, name: header::HeaderName) -> &str {
    headers
        .get(&name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_else(|| panic!("no {name} header in {headers:?}"))
}

#[actix_web::test]
async fn the_root_and_admin_without_a_slash_lead_to_the_page() {
    for path in ["/", "/admin"] {
        let (status, headers, _) = get(path, &[]).await;
        assert_eq!(status, StatusCode::FOUND, "GET {path}");
        assert_eq!(
            header_of(&headers, header::LOCATION),
            "/admin/",
            "GET {path}"
        );
    }
}

#[actix_web::test]
async fn the_page_is_index_html_under_the_security_headers() {
    let (status, headers, body) = get("/admin/", &[]).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        header_of(&headers, header::CONTENT_TYPE),
        "text/html; charset=utf-8"
    );
    assert!(body.contains("<script src=\"app.js\""), "{body}");
    let csp = header_of(&headers, header::CONTENT_SECURITY_POLICY);
    assert!(
        csp.contains("default-src 'none'") && csp.contains("script-src 'self'"),
        "{csp}"
    );
    assert_eq!(
        header_of(&headers, header::X_CONTENT_TYPE_OPTIONS),
        "nosniff"
    );
    assert_eq!(header_of(&headers, header::X_FRAME_OPTIONS), "DENY");
    // The page's own caching replaces the API's no-store.
    assert_eq!(header_of(&headers, header::CACHE_CONTROL), "no-cache");
}

#[actix_web::test]
async fn each_file_has_its_content_type_an_etag_and_no_cache() {
    for (path, expected) in [
        ("/admin/index.html", "text/html; charset=utf-8"),
        ("/admin/app.js", "text/javascript; charset=utf-8"),
        ("/admin/style.css", "text/css; charset=utf-8"),
        ("/admin/favicon.svg", "image/svg+xml"),
    ] {
        let (status, headers, body) = get(path, &[]).await;
        assert_eq!(status, StatusCode::OK, "GET {path}");
        assert_eq!(
            header_of(&headers, header::CONTENT_TYPE),
            expected,
            "GET {path}"
        );
        assert_eq!(
            header_of(&headers, header::CACHE_CONTROL),
            "no-cache",
            "GET {path}"
        );
        let etag = header_of(&headers, header::ETAG);
        assert!(
            etag.len() == 34 && etag.starts_with('"') && etag.ends_with('"'),
            "GET {path}: ETag {etag}"
        );
        assert!(!body.is_empty(), "GET {path}: empty body");
    }
}

#[actix_web::test]
async fn a_matching_if_none_match_is_answered_304_without_a_body() {
    let (_, headers, _) = get("/admin/app.js", &[]).await;
    let etag = header_of(&headers, header::ETAG).to_string();

    let (status, headers, body) = get("/admin/app.js", &[(header::IF_NONE_MATCH, &etag)]).await;
    assert_eq!(status, StatusCode::NOT_MODIFIED);
    assert_eq!(header_of(&headers, header::ETAG), etag);
    assert_eq!(header_of(&headers, header::CACHE_CONTROL), "no-cache");
    assert!(body.is_empty(), "a 304 with a body: {body}");

    // One of a list, and the weak form, match too.
    let list = format!("\"0000\", W/{etag}");
    let (status, _, _) = get("/admin/app.js", &[(header::IF_NONE_MATCH, &list)]).await;
    assert_eq!(status, StatusCode::NOT_MODIFIED);

    // Another file's tag does not.
    let (status, _, body) = get("/admin/style.css", &[(header::IF_NONE_MATCH, &etag)]).await;
    assert_eq!(status, StatusCode::OK);
    assert!(!body.is_empty());
}

#[actix_web::test]
async fn an_unknown_file_is_404_with_an_error_naming_it() {
    for path in [
        "/admin/nope.js",
        "/admin/../Cargo.toml",
        "/admin/%2e%2e/Cargo.toml",
    ] {
        let (status, headers, body) = get(path, &[]).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "GET {path}: {body}");
        assert!(
            header_of(&headers, header::CONTENT_TYPE).starts_with("application/json"),
            "GET {path}"
        );
        let body: serde_json::Value = serde_json::from_str(&body).expect("a JSON error");
        assert!(body["error"].as_str().is_some(), "GET {path}: {body}");
    }
}

#[actix_web::test]
async fn every_file_index_html_loads_is_served() {
    let index = page_file("index.html");
    let mut referenced = Vec::new();
    for tag in parse_tags(&index) {
        for (name, value) in &tag.attributes {
            if matches!(name.as_str(), "src" | "href") {
                if let Some(value) = value.as_deref().filter(|v| !v.starts_with('#')) {
                    referenced.push(value.to_string());
                }
            }
        }
    }
    assert!(
        referenced.contains(&"app.js".to_string()) && referenced.contains(&"style.css".to_string()),
        "{referenced:?}"
    );
    for file in referenced {
        let (status, _, _) = get(&format!("/admin/{file}"), &[]).await;
        assert_eq!(status, StatusCode::OK, "index.html loads {file}");
    }
}

#[test]
fn index_html_has_no_inline_script_handler_or_style() {
    let problems = csp_problems(&page_file("index.html"));
    assert!(problems.is_empty(), "index.html: {problems:#?}");
}

#[test]
fn the_markup_check_catches_what_the_csp_would_block() {
    for bad in [
        "<p><script>alert(1)</script></p>",
        "<script src=\"app.js\">alert(1)</script>",
        "<button onclick=\"go()\">x</button>",
        "<body ONLOAD=go()>",
        "<div style=\"color: red\">x</div>",
        "<style>p { color: red }</style>",
        "<a href=\"javascript:go()\">x</a>",
    ] {
        assert!(!csp_problems(bad).is_empty(), "not caught: {bad}");
    }
    let fine =
        "<!-- <script>x</script> --><script src=\"a.js\" defer></script><p title='a > b'>x</p>";
    assert!(csp_problems(fine).is_empty(), "{:?}", csp_problems(fine));
}

#[test]
fn the_script_builds_the_page_without_markup_from_strings_or_inline_styles() {
    for name in ["app.js", "charts.js"] {
        script_builds_without_markup(name);
    }
}

fn script_builds_without_markup(name: &str) {
    let script = page_file(name);
    for forbidden in [
        ".innerHTML",
        ".outerHTML",
        "insertAdjacentHTML",
        "document.write",
        "eval(",
        "new Function",
        ".style.",
        ".cssText",
        "setAttribute('style'",
        "setAttribute(\"style\"",
        "window.confirm",
        "alert(",
    ] {
        assert!(!script.contains(forbidden), "{name} uses {forbidden}");
    }
}

fn page_file(name: &str) -> String {
    let file = AdminAssets::get(name).unwrap_or_else(|| panic!("assets/admin/{name} is missing"));
    String::from_utf8(file.data.into_owned()).expect("UTF-8")
}

/// A start tag (or `/name` for an end tag) and its attributes.
#[derive(Debug)]
struct Tag {
    name: String,
    attributes: Vec<(String, Option<String>)>,
    /// Byte offset just after the tag's `>`.
    end: usize,
}

/// The tags of an HTML text, comments skipped: enough HTML to check our own page.
fn parse_tags(html: &str) -> Vec<Tag> {
    let bytes = html.as_bytes();
    let mut tags = Vec::new();
    let mut i = 0;
    while let Some(offset) = html[i..].find('<') {
        i += offset;
        if html[i..].starts_with("<!--") {
            i = html[i..].find("-->").map_or(html.len(), |end| i + end + 3);
            continue;
        }
        if html[i..].starts_with("<!") {
            i = html[i..].find('>').map_or(html.len(), |end| i + end + 1);
            continue;
        }
        let mut j = i + 1;
        let closing = bytes.get(j) == Some(&b'/');
        if closing {
            j += 1;
        }
        let name_start = j;
        while j < bytes.len() && (bytes[j].is_ascii_alphanumeric() || bytes[j] == b'-') {
            j += 1;
        }
        if j == name_start {
            i += 1;
            continue;
        }
        let mut name = html[name_start..j].to_ascii_lowercase();
        if closing {
            name.insert(0, '/');
        }
        let mut attributes = Vec::new();
        loop {
            while j < bytes.len() && (bytes[j].is_ascii_whitespace() || bytes[j] == b'/') {
                j += 1;
            }
            if j >= bytes.len() || bytes[j] == b'>' {
                break;
            }
            let start = j;
            while j < bytes.len() && !b" \t\r\n=>/".contains(&bytes[j]) {
                j += 1;
            }
            let attribute = html[start..j].to_ascii_lowercase();
            let mut value = None;
            if bytes.get(j) == Some(&b'=') {
                j += 1;
                match bytes.get(j) {
                    Some(&quote) if quote == b'"' || quote == b'\'' => {
                        let end = html[j + 1..]
                            .find(quote as char)
                            .map_or(html.len(), |e| j + 1 + e);
                        value = Some(html[j + 1..end].to_string());
                        j = (end + 1).min(html.len());
                    }
                    _ => {
                        let start = j;
                        while j < bytes.len() && !bytes[j].is_ascii_whitespace() && bytes[j] != b'>'
                        {
                            j += 1;
                        }
                        value = Some(html[start..j].to_string());
                    }
                }
            }
            attributes.push((attribute, value));
        }
        let end = (j + 1).min(html.len());
        tags.push(Tag {
            name,
            attributes,
            end,
        });
        i = end;
    }
    tags
}

/// What in `html` a `script-src 'self'; style-src 'self'` policy would block.
fn csp_problems(html: &str) -> Vec<String> {
    let tags = parse_tags(html);
    let mut problems = Vec::new();
    for (index, tag) in tags.iter().enumerate() {
        match tag.name.as_str() {
            "script" => {
                if !tag.attributes.iter().any(|(name, _)| name == "src") {
                    problems.push("a <script> without src".to_string());
                }
                let content_end = tags[index + 1..]
                    .iter()
                    .find(|t| t.name == "/script")
                    .map_or(html.len(), |t| html[..t.end].rfind('<').unwrap_or(t.end));
                let content = html.get(tag.end..content_end).unwrap_or("");
                if !content.trim().is_empty() {
                    problems.push(format!("inline script content: {}", content.trim()));
                }
            }
            "style" => problems.push("a <style> element".to_string()),
            _ => {}
        }
        for (name, value) in &tag.attributes {
            if name.starts_with("on") {
                problems.push(format!("<{}> has an inline handler {name}", tag.name));
            }
            if name == "style" {
                problems.push(format!("<{}> has a style attribute", tag.name));
            }
            if value
                .as_deref()
                .is_some_and(|v| v.trim().to_ascii_lowercase().starts_with("javascript:"))
            {
                problems.push(format!("<{}> has a javascript: URL in {name}", tag.name));
            }
        }
    }
    problems
}
