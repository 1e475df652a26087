//! The player page built into the binary (no `--frontend-dir`): content types, ETag and 304,
//! caching, and the how-to-build page when the binary was built without it.

use crate::common::{TestServer, request};

#[test]
fn the_embedded_page_is_served_with_validators_and_caching() {
    let s = TestServer::start_configured(None, false, None, |c| c.frontend_dir = None);
    let page = s.get("/");
    assert_eq!(page.status, 200);
    assert_eq!(
        page.header("content-type"),
        Some("text/html; charset=utf-8")
    );
    assert_eq!(page.header("cache-control"), Some("no-cache"));
    let html = page.text();
    let built =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../frontend/dist/index.html");
    if !html.contains("<script") {
        // Built without the page: the answer says how to build it.
        assert!(html.contains("npm --prefix frontend ci"), "{html}");
        assert!(html.contains("cargo build"), "{html}");
        assert!(!built.exists(), "dist exists but was not embedded: rebuild");
        return;
    }
    assert_eq!(
        html,
        std::fs::read_to_string(&built).unwrap(),
        "the page as built"
    );
    let etag = page.header("etag").unwrap().to_owned();
    let again = request(s.addr, "GET", "/", &[("If-None-Match", &etag)], b"");
    assert_eq!(again.status, 304);
    assert!(again.body.is_empty());
    // Its bundles (content-hashed names): immutable.
    let js = html
        .split('"')
        .find(|p| p.starts_with("/assets/") && p.ends_with(".js"))
        .unwrap_or_else(|| panic!("no script in {html}"));
    let r = s.get(js);
    assert_eq!(r.status, 200, "{js}");
    assert_eq!(
        r.header("content-type"),
        Some("text/javascript; charset=utf-8")
    );
    assert_eq!(
        r.header("cache-control"),
        Some("public, max-age=31536000, immutable")
    );
    assert!(r.body.len() > 1000);
    let css = html
        .split('"')
        .find(|p| p.starts_with("/assets/") && p.ends_with(".css"))
        .unwrap();
    assert_eq!(
        s.get(css).header("content-type"),
        Some("text/css; charset=utf-8")
    );
    // Source maps stay out of the binary; unknown names are JSON 404s.
    assert_eq!(s.get(&format!("{js}.map")).error_code(), "not_found");
    assert_eq!(s.get("/assets/nope.js").error_code(), "not_found");
    assert_eq!(s.get("/assets/..%2f..%2fCargo.toml").status, 404);
}
