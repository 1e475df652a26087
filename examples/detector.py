#!/usr/bin/env python3
"""An example external detector for hlsmark (Python standard library only).

It does what an analytics service would: posts a marker for "something happened now" with the
bearer token, then reads back the markers of the last minute by time range.

    HLSMARK_URL=http://localhost:5000 HLSMARK_TOKEN=change-me ./examples/detector.py --label "person at door"

Prints the created marker and the queried range as JSON lines; exits non-zero with the server's
error message when a request fails.
"""

import argparse
import datetime as dt
import json
import os
import sys
import urllib.error
import urllib.parse
import urllib.request


def call(method, url, token=None, body=None):
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, method=method)
    req.add_header("Accept", "application/json")
    if data is not None:
        req.add_header("Content-Type", "application/json")
    if token:
        req.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return resp.status, json.loads(resp.read() or b"null")
    except urllib.error.HTTPError as e:
        try:
            err = json.loads(e.read())["error"]
            msg = f"{err['code']}: {err['message']}"
        except Exception:  # noqa: BLE001 - any non-JSON error body
            msg = str(e)
        sys.exit(f"detector: {method} {url} -> {e.code} {msg}")
    except urllib.error.URLError as e:
        sys.exit(f"detector: cannot reach {url}: {e.reason}")


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--url", default=os.environ.get("HLSMARK_URL", "http://localhost:5000"))
    p.add_argument("--token", default=os.environ.get("HLSMARK_TOKEN"))
    p.add_argument("--stream", default="live")
    p.add_argument("--label", default="detector: motion")
    p.add_argument("--kind", default="detector")
    p.add_argument("--duration", type=float, default=1.0, help="seconds")
    p.add_argument("--window", type=float, default=60.0, help="query the last N seconds")
    a = p.parse_args()
    base = a.url.rstrip("/")

    now = dt.datetime.now(dt.timezone.utc)
    marker = {
        "stream": a.stream,
        "label": a.label,
        "kind": a.kind,
        "utc": now.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
        "duration": a.duration,
        "data": {"source": "examples/detector.py", "score": 0.97},
    }
    status, created = call("POST", f"{base}/markers", a.token, marker)
    print(json.dumps({"created": created, "status": status}))

    frm = (now - dt.timedelta(seconds=a.window)).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    to = (now + dt.timedelta(seconds=5)).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    q = urllib.parse.urlencode({"stream": a.stream, "from": frm, "to": to, "limit": 1000})
    _, page = call("GET", f"{base}/markers?{q}")
    print(json.dumps({"range": {"from": frm, "to": to}, "markers": page["markers"]}))
    if not any(m["id"] == created["id"] for m in page["markers"]):
        sys.exit("detector: the marker just created is missing from the range query")


if __name__ == "__main__":
    main()
