//! The bad-input table: every parameter with garbage -> the right 4xx with the JSON error shape,
//! and the server keeps serving.

use crate::common::{TOKEN, TestServer, request};

struct Case {
    method: &'static str,
    path: String,
    headers: Vec<(&'static str, String)>,
    body: Vec<u8>,
    status: u16,
    code: &'static str,
}

fn get(path: &str, status: u16, code: &'static str) -> Case {
    Case {
        method: "GET",
        path: path.to_owned(),
        headers: vec![],
        body: vec![],
        status,
        code,
    }
}

fn post(body: &str, status: u16, code: &'static str) -> Case {
    Case {
        method: "POST",
        path: "/markers".to_owned(),
        headers: vec![
            ("Authorization", format!("Bearer {TOKEN}")),
            ("Content-Type", "application/json".to_owned()),
        ],
        body: body.as_bytes().to_vec(),
        status,
        code,
    }
}

fn table() -> Vec<Case> {
    let mut t = vec![
        // GET /markers: times
        get("/markers?from=abc", 400, "invalid_time"),
        get("/markers?from=", 400, "invalid_time"),
        get("/markers?to=", 400, "invalid_time"),
        get("/markers?from=NaN", 400, "invalid_time"),
        get("/markers?from=nan", 400, "invalid_time"),
        get("/markers?from=inf", 400, "invalid_time"),
        get("/markers?to=-infinity", 400, "invalid_time"),
        get("/markers?from=1e400", 400, "invalid_time"),
        get("/markers?from=1e300", 400, "invalid_time"),
        get("/markers?to=-99999999999999999999", 400, "invalid_time"),
        get("/markers?from=12%2C5", 400, "invalid_time"),
        get("/markers?from=2026-13-01T00:00:00Z", 400, "invalid_time"),
        get("/markers?from=2026-11-24", 400, "invalid_time"),
        // A UTC bound before the stream began is the stream start (200), see routes/params.rs.
        get("/markers?from=10&to=5", 400, "invalid_range"),
        get(
            "/markers?from=2026-11-24T07:00:05Z&to=2026-11-24T07:00:01Z",
            400,
            "invalid_range",
        ),
        // limit, seq, cursor, stream, unknown parameters
        get("/markers?limit=0", 400, "invalid_limit"),
        get("/markers?limit=1001", 400, "invalid_limit"),
        get("/markers?limit=-1", 400, "invalid_limit"),
        get("/markers?limit=abc", 400, "invalid_limit"),
        get("/markers?limit=", 400, "invalid_limit"),
        get("/markers?limit=1e3", 400, "invalid_limit"),
        get(
            "/markers?limit=99999999999999999999999",
            400,
            "invalid_limit",
        ),
        get("/markers?seq=abc", 400, "invalid_parameter"),
        get("/markers?seq=-1", 400, "invalid_parameter"),
        get(
            "/markers?seq=18446744073709551615",
            400,
            "invalid_parameter",
        ),
        get("/markers?cursor=garbage", 400, "invalid_cursor"),
        get("/markers?cursor=", 400, "invalid_cursor"),
        get("/markers?cursor=1.zz", 400, "invalid_cursor"),
        get("/markers?stream=", 400, "invalid_stream"),
        get("/markers?stream=..%2Fetc", 400, "invalid_stream"),
        get("/markers?stream=a%20b", 400, "invalid_stream"),
        get(
            &format!("/markers?stream={}", "x".repeat(65)),
            400,
            "invalid_stream",
        ),
        get("/markers?stream=nope", 404, "unknown_stream"),
        get("/markers?form=1", 400, "invalid_query"),
        get("/markers?from=1&from=2", 400, "invalid_query"),
        // one marker
        get("/markers/not-a-uuid", 400, "invalid_id"),
        get(
            "/markers/00000000-0000-4000-8000-000000000001",
            404,
            "marker_not_found",
        ),
        get(
            "/markers/00000000-0000-4000-8000-000000000001?stream=..",
            400,
            "invalid_stream",
        ),
        // playlists
        get("/hls/nope/index.m3u8", 404, "unknown_stream"),
        get("/hls/bad.name/index.m3u8", 400, "invalid_stream"),
        get("/hls/live/vod.m3u8?from=abc", 400, "invalid_time"),
        get("/hls/live/vod.m3u8?from=inf", 400, "invalid_time"),
        get("/hls/live/vod.m3u8?from=5&to=1", 400, "invalid_range"),
        get("/hls/live/vod.m3u8?from=1000&to=2000", 404, "no_segments"),
        get("/hls/live/vod.m3u8?start=1", 400, "invalid_query"),
        // LL-HLS delivery directives (the fixture ends at seq 8): garbage, negative, huge,
        // repeated, part without msn, unknown _HLS_ keys, too far ahead -> 400 at once, no wait.
        get(
            "/hls/live/index.m3u8?_HLS_msn=abc",
            400,
            "invalid_hls_directive",
        ),
        get(
            "/hls/live/index.m3u8?_HLS_msn=",
            400,
            "invalid_hls_directive",
        ),
        get(
            "/hls/live/index.m3u8?_HLS_msn",
            400,
            "invalid_hls_directive",
        ),
        get(
            "/hls/live/index.m3u8?_HLS_msn=-1",
            400,
            "invalid_hls_directive",
        ),
        get(
            "/hls/live/index.m3u8?_HLS_msn=%2B5",
            400,
            "invalid_hls_directive",
        ),
        get(
            "/hls/live/index.m3u8?_HLS_msn=1.5",
            400,
            "invalid_hls_directive",
        ),
        get(
            "/hls/live/index.m3u8?_HLS_msn=1e3",
            400,
            "invalid_hls_directive",
        ),
        get(
            "/hls/live/index.m3u8?_HLS_msn=%00",
            400,
            "invalid_hls_directive",
        ),
        get(
            "/hls/live/index.m3u8?_HLS_msn=18446744073709551616",
            400,
            "invalid_hls_directive",
        ),
        get(
            &format!("/hls/live/index.m3u8?_HLS_msn={}", "9".repeat(4000)),
            400,
            "invalid_hls_directive",
        ),
        get(
            "/hls/live/index.m3u8?_HLS_msn=18446744073709551615",
            400,
            "hls_directive_too_far",
        ),
        get(
            "/hls/live/index.m3u8?_HLS_msn=11",
            400,
            "hls_directive_too_far",
        ),
        get(
            "/hls/live/index.m3u8?_HLS_msn=8&_HLS_msn=8",
            400,
            "invalid_hls_directive",
        ),
        get(
            "/hls/live/index.m3u8?_HLS_part=1",
            400,
            "invalid_hls_directive",
        ),
        get(
            "/hls/live/index.m3u8?_HLS_msn=8&_HLS_part=-1",
            400,
            "invalid_hls_directive",
        ),
        get(
            "/hls/live/index.m3u8?_HLS_msn=8&_HLS_part=x",
            400,
            "invalid_hls_directive",
        ),
        get(
            "/hls/live/index.m3u8?_HLS_msn=8&_HLS_part=1&_HLS_part=2",
            400,
            "invalid_hls_directive",
        ),
        get(
            "/hls/live/index.m3u8?_HLS_msn=9&_HLS_part=18446744073709551615",
            400,
            "hls_directive_too_far",
        ),
        get(
            "/hls/live/index.m3u8?_HLS_skip=yes",
            400,
            "invalid_hls_directive",
        ),
        get(
            "/hls/live/index.m3u8?_HLS_skip=V2",
            400,
            "invalid_hls_directive",
        ),
        get(
            "/hls/live/index.m3u8?_HLS_skip=",
            400,
            "invalid_hls_directive",
        ),
        get(
            "/hls/live/index.m3u8?_HLS_skip=YES&_HLS_skip=v2",
            400,
            "invalid_hls_directive",
        ),
        get(
            "/hls/live/index.m3u8?_HLS_foo=1",
            400,
            "invalid_hls_directive",
        ),
        get("/hls/nostream/index.m3u8?_HLS_msn=1", 404, "unknown_stream"),
        get("/hls/live/e1-00000099.p0.m4s", 404, "part_not_found"),
        get("/hls/live/e7-00000009.p0.m4s", 404, "part_not_found"),
        get("/hls/live/e1-00000009.p01.m4s", 404, "not_found"),
        // files: strict names, traversal in every spelling, aged out
        get("/hls/live/../../Cargo.toml", 404, "not_found"),
        get("/hls/live/..%2F..%2Fsecret.txt", 404, "not_found"),
        get("/hls/live/%2e%2e%2f%2e%2e%2fsecret.txt", 404, "not_found"),
        get("/hls/live/%2E%2E%2Fsecret.txt", 404, "not_found"),
        get("/hls/live/..%5csecret.txt", 404, "not_found"),
        get("/hls/live/%252e%252e%252fsecret.txt", 404, "not_found"),
        get("/hls/%2e%2e/secret.txt", 400, "invalid_stream"),
        get("/hls/%2e%2e/e0-init.mp4", 400, "invalid_stream"),
        get("/hls/live/%2Fetc%2Fpasswd", 404, "not_found"),
        get("/hls/live//etc/passwd", 404, "not_found"),
        get("/hls/live/e0-init.mp4%00", 404, "not_found"),
        get("/hls/live/e0-00000099.m4s", 404, "segment_not_found"),
        get("/hls/live/index.m3u8.bak", 404, "not_found"),
        get("/secret.txt", 404, "not_found"),
        get("/assets/..%2F..%2Fsecret.txt", 404, "not_found"),
        get("/assets/../../secret.txt", 404, "not_found"),
        get("/assets/.hidden", 404, "not_found"),
        get("/..%2Fsecret.txt", 404, "not_found"),
        // other routes
        get("/timeline?stream=nope", 404, "unknown_stream"),
        get("/debug/timeline?stream=nope", 404, "unknown_stream"),
        get("/markers/live?stream=nope", 404, "unknown_stream"),
        get("/timeline?x=1", 400, "invalid_query"),
        get("/nope", 404, "not_found"),
        get("/markers/live?stream=a/b", 400, "invalid_stream"),
        get("/markers/live?stream=%2F", 400, "invalid_stream"),
        // POST /markers: body
        post("", 400, "invalid_json"),
        post("{", 400, "invalid_json"),
        post("[]", 400, "invalid_json"),
        post("null", 400, "invalid_json"),
        post(r#"{"label":"x"}"#, 400, "invalid_time"),
        post(r#"{"label":"x","hls":1,"gen":1}"#, 400, "invalid_time"),
        post(r#"{"label":"x","hls":1e400}"#, 400, "invalid_json"),
        post(r#"{"label":"x","hls":1e300}"#, 400, "invalid_time"),
        post(r#"{"label":"x","hls":"1"}"#, 400, "invalid_json"),
        post(r#"{"label":"x","hls":NaN}"#, 400, "invalid_json"),
        post(r#"{"label":"x","hls":-100}"#, 400, "time_out_of_range"),
        post(r#"{"label":"x","gen":-100}"#, 400, "time_out_of_range"),
        post(r#"{"label":"x","utc":"yesterday"}"#, 400, "invalid_time"),
        post(
            r#"{"label":"x","utc":"1999-01-01T00:00:00Z"}"#,
            400,
            "time_out_of_range",
        ),
        post(r#"{"label":"","hls":1}"#, 400, "invalid_label"),
        post(r#"{"hls":1}"#, 400, "invalid_json"),
        post(
            r#"{"label":"x","hls":1,"kind":"Bad Kind"}"#,
            400,
            "invalid_kind",
        ),
        post(
            r#"{"label":"x","hls":1,"duration":-1}"#,
            400,
            "invalid_duration",
        ),
        post(
            r#"{"label":"x","hls":1,"duration":1e300}"#,
            400,
            "invalid_time",
        ),
        post(r#"{"label":"x","hls":1,"data":[1]}"#, 400, "invalid_data"),
        post(r#"{"label":"x","hls":1,"data":"s"}"#, 400, "invalid_data"),
        post(r#"{"label":"x","hls":1,"id":"xyz"}"#, 400, "invalid_json"),
        post(
            r#"{"label":"x","hls":1,"colour":"red"}"#,
            400,
            "invalid_json",
        ),
        post(
            r#"{"label":"x","hls":1,"stream":"../x"}"#,
            400,
            "invalid_stream",
        ),
        post(
            r#"{"label":"x","hls":1,"stream":"nope"}"#,
            404,
            "unknown_stream",
        ),
    ];
    t.push(post(
        &format!(r#"{{"label":"{}","hls":1}}"#, "x".repeat(257)),
        400,
        "invalid_label",
    ));
    t.push(post(
        &format!(
            r#"{{"label":"x","hls":1,"data":{{"k":"{}"}}}}"#,
            "y".repeat(20_000)
        ),
        400,
        "data_too_large",
    ));
    // Oversized body, wrong content type, token problems.
    let mut big = post(
        &format!(r#"{{"label":"{}"}}"#, "x".repeat(100_000)),
        413,
        "payload_too_large",
    );
    big.body.truncate(big.body.len());
    t.push(big);
    let mut wrong_type = post(r#"{"label":"x","hls":1}"#, 415, "unsupported_media_type");
    wrong_type.headers[1].1 = "text/plain".to_owned();
    t.push(wrong_type);
    let mut form = post("label=x&hls=1", 415, "unsupported_media_type");
    form.headers[1].1 = "application/x-www-form-urlencoded".to_owned();
    t.push(form);
    let mut no_token = post(r#"{"label":"x","hls":1}"#, 401, "unauthorized");
    no_token.headers.remove(0);
    t.push(no_token);
    let mut wrong = post(r#"{"label":"x","hls":1}"#, 401, "unauthorized");
    wrong.headers[0].1 = "Bearer wrong-token-0123456789".to_owned();
    t.push(wrong);
    let mut basic = post(r#"{"label":"x","hls":1}"#, 401, "unauthorized");
    basic.headers[0].1 = format!("Basic {TOKEN}");
    t.push(basic);
    // Unauthenticated garbage is refused for the token before the body is looked at.
    let mut garbage = post("{", 401, "unauthorized");
    garbage.headers.remove(0);
    t.push(garbage);
    t.push(Case {
        method: "DELETE",
        path: "/markers/00000000-0000-4000-8000-000000000001".to_owned(),
        headers: vec![],
        body: vec![],
        status: 401,
        code: "unauthorized",
    });
    t.push(Case {
        method: "PUT",
        path: "/markers".to_owned(),
        headers: vec![],
        body: vec![],
        status: 405,
        code: "method_not_allowed",
    });
    t.push(Case {
        method: "DELETE",
        path: "/hls/live/index.m3u8".to_owned(),
        headers: vec![],
        body: vec![],
        status: 405,
        code: "method_not_allowed",
    });
    t
}

#[test]
fn bad_input_table_answers_json_4xx_and_server_keeps_serving() {
    let s = TestServer::start();
    // A file next to the stream directories that no path may reach.
    std::fs::write(s.data_dir().join("secret.txt"), "TOP-SECRET-CONTENT-42").unwrap();
    std::fs::write(
        s.data_dir().join("hls").join("secret.txt"),
        "TOP-SECRET-CONTENT-42",
    )
    .unwrap();
    let mut failures = Vec::new();
    for c in table() {
        let headers: Vec<(&str, &str)> = c.headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let r = request(s.addr, c.method, &c.path, &headers, &c.body);
        let code = if r.status >= 400 {
            std::panic::catch_unwind(|| r.error_code())
                .unwrap_or_else(|_| "<not the JSON error shape>".into())
        } else {
            String::new()
        };
        if r.status != c.status || code != c.code || r.text().contains("TOP-SECRET") {
            failures.push(format!(
                "{} {} -> {} {code} (want {} {}): {}",
                c.method,
                c.path.chars().take(100).collect::<String>(),
                r.status,
                c.status,
                c.code,
                r.text().chars().take(200).collect::<String>()
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{} cases failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
    // Still serving.
    assert_eq!(s.get("/healthz").status, 200);
    assert_eq!(s.get("/markers?from=0&to=10").status, 200);
    // The largest accepted values convert without overflow.
    assert_eq!(
        s.post_marker(&serde_json::json!({"label": "m", "hls": 1}))
            .status,
        201
    );
    // A join sequence 31 years ahead still converts; one beyond 10,000 years of media is a 400,
    // never a wrapped-around number.
    let far = s.get("/markers?seq=1000000000");
    assert_eq!(far.status, 200, "{}", far.text());
    assert!(far.json()["markers"][0]["client"].as_f64().unwrap() < -9e8);
    for seq in ["1000000000000", "9223372036854775", "9223372036854775807"] {
        let r = s.get(&format!("/markers?seq={seq}"));
        assert_eq!(r.status, 400, "seq={seq}: {}", r.text());
    }
    assert_eq!(s.get("/markers?from=-3.15e11&to=3.15e11").status, 200);
    assert_eq!(
        s.get("/hls/live/vod.m3u8?from=-3.15e11&to=3.15e11").status,
        200
    );
    assert_eq!(s.get("/hls/live/index.m3u8").status, 200);
    assert_eq!(s.get("/hls/live/e0-00000000.m4s").status, 200);
}

#[test]
fn writes_without_a_configured_token_are_refused_with_a_hint() {
    let s = TestServer::start_with(None, true, None);
    let r = s.post_marker(&serde_json::json!({"label": "x", "hls": 1}));
    assert_eq!(r.status, 403);
    assert_eq!(r.error_code(), "writes_disabled");
    assert!(r.text().contains("HLSMARK_TOKEN"), "{}", r.text());
    let r = request(
        s.addr,
        "DELETE",
        "/markers/00000000-0000-4000-8000-000000000001",
        &[],
        b"",
    );
    assert_eq!(r.status, 403);
    // Reads still work.
    assert_eq!(s.get("/markers").status, 200);
}

/// The `Authorization` scheme is case-insensitive (RFC 9110 11.1): `bearer <token>`, as some HTTP
/// clients send it, was refused with 401 (found by QA with curl -H 'Authorization: bearer ...').
#[test]
fn the_bearer_scheme_is_case_insensitive() {
    let s = crate::common::TestServer::start();
    for scheme in ["bearer", "BEARER", "Bearer"] {
        let auth = format!("{scheme} {TOKEN}");
        let r = request(
            s.addr,
            "POST",
            "/markers",
            &[
                ("Authorization", &auth),
                ("Content-Type", "application/json"),
            ],
            br#"{"label": "x", "hls": 1}"#,
        );
        assert!(r.status == 201 || r.status == 200, "{scheme}: {}", r.text());
    }
    let r = request(
        s.addr,
        "POST",
        "/markers",
        &[
            ("Authorization", &format!("Basic {TOKEN}")),
            ("Content-Type", "application/json"),
        ],
        br#"{"label": "x", "hls": 1}"#,
    );
    assert_eq!(r.status, 401, "{}", r.text());
}

#[test]
fn cors_allows_listed_origins_and_the_page_itself_only() {
    let s = crate::common::TestServer::start_configured(None, true, Some(TOKEN), |c| {
        c.cors_origins = vec!["https://dash.example.com".to_owned()];
    });
    let preflight = |origin: &str| {
        request(
            s.addr,
            "OPTIONS",
            "/markers",
            &[
                ("Origin", origin),
                ("Access-Control-Request-Method", "POST"),
                (
                    "Access-Control-Request-Headers",
                    "authorization, content-type",
                ),
            ],
            b"",
        )
    };
    let ok = preflight("https://dash.example.com");
    assert_eq!(ok.status, 200, "{ok:?}");
    assert_eq!(
        ok.header("access-control-allow-origin"),
        Some("https://dash.example.com")
    );
    assert!(ok.header("access-control-allow-credentials").is_none());
    let evil = preflight("https://evil.example.com");
    assert!(evil.status >= 400, "{evil:?}");
    assert_eq!(evil.error_code(), "bad_request");
    assert!(evil.header("access-control-allow-origin").is_none());
    // A simple GET from a listed origin carries the header; from another origin it does not.
    let get = request(
        s.addr,
        "GET",
        "/markers",
        &[("Origin", "https://dash.example.com")],
        b"",
    );
    assert_eq!(
        get.header("access-control-allow-origin"),
        Some("https://dash.example.com")
    );
    // The page's own origin (what browsers send on a same-origin POST) is always allowed.
    let own = format!("http://{}", s.addr);
    let auth = format!("Bearer {TOKEN}");
    let post = request(
        s.addr,
        "POST",
        "/markers",
        &[
            ("Origin", &own),
            ("Authorization", &auth),
            ("Content-Type", "application/json"),
        ],
        br#"{"label":"same origin","hls":1}"#,
    );
    assert_eq!(post.status, 201, "{}", post.text());
}
