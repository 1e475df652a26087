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
    // Its own value: nested in the document it would exceed json!'s recursion limit.
    // The stream's ingest lease (issue 17, standby ingest); its own value: json! recursion.
    let ingest = json!({"type": ["object", "null"], "description": "The stream's ingest lease: the active ingest, its fencing token and the --standby ingests waiting for it; null when no ingest holds it",
        "properties": {"holder": {"type": "string"}, "token": {"type": "integer"}, "standby": {"type": "array", "items": {"type": "string"}}}});
    let restream = json!({"type": "array", "description": "Restream targets (--restream); the stream key is never shown", "items": {"type": "object",
        "required": ["target", "state", "since", "last_error", "bytes_sent", "seconds_sent", "restarts", "reinits", "dropped_fragments"], "properties": {
        "target": {"type": "string", "description": "The target URL with its stream key masked: rtmp://host/app/****"},
        "state": {"enum": ["connecting", "connected", "retrying", "failed", "stopped"]},
        "since": {"type": "string", "format": "date-time"}, "last_error": {"type": ["string", "null"]},
        "bytes_sent": {"type": "integer"}, "seconds_sent": {"type": "number", "description": "Media sent, over every attempt"},
        "restarts": {"type": "integer", "description": "After an exit or a stall"},
        "reinits": {"type": "integer", "description": "Because the stream's init section changed"},
        "dropped_fragments": {"type": "integer", "description": "Not sent because the target was behind"}}}});
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
                "summary": "Live playlist: sliding window, PDT on every segment, markers as EXT-X-DATERANGE; LL-HLS (EXT-X-PART, EXT-X-PRELOAD-HINT, EXT-X-SERVER-CONTROL) when the stream has parts, with blocking reload (Cache-Control: no-store) and delta updates",
                "parameters": [
                    p("stream", "Stream name"),
                    q("_HLS_msn", "Blocking reload: answer once segment _HLS_msn is in the playlist (decimal integer; more than 2 beyond the last segment: 400)"),
                    q("_HLS_part", "With _HLS_msn: ... and its part _HLS_part (beyond the Advance Part Limit: 400)"),
                    q("_HLS_skip", "YES or v2: Playlist Delta Update (EXT-X-SKIP; v2 also skips old date ranges)")
                ],
                "responses": {"200": m3u8, "400": err("Malformed or too far ahead _HLS_* directive"), "404": err("Unknown stream or no segments yet"), "503": err("Store unavailable, or the blocking reload waited 3 target durations")}
            }},
            "/hls/{stream}/vod.m3u8": {"get": {
                "summary": "VOD playlist (ENDLIST) over the retained segments overlapping [from, to)",
                "parameters": [p("stream", "Stream name"), q("from", "HLS seconds or RFC 3339"), q("to", "HLS seconds or RFC 3339")],
                "responses": {"200": m3u8, "400": err("Bad time or range"), "404": err("Unknown stream or no segments in range")}
            }},
            "/hls/{stream}/{file}": {"get": {
                "summary": "Segment (e<epoch>-<seq>.m4s, video/iso.segment), LL-HLS part (e<epoch>-<seq>.p<index>.m4s; the hinted part is held until written) or init file (e<epoch>-init.mp4, video/mp4); immutable, with ETag and Last-Modified; If-None-Match / If-Modified-Since, one Range: bytes= range and If-Range are honoured",
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
                        q("cursor", "next_cursor of the previous page"),
                        q("kind", "Only this kind (exact; 1-64 of a-z, 0-9, _ - .)"),
                        q("label", "Only labels starting with this text (case-sensitive, 1-256 characters)"),
                        q("tag", "Only markers carrying this tag (exact)"),
                        q("severity", "Only these severities: info, warning, critical, or a comma list (warning,critical)")
                    ],
                    "description": "Filters combine (all must hold); a value no marker could have is 400 invalid_parameter naming the parameter. A filtered call looks at no more than 10,000 markers of the range: a page may then hold fewer than `limit` markers (even none) with a `next_cursor` to continue from.",
                    "responses": {
                        "200": ok_json("A page of markers", json!({"type": "object", "required": ["stream", "markers", "next_cursor"], "properties": {
                            "stream": {"type": "string"}, "markers": {"type": "array", "items": marker.clone()}, "next_cursor": {"type": ["string", "null"]}}})),
                        "400": err("Bad parameter"), "404": err("Unknown stream"), "503": err("Store unavailable (Retry-After)")
                    }
                },
                "post": {
                    "summary": "Add a marker at an HLS, GEN, PTS or UTC time (snapped to the frame showing then, through the segment's frame table), or an array of up to 1,000 all or nothing; idempotent by id",
                    "description": "A JSON object adds one marker (body at most --body-limit). A JSON array adds 1 to 1,000 markers of the stream given by ?stream= (body at most 4 MiB, or --body-limit if larger), all or nothing: the first entry that fails is named in the error message as `markers[<index>] (id <id>): ...` with the code and status it would get alone (409 conflict for an id stored with other content), and nothing is stored. Each entry is idempotent by id; the answer is 201 when any marker was new, 200 when all existed, and each new marker goes out once on /markers/live.",
                    "security": auth.clone(),
                    "parameters": [stream.clone()],
                    "requestBody": {"required": true, "content": {"application/json": {"schema": {"oneOf": [
                        {"$ref": "#/components/schemas/NewMarker"},
                        {"type": "array", "minItems": 1, "maxItems": 1000, "items": {"$ref": "#/components/schemas/NewMarker"}}]}}}},
                    "responses": {
                        "201": ok_json("Created (an array: at least one new)", json!({"oneOf": [marker.clone(), {"$ref": "#/components/schemas/MarkerBatch"}]})),
                        "200": ok_json("The identical marker exists (an array: every one)", json!({"oneOf": [marker.clone(), {"$ref": "#/components/schemas/MarkerBatch"}]})),
                        "400": err("Invalid body"), "401": err("Missing or wrong token"), "403": err("Writes disabled: no token configured"),
                        "404": err("Unknown stream"), "409": err("Same id, different marker"), "413": err("Body too large"),
                        "408": err("The body did not arrive in time (request_timeout)"), "415": err("Not JSON"),
                        "503": err("Store unavailable or shutting down, or the time is past the media of a stream that publishes nothing now (no_video_yet): retry (Retry-After)")
                    }
                }
            },
            "/markers/live": {"get": {
                "summary": "Server-Sent Events: `event: marker` with a Marker as data, keep-alive comments; only markers passing the filters (as GET /markers)",
                "parameters": [stream.clone(), q("kind", "Only this kind"), q("label", "Only labels starting with this text"), q("tag", "Only markers carrying this tag"), q("severity", "Only these severities (comma list)")],
                "responses": {"200": {"description": "text/event-stream"}, "404": err("Unknown stream: no timeline yet (the configured default stream is always accepted)"), "503": err("Store unavailable")}
            }},
            "/markers/{id}": {
                "get": {"summary": "One marker", "parameters": [p("id", "Marker UUID"), stream.clone()],
                    "responses": {"200": ok_json("The marker", marker.clone()), "400": err("Bad id"), "404": err("No such marker")}},
                "delete": {"summary": "Delete a marker", "security": auth, "parameters": [p("id", "Marker UUID"), stream.clone()],
                    "responses": {"204": {"description": "Deleted"}, "401": err("Missing or wrong token"), "403": err("Writes disabled"), "404": err("No such marker")}}
            },
            "/preview/{stream}.gif": {"get": {
                "summary": "Live preview as an endless animated GIF for an <img> tag (GIF89a, loops for ever, one frame with a local palette per picture, never a trailer); the picture stream starts at the next picture. One encoder per stream, width and rate serves every viewer; a slow viewer loses pictures (hlsmark_preview_frames_dropped_total)",
                "parameters": [p("stream", "Stream name"), q("width", "64 to 1280 pixels; default the stream's preview width (480)"), q("fps", "1 to 15 pictures a second; default the stream's preview rate (10), never more")],
                "responses": {"200": {"description": "image/gif, endless"}, "400": err("Bad width or fps"), "404": err("Unknown stream (unknown_stream), no segment yet (no_media) or previews off for it (no_preview)"), "503": err("Too many viewers of this stream (too_many_viewers, Retry-After), or no picture came within 5 s: the source is down or ended (no_pictures, with its state)")}
            }},
            "/preview/{stream}.mjpeg": {"get": {
                "summary": "Live preview as Motion JPEG (multipart/x-mixed-replace; each part image/jpeg with Content-Length, written whole with its closing boundary)",
                "parameters": [p("stream", "Stream name"), q("width", "64 to 1280 pixels; default the stream's preview width (the JPEGs pass through unchanged)"), q("fps", "1 to 15 pictures a second")],
                "responses": {"200": {"description": "multipart/x-mixed-replace, endless"}, "400": err("Bad width or fps"), "404": err("Unknown stream (unknown_stream), no segment yet (no_media) or previews off for it (no_preview)"), "503": err("Too many viewers of this stream (too_many_viewers, Retry-After), or no picture came within 5 s: the source is down or ended (no_pictures, with its state)")}
            }},
            "/thumbnail/{stream}.jpg": {"get": {
                "summary": "The exact frame showing at t (snapped through the segment's frame table), decoded from the retained segment; cached. Headers: X-Hlsmark-Frame (seq, index, hls_90k), X-Hlsmark-Cache (hit, miss)",
                "parameters": [p("stream", "Stream name"), q("t", "Required: HLS seconds or RFC 3339"), q("width", "64 to 1280 pixels; default the video's own size")],
                "responses": {"200": {"description": "image/jpeg"}, "400": err("Missing or bad t, bad width"), "404": err("Unknown stream, or no retained video at t (no_frame)"), "503": err("Too many thumbnails being made (busy, Retry-After)")}
            }},
            "/thumbs/{stream}.vtt": {"get": {
                "summary": "The seek bar's thumbnails track (WebVTT): one cue per retained segment, spanning it exactly, whose payload is its tile ({stream}/{seq}.jpg#xywh=0,0,160,90, relative to this URL); the cue id is `{seq} hls_90k={start}..{end}` (exact ticks). Tiles are made in the background as segments finish",
                "parameters": [p("stream", "Stream name"), q("from", "HLS seconds or RFC 3339: segments ending after it (default: all retained)"), q("to", "HLS seconds or RFC 3339: segments starting before it"), q("seq", "Join sequence: cue times on that player's clock (as /markers?seq= gives client); default the HLS clock")],
                "responses": {"200": {"description": "text/vtt"}, "400": err("Bad from, to or seq"), "404": err("Unknown stream")}
            }},
            "/thumbs/{stream}/{seq}.jpg": {"get": {
                "summary": "The tile of segment seq: its first frame (a keyframe), 160x90 letterboxed JPEG; made at once when the background tiler has not made it yet. Header X-Hlsmark-Cache (hit, miss)",
                "parameters": [p("stream", "Stream name"), p("seq", "Segment sequence number")],
                "responses": {"200": {"description": "image/jpeg"}, "400": err("Bad seq"), "404": err("No retained segment seq (no_frame)"), "503": err("Too many pictures being made (busy)")}
            }},
            "/markers/{id}/thumbnail.jpg": {"get": {
                "summary": "The frame a marker sits on (as /thumbnail at the marker's hls time)",
                "parameters": [p("id", "Marker UUID"), stream.clone(), q("width", "64 to 1280 pixels")],
                "responses": {"200": {"description": "image/jpeg"}, "400": err("Bad id or width"), "404": err("No such marker, or its video left the retention (no_frame)"), "503": err("Busy (Retry-After)")}
            }},
            "/clips/{stream}.mp4": {"get": {
                "summary": "An exact clip of the archive as a standard MP4 (faststart: moov before mdat; plays in browsers, VLC, QuickTime), stream-copied from the retained segments: its first shown frame is the frame showing at from (an edit list starts the presentation there; decoding starts at the keyframe before it), its last the last frame starting before to; AAC audio kept, trimmed to the same instants by its own edit list. One Range: bytes= range (206). Header X-Hlsmark-Clip: start_90k, end_90k, frames, epoch, seq, audio",
                "parameters": [p("stream", "Stream name"), q("from", "Required: HLS seconds or RFC 3339"), q("to", "Required: HLS seconds or RFC 3339, after from; at most --clip-max-duration (10 min) later"), q("download", "1: Content-Disposition: attachment with a file name")],
                "responses": {"200": {"description": "video/mp4"}, "206": {"description": "video/mp4, one byte range"}, "400": err("Missing or bad from/to, to not after from (invalid_range), longer than --clip-max-duration (range_too_large)"), "404": err("Unknown stream, or nothing retained in the range (no_segments)"), "422": err("The range crosses a restart of the stream (clip_spans_restart) or misses segments (clip_has_gap)"), "503": err("--clip-max-concurrent clips are being made or sent (too_many_clips, Retry-After)")}
            }},
            "/markers/{id}/clip.mp4": {"get": {
                "summary": "A marker's clip (as /clips/{stream}.mp4): from its frame minus pad to the end of its span (at least its frame) plus pad, cut to the marker's epoch and the retention; with pad=0 the first shown frame is the marker's frame",
                "parameters": [p("id", "Marker UUID"), stream.clone(), q("pad", "Seconds before and after the marker's span, 0 to 60 (default 2)"), q("download", "1: Content-Disposition: attachment with a file name")],
                "responses": {"200": {"description": "video/mp4"}, "206": {"description": "video/mp4, one byte range"}, "400": err("Bad id, pad or download; longer than --clip-max-duration (range_too_large)"), "404": err("No such marker (marker_not_found), or its video left the retention (no_segments)"), "503": err("Too many clips at once (too_many_clips, Retry-After)")}
            }},
            "/streams": {"get": {
                "summary": "Every stream with its ingest state (starting, live, retrying, failed, stopped; stale when not reported for 15 s), last error, restarts, live edge and retained segments, sorted by name",
                "responses": {"200": ok_json("The streams", json!({"type": "object", "required": ["streams"], "properties": {
                    "streams": {"type": "array", "items": {"$ref": "#/components/schemas/Stream"}}}})), "503": err("Store unavailable (Retry-After)")}
            }},
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
                "MarkerBatch": {"type": "object", "required": ["stream", "created", "existing", "markers"], "properties": {
                    "stream": {"type": "string"}, "created": {"type": "integer"}, "existing": {"type": "integer"},
                    "markers": {"type": "array", "items": marker.clone(), "description": "In request order, each with its frame"}}},
                "Marker": {"type": "object", "required": ["id", "stream", "label", "kind", "gen", "hls", "hls_90k", "utc", "duration", "duration_90k", "severity", "color", "tags", "seq"], "properties": {
                    "id": {"type": "string", "format": "uuid"}, "stream": {"type": "string"}, "label": {"type": "string"}, "kind": {"type": "string"},
                    "gen": {"type": "number"}, "hls": {"type": "number"}, "hls_90k": {"type": "integer"}, "utc": {"type": "string", "format": "date-time"},
                    "duration": {"type": "number"}, "duration_90k": {"type": "integer"},
                    "severity": {"enum": ["info", "warning", "critical"]}, "color": {"type": ["string", "null"], "pattern": "^#[0-9a-f]{6}$"},
                    "tags": {"type": "array", "items": {"type": "string"}}, "seq": {"type": ["integer", "null"]},
                    "client": {"type": "number", "description": "Only with ?seq="}, "data": {"type": "object"},
                    "frame": {"$ref": "#/components/schemas/Frame", "description": "Answers of POST only: the frame the time landed on"}}},
                "NewMarker": {"type": "object", "required": ["label"], "additionalProperties": false, "properties": {
                    "id": {"type": "string", "format": "uuid"}, "label": {"type": "string", "minLength": 1, "maxLength": 256},
                    "kind": {"type": "string", "default": "manual"}, "hls": {"type": "number"}, "gen": {"type": "number"},
                    "pts": {"type": "number", "description": "Seconds of source presentation time (real sources)"},
                    "epoch": {"type": "integer", "minimum": 0, "description": "With pts: the epoch (source run) it belongs to; default the newest whose media holds it"},
                    "utc": {"type": "string", "format": "date-time"}, "duration": {"type": "number", "minimum": 0},
                    "severity": {"enum": ["info", "warning", "critical"], "default": "info"},
                    "color": {"type": "string", "pattern": "^#[0-9A-Fa-f]{6}$", "description": "#rrggbb (stored lower case; names are not accepted)"},
                    "tags": {"type": "array", "maxItems": 16, "items": {"type": "string", "pattern": "^[A-Za-z0-9_.:-]{1,32}$"}, "description": "A repeated tag counts once"},
                    "data": {"type": "object"}, "stream": {"type": "string", "description": "In an array: must be the batch's stream (?stream=) if given"}},
                    "description": "Exactly one of hls, gen, pts, utc."},
                "Frame": {"type": "object", "required": ["seq", "index", "hls", "hls_90k"], "properties": {
                    "seq": {"type": ["integer", "null"], "description": "Segment holding the frame (null: a real source's segment not published yet)"},
                    "index": {"type": ["integer", "null"], "description": "Index of the frame in its segment"},
                    "hls": {"type": "number"}, "hls_90k": {"type": "integer"}}},
                "Stream": {"type": "object", "required": ["name", "kind", "source", "state", "since", "updated", "stale", "last_error", "restarts", "epoch", "live_edge", "live_edge_90k", "segments", "playlist", "restream"], "properties": {
                    "name": {"type": "string"}, "kind": {"type": ["string", "null"], "description": "generator, file, follow, rtsp, http, v4l2; null without a status"},
                    "source": {"type": ["string", "null"], "description": "Source with secrets masked"},
                    "state": {"enum": ["starting", "live", "retrying", "failed", "stopped", null]},
                    "since": {"type": ["string", "null"], "format": "date-time"}, "updated": {"type": ["string", "null"], "format": "date-time"},
                    "stale": {"type": "boolean", "description": "The status was not rewritten for 15 s"},
                    "last_error": {"type": ["string", "null"]}, "restarts": {"type": "integer"}, "epoch": {"type": ["integer", "null"]},
                    "live_edge": {"type": ["number", "null"]}, "live_edge_90k": {"type": ["integer", "null"]},
                    "segments": {"type": "integer", "description": "Retained segments"}, "playlist": {"type": "string"},
                    "restream": restream,
                    "ingest": ingest}}
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
