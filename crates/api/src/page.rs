//! The player page: `/`, `/assets/{file}` and top-level files (`/favicon.ico`, ...). By default
//! the page built into the binary (`frontend/dist` at compile time, see `build.rs`), so the binary
//! shows it wherever it runs; `--frontend-dir` serves a directory instead (page development).
//! Never a blank page: without a built page the answer says how to build one.

use std::path::{Path, PathBuf};

use actix_web::http::header::{self, HeaderValue};
use actix_web::{HttpRequest, HttpResponse, web};

use crate::error::ApiError;
use crate::state::AppState;

mod embedded {
    include!(concat!(env!("OUT_DIR"), "/page.rs"));
}

/// The page's HTML: always revalidated (it names the current bundles).
const HTML_CACHE: &str = "no-cache";
/// Bundles whose name carries a content hash (`app-57XBDDZ7.js`) never change.
const HASHED_CACHE: &str = "public, max-age=31536000, immutable";
/// Other files of the page.
const OTHER_CACHE: &str = "public, max-age=300";

fn not_built(how: &str) -> String {
    format!(
        r#"<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>hlsmark</title>
<style>body{{font:16px/1.5 system-ui,sans-serif;max-width:46rem;margin:3rem auto;padding:0 1rem}}code{{background:#eee;padding:.1rem .3rem}}</style>
</head><body>
<h1>hlsmark is running</h1>
<p>The player page has not been built yet. {how}</p>
<p>The API works already: <a href="/hls/live/index.m3u8">/hls/live/index.m3u8</a>,
<a href="/markers">/markers</a>, <a href="/timeline">/timeline</a>, <a href="/openapi.json">/openapi.json</a>.</p>
</body></html>
"#
    )
}

/// `GET /`: the player page, or a page saying how to build it.
pub async fn index(req: HttpRequest, state: web::Data<AppState>) -> HttpResponse {
    let res = match &state.cfg.frontend_dir {
        Some(dir) => from_dir(&req, dir, dir.join("index.html")).await,
        None => embedded_file(&req, "index.html"),
    };
    res.map_or_else(
        || {
            let how = match &state.cfg.frontend_dir {
                Some(dir) => format!(
                    "<code>--frontend-dir</code> is <code>{}</code>, which holds no <code>index.html</code>: build it with <code>npm --prefix frontend ci &amp;&amp; npm --prefix frontend run build</code>, then reload.",
                    html_escape(&dir.display().to_string())
                ),
                None => format!(
                    "This binary was built without it (<code>{}</code> did not exist). Build the page, then the binary: <code>npm --prefix frontend ci &amp;&amp; npm --prefix frontend run build &amp;&amp; cargo build --release -p hlsmark</code> (or serve a built page with <code>--frontend-dir DIR</code>).",
                    html_escape(embedded::SOURCE)
                ),
            };
            HttpResponse::Ok()
                .content_type("text/html; charset=utf-8")
                .insert_header((header::CACHE_CONTROL, "no-cache"))
                .body(not_built(&how))
        },
        |mut res| {
            res.headers_mut()
                .insert(header::CACHE_CONTROL, HeaderValue::from_static(HTML_CACHE));
            res
        },
    )
}

/// `GET /assets/{file}`: the page's bundles, strict names only.
pub async fn asset(
    req: HttpRequest,
    state: web::Data<AppState>,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    page_file(&req, &state, "assets/", &path.into_inner()).await
}

/// `GET /{file}`: top-level files of the page (`favicon.ico`, ...), strict names only.
pub async fn top_level_file(
    req: HttpRequest,
    state: web::Data<AppState>,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    page_file(&req, &state, "", &path.into_inner()).await
}

/// One file of the page by a plain name (no slashes, no leading dot, no `..`).
async fn page_file(
    req: &HttpRequest,
    state: &AppState,
    prefix: &str,
    name: &str,
) -> Result<HttpResponse, ApiError> {
    let ok = !name.starts_with('.')
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
        && !name.contains("..");
    let not_found = || ApiError::not_found("not_found", format!("no route for /{prefix}{name}"));
    if !ok {
        return Err(not_found());
    }
    let res = match &state.cfg.frontend_dir {
        Some(dir) => from_dir(req, dir, dir.join(prefix).join(name)).await,
        None => embedded_file(req, &format!("{prefix}{name}")),
    };
    let mut res = res.ok_or_else(not_found)?;
    let cache = if name == "index.html" {
        HTML_CACHE
    } else if hashed(name) {
        HASHED_CACHE
    } else {
        OTHER_CACHE
    };
    res.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static(cache));
    Ok(res)
}

/// esbuild's `[name]-[hash]`: 8 characters of `A-Z0-9` after the last `-`, before the extension.
fn hashed(name: &str) -> bool {
    let stem = name.split('.').next().unwrap_or(name);
    stem.rsplit_once('-').is_some_and(|(_, h)| {
        h.len() == 8
            && h.bytes()
                .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit())
    })
}

/// A file of the embedded page with its content type and ETag (304 when the client has it).
fn embedded_file(req: &HttpRequest, path: &str) -> Option<HttpResponse> {
    let (_, bytes, etag) = embedded::FILES.iter().find(|(p, _, _)| *p == path)?;
    let fresh = req
        .headers()
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|list| {
            list.split(',')
                .any(|t| t.trim().trim_start_matches("W/") == *etag)
        });
    let mut res = if fresh {
        HttpResponse::NotModified()
    } else {
        HttpResponse::Ok()
    };
    res.insert_header((header::ETAG, *etag));
    if fresh {
        return Some(res.finish());
    }
    Some(
        res.content_type(content_type(path))
            .body(bytes::Bytes::from_static(bytes)),
    )
}

/// A file of `--frontend-dir` (actix-files: content type, ETag, Last-Modified, ranges), opened
/// without following a symlink out of the directory (`files::open_inside`).
async fn from_dir(req: &HttpRequest, root: &Path, path: PathBuf) -> Option<HttpResponse> {
    let root = root.to_owned();
    let f = web::block(move || {
        let (file, _) = crate::files::open_inside(&root, &path)?;
        actix_files::NamedFile::from_file(file, path)
    })
    .await
    .ok()?
    .ok()?;
    Some(f.disable_content_disposition().into_response(req))
}

fn content_type(path: &str) -> &'static str {
    match path.rsplit('.').next().unwrap_or("") {
        "html" => "text/html; charset=utf-8",
        "js" | "mjs" => "text/javascript; charset=utf-8",
        "css" => "text/css; charset=utf-8",
        "json" | "map" => "application/json",
        "svg" => "image/svg+xml",
        "png" => "image/png",
        "ico" => "image/x-icon",
        "woff2" => "font/woff2",
        "txt" => "text/plain; charset=utf-8",
        _ => "application/octet-stream",
    }
}

fn html_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashed_names_and_types() {
        assert!(hashed("app-57XBDDZ7.css"));
        assert!(hashed("app-P72JNM3Q.js.LEGAL.txt"));
        assert!(!hashed("favicon.ico"));
        assert!(!hashed("app.js"));
        assert!(!hashed("my-app.js"));
        assert_eq!(
            content_type("assets/app-P72JNM3Q.js"),
            "text/javascript; charset=utf-8"
        );
        assert_eq!(content_type("index.html"), "text/html; charset=utf-8");
        assert_eq!(content_type("x"), "application/octet-stream");
    }

    #[test]
    fn the_embedded_table_has_no_source_maps() {
        assert!(embedded::FILES.iter().all(|(p, _, _)| !p.ends_with(".map")));
    }
}
