//! The OpenAPI 3.1 document of every route (hand-written: the contract is small and stable).

use serde_json::{Value, json};

fn q(name: &str, desc: &str) -> Value {
    json!({"name": name, "in": "query", "required": false, "description": desc, "schema": {"type": "string"}})
}

fn p(name: &str, desc: &str) -> Value {
    json!({"name": name, "in": "path", "required": true, "description": desc, "schema": {"type": "string"}})
}

fn err(desc: &str) -> Value {
    json!({"description": desc, "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}})
}

fn ok_json(desc: &str, schema: Value) -> Value {
    json!({"description": desc, "content": {"application/json": {"schema": schema}}})
}

/// Every GET operation also answers HEAD (same status and headers, no body).
fn add_head(doc: &mut Value) {
    let Some(paths) = doc.get_mut("paths").and_then(Value::as_object_mut) else {
        return;
    };
    for item in paths.values_mut() {
        let Some(get) = item.get("get") else { continue };
        let mut head = json!({
            "summary": format!("Headers of GET: {}", get["summary"].as_str().unwrap_or("")),
            "responses": get["responses"].clone(),
        });
        if let Some(params) = get.get("parameters") {
            head["parameters"] = params.clone();
        }
        if let Some(o) = item.as_object_mut() {
            o.insert("head".to_owned(), head);
        }
    }
}

/// The document served at `/openapi.json`.
pub fn document() -> Value {
    let mut doc = paths_and_schemas();
    add_head(&mut doc);
    doc
}

fn paths_and_schemas() -> Value {
    let stream = q(
        "stream",
        "Stream name (default `live`), 1-64 of [A-Za-z0-9_-].",
    );
    let marker = json!({"$ref": "#/components/schemas/Marker"});
    let m3u8 = json!({"description": "Playlist", "content": {"application/vnd.apple.mpegurl": {"schema": {"type": "string"}}}});
    let auth = json!([{"bearer": []}]);
    json!({
        "openapi": "3.1.0",
        "info": {
            "title": "hlsmark",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "Live HLS with a seekable timeline and frame-exact event markers. Times: `hls` and `gen` in seconds (exact values in `*_90k` ticks of 90 kHz), `utc` in RFC 3339. Every error is `{\"error\":{\"code\",\"message\"}}`."
        },
        "paths": {
            "/": {"get": {"summary": "Player page", "responses": {"200": {"description": "HTML"}}}},
            "/hls/{stream}/index.m3u8": {"get": {
                "summary": "Live playlist: sliding window, PDT on every segment, markers as EXT-X-DATERANGE",
                "parameters": [p("stream", "Stream name")],
                "responses": {"200": m3u8, "404": err("Unknown stream or no segments yet"), "503": err("Store unavailable")}
            }},
            "/hls/{stream}/vod.m3u8": {"get": {
                "summary": "VOD playlist (ENDLIST) over the retained segments overlapping [from, to)",
                "parameters": [p("stream", "Stream name"), q("from", "HLS seconds or RFC 3339"), q("to", "HLS seconds or RFC 3339")],
                "responses": {"200": m3u8, "400": err("Bad time or range"), "404": err("Unknown stream or no segments in range")}
            }},
            "/hls/{stream}/{file}": {"get": {
                "summary": "Segment (e<epoch>-<seq>.m4s, video/iso.segment) or init file (e<epoch>-init.mp4, video/mp4); immutable, with ETag and Last-Modified; If-None-Match / If-Modified-Since, one Range: bytes= range and If-Range are honoured",
                "parameters": [p("stream", "Stream name"), p("file", "File name")],
                "responses": {
                    "200": {"description": "Media"},
                    "206": {"description": "The requested byte range (Content-Range)"},
                    "304": {"description": "Not modified"},
                    "404": err("Unknown name or aged out"),
                    "416": err("Range starts past the end (Content-Range: bytes */length)")
                }
            }},
            "/markers": {
                "get": {
                    "summary": "Markers with from <= hls < to, in time order",
                    "parameters": [
                        q("from", "HLS seconds (12.5) or RFC 3339; default: the beginning"),
                        q("to", "HLS seconds or RFC 3339 (exclusive); default: the end"),
                        stream.clone(),
                        q("seq", "Media sequence the player joined at: adds `client` times"),
                        q("limit", "1 to 1000, default 100 (anything else: 400 invalid_limit)"),
                        q("cursor", "next_cursor of the previous page")
                    ],
                    "responses": {
                        "200": ok_json("A page of markers", json!({"type": "object", "required": ["stream", "markers", "next_cursor"], "properties": {
                            "stream": {"type": "string"}, "markers": {"type": "array", "items": marker.clone()}, "next_cursor": {"type": ["string", "null"]}}})),
                        "400": err("Bad parameter"), "404": err("Unknown stream"), "503": err("Store unavailable (Retry-After)")
                    }
                },
                "post": {
                    "summary": "Add a marker at an HLS, GEN or UTC time (snapped to the frame showing then); idempotent by id",
                    "security": auth.clone(),
                    "parameters": [stream.clone()],
                    "requestBody": {"required": true, "content": {"application/json": {"schema": {"$ref": "#/components/schemas/NewMarker"}}}},
                    "responses": {
                        "201": ok_json("Created", marker.clone()), "200": ok_json("The identical marker exists", marker.clone()),
                        "400": err("Invalid body"), "401": err("Missing or wrong token"), "403": err("Writes disabled: no token configured"),
                        "404": err("Unknown stream"), "409": err("Same id, different marker"), "413": err("Body too large"),
                        "408": err("The body did not arrive in time (request_timeout)"), "415": err("Not JSON"),
                        "503": err("Store unavailable or shutting down (Retry-After)")
                    }
                }
            },
            "/markers/live": {"get": {
                "summary": "Server-Sent Events: `event: marker` with a Marker as data, keep-alive comments",
                "parameters": [stream.clone()],
                "responses": {"200": {"description": "text/event-stream"}, "404": err("Unknown stream: no timeline yet (the configured default stream is always accepted)"), "503": err("Store unavailable")}
            }},
            "/markers/{id}": {
                "get": {"summary": "One marker", "parameters": [p("id", "Marker UUID"), stream.clone()],
                    "responses": {"200": ok_json("The marker", marker.clone()), "400": err("Bad id"), "404": err("No such marker")}},
                "delete": {"summary": "Delete a marker", "security": auth, "parameters": [p("id", "Marker UUID"), stream.clone()],
                    "responses": {"204": {"description": "Deleted"}, "401": err("Missing or wrong token"), "403": err("Writes disabled"), "404": err("No such marker")}}
            },
            "/timeline": {"get": {
                "summary": "Epochs, segment duration, live window and retained range of a stream",
                "parameters": [stream.clone()],
                "responses": {"200": ok_json("Timeline", json!({"type": "object"})), "404": err("Unknown stream")}
            }},
            "/debug/timeline": {"get": {"summary": "Plain-text view of epochs and the live window with every clock", "parameters": [stream],
                "responses": {"200": {"description": "text/plain"}, "404": err("Unknown stream")}}},
            "/healthz": {"get": {"summary": "Liveness", "responses": {"200": {"description": "ok"}}}},
            "/readyz": {"get": {"summary": "Readiness: the store answers", "responses": {"200": {"description": "ready"}, "503": err("Store unavailable")}}},
            "/metrics": {"get": {"summary": "Prometheus text metrics", "responses": {"200": {"description": "text/plain"}}}},
            "/openapi.json": {"get": {"summary": "This document", "responses": {"200": {"description": "OpenAPI 3.1"}}}},
            "/assets/{file}": {"get": {
                "summary": "A bundle of the built player page (<frontend-dir>/assets/); names of [A-Za-z0-9._-] only",
                "parameters": [p("file", "File name, e.g. index-1a2b3c.js")],
                "responses": {"200": {"description": "The file"}, "404": err("No such file, or a name outside the pattern")}
            }},
            "/{file}": {"get": {
                "summary": "A top-level file of the built player page (index.html, favicon.ico, ...); names of [A-Za-z0-9._-] only",
                "parameters": [p("file", "File name, e.g. index.html")],
                "responses": {"200": {"description": "The file"}, "404": err("No such file, or a name outside the pattern")}
            }}
        },
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
            "schemas": {
                "Error": {"type": "object", "required": ["error"], "properties": {"error": {"type": "object", "required": ["code", "message"], "properties": {
                    "code": {"type": "string"}, "message": {"type": "string"}}}}},
                "Marker": {"type": "object", "required": ["id", "stream", "label", "kind", "gen", "hls", "hls_90k", "utc", "duration", "duration_90k", "seq"], "properties": {
                    "id": {"type": "string", "format": "uuid"}, "stream": {"type": "string"}, "label": {"type": "string"}, "kind": {"type": "string"},
                    "gen": {"type": "number"}, "hls": {"type": "number"}, "hls_90k": {"type": "integer"}, "utc": {"type": "string", "format": "date-time"},
                    "duration": {"type": "number"}, "duration_90k": {"type": "integer"}, "seq": {"type": ["integer", "null"]},
                    "client": {"type": "number", "description": "Only with ?seq="}, "data": {"type": "object"}}},
                "NewMarker": {"type": "object", "required": ["label"], "additionalProperties": false, "properties": {
                    "id": {"type": "string", "format": "uuid"}, "label": {"type": "string", "minLength": 1, "maxLength": 256},
                    "kind": {"type": "string", "default": "manual"}, "hls": {"type": "number"}, "gen": {"type": "number"},
                    "utc": {"type": "string", "format": "date-time"}, "duration": {"type": "number", "minimum": 0},
                    "data": {"type": "object"}, "stream": {"type": "string"}},
                    "description": "Exactly one of hls, gen, utc."}
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The document and the router list the same paths, and every GET also has a HEAD.
    #[test]
    fn openapi_documents_every_route_and_head() {
        let doc = document();
        let paths = doc["paths"].as_object().unwrap();
        let mut documented: Vec<&str> = paths.keys().map(String::as_str).collect();
        let mut routed = crate::ROUTES.to_vec();
        documented.sort_unstable();
        routed.sort_unstable();
        assert_eq!(documented, routed);
        for (path, item) in paths {
            assert_eq!(
                item.get("get").is_some(),
                item.get("head").is_some(),
                "{path}: GET without HEAD or the reverse"
            );
        }
    }
}
