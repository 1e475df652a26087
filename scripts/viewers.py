#!/usr/bin/env python3
"""N simulated HLS players against one live playlist (Python standard library only).

LL mode (default) behaves like an LL-HLS player (hls.js lowLatencyMode): one connection holds a
blocking playlist reload (_HLS_msn/_HLS_part of the part after the last listed one), another
fetches the hinted part as soon as it is hinted (the server holds it until the part is written),
then the next, and so on. Plain mode behaves like a classic player: reload the playlist every half
target duration (no directives), fetch each new segment.

A part's (segment's) delay for one viewer is when that viewer had all its bytes minus when the
first viewer had them: what the server adds under load. A stall is a media request that failed or
took longer than 3 part (target) durations. Prints one JSON line with p50/p95/p99 delays, stalls,
bytes per second and, with --pid, the server's CPU seconds per viewer-second and RSS.

  scripts/viewers.py --url http://127.0.0.1:5000/hls/live/index.m3u8 -n 1000 -t 30 --procs 4 --pid PID

One Python process runs out of CPU before the server does (about 400 LL viewers per core), so
--procs N runs the viewers in N worker processes (viewers split evenly, joined over the same ramp)
and merges their records: CLOCK_MONOTONIC is one clock for every process, so "first viewer to
have a part" is taken across all of them. Every worker stops at the same instant; the whole run
is bounded by --ramp + 1 s + --seconds + 5 s.
"""

import argparse
import asyncio
import json
import os
import re
import subprocess
import sys
import time
import urllib.parse

ATTR = re.compile(r'([A-Z0-9-]+)=("[^"]*"|[^,]*)')


def debug(msg):
    if os.environ.get("VIEWERS_DEBUG"):
        print(msg, file=sys.stderr)


def attrs(line):
    return {k: v.strip('"') for k, v in ATTR.findall(line.split(":", 1)[1])}


class Discarded:
    """A media body that was counted, not kept (the viewers only need its size)."""

    def __init__(self, n):
        self.n = n

    def __len__(self):
        return self.n

    def __getitem__(self, _):
        return b""


class _Http(asyncio.Protocol):
    """One keep-alive HTTP/1.1 connection, one request at a time, Content-Length bodies. A body
    that is not kept is only counted as it arrives: a Python viewer process then moves about 3x the
    bytes per CPU second of StreamReader.readexactly (which copies every body twice)."""

    def __init__(self):
        self.transport = None
        self.waiter = None
        self.head = bytearray()
        self.in_body = False
        self.need = 0
        self.size = 0
        self.status = 0
        self.keep = True
        self.body = None

    def connection_made(self, transport):
        self.transport = transport

    def start(self, request, keep):
        self.waiter = asyncio.get_running_loop().create_future()
        self.head.clear()
        self.in_body = False
        self.keep = keep
        self.transport.write(request)
        return self.waiter

    def data_received(self, data):
        if self.waiter is None or self.waiter.done():
            return
        if not self.in_body:
            self.head += data
            i = self.head.find(b"\r\n\r\n")
            if i < 0:
                return
            lines = self.head[:i].decode("latin-1").split("\r\n")
            self.status = int(lines[0].split()[1])
            self.need = 0
            for l in lines[1:]:
                if l[:15].lower() == "content-length:":
                    self.need = int(l.split(":", 1)[1])
            data = bytes(self.head[i + 4:])
            self.in_body = True
            self.size = self.need
            self.body = bytearray() if self.keep else None
        if self.body is not None:
            self.body += data
        self.need -= len(data)
        if self.need <= 0:
            body = bytes(self.body) if self.body is not None else Discarded(self.size)
            self.waiter.set_result((self.status, body))

    def connection_lost(self, exc):
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_exception(ConnectionError("connection closed"))
        self.transport = None


class Conn:
    """One keep-alive HTTP/1.1 connection (GET only). keep_body=False: bodies are counted only."""

    def __init__(self, host, port, keep_body=True):
        self.host, self.port = host, port
        self.keep = keep_body
        self.proto = None

    async def get(self, path, timeout):
        for attempt in (0, 1):
            try:
                if self.proto is None or self.proto.transport is None:
                    _, self.proto = await asyncio.get_running_loop().create_connection(_Http, self.host, self.port)
                req = f"GET {path} HTTP/1.1\r\nHost: {self.host}\r\n\r\n".encode()
                return await asyncio.wait_for(self.proto.start(req, self.keep), timeout)
            except (ConnectionError, OSError):
                self.close()
                if attempt:
                    raise
            except asyncio.TimeoutError:
                self.close()
                raise

    def close(self):
        if self.proto is not None and self.proto.transport is not None:
            self.proto.transport.close()
        self.proto = None


class Stats:
    def __init__(self):
        self.first = {}  # media URI -> first completion time
        self.done = []  # (uri, time)
        self.stalls = 0
        self.errors = 0
        self.bytes = 0
        self.requests = 0


def parse_playlist(text):
    """(media sequence, [segment uris], [(msn, part index, uri)], hint uri, part target, target)."""
    msn = 0
    segs, parts = [], []
    hint = None
    part_target = None
    target = 1.0
    seq = None
    idx = 0
    for line in text.splitlines():
        if line.startswith("#EXT-X-MEDIA-SEQUENCE:"):
            msn = int(line.split(":")[1])
            seq = msn
        elif line.startswith("#EXT-X-TARGETDURATION:"):
            target = float(line.split(":")[1])
        elif line.startswith("#EXT-X-PART-INF:"):
            part_target = float(attrs(line)["PART-TARGET"])
        elif line.startswith("#EXT-X-SKIP:"):
            seq += int(attrs(line)["SKIPPED-SEGMENTS"])
        elif line.startswith("#EXT-X-PART:"):
            parts.append((seq, idx, attrs(line)["URI"]))
            idx += 1
        elif line.startswith("#EXT-X-PRELOAD-HINT:"):
            a = attrs(line)
            if a.get("TYPE") == "PART":
                hint = a["URI"]
        elif line and not line.startswith("#"):
            segs.append((seq, line))
            seq += 1
            idx = 0
    return segs, parts, hint, part_target, target


def next_position(segs, parts, hint_index_of):
    """The (msn, part) a blocking reload asks for: the part after the last listed one."""
    if parts:
        s, i, _ = parts[-1]
        last_seg = segs[-1][0] if segs else -1
        if s == last_seg:  # newest complete segment's final part: next is part 0 of the next one
            return s + 1, 0
        return s, i + 1
    return (segs[-1][0] + 1 if segs else 0), 0


async def ll_viewer(base, path, host, port, stats, stop, started):
    pl, media = Conn(host, port), Conn(host, port, keep_body=False)
    st, body = await pl.get(path, 10)
    segs, parts, hint, pt, target = parse_playlist(body.decode())
    if pt is None:
        raise SystemExit("the playlist has no parts: is LL-HLS on (--part-duration)?")
    limit = 3 * max(pt, 0.2) + 0.5
    fetched = set(u for _, _, u in parts)
    while not stop.is_set():
        msn, part = next_position(segs, parts, None)
        q = f"{path}?_HLS_msn={msn}&_HLS_part={part}"
        reload = asyncio.ensure_future(pl.get(q, 3 * target + 2))
        if hint and hint not in fetched:
            t0 = time.monotonic()
            try:
                s, b = await media.get(base + hint, limit)
                stats.requests += 1
                now = time.monotonic()
                if s == 200:
                    stats.bytes += len(b)
                    stats.first.setdefault(hint, now)
                    stats.done.append((hint, now))
                    fetched.add(hint)
                else:
                    stats.errors += 1
                    if os.environ.get("VIEWERS_DEBUG"):
                        print(s, hint, b[:200], file=sys.stderr)
                if now - t0 > limit and now > started:
                    stats.stalls += 1
                    debug(f"slow hinted part {hint}: {now - t0:.3f} s")
            except Exception as e:
                if time.monotonic() > started:
                    stats.stalls += 1
                debug(f"hinted part {hint} failed: {e!r}")
        try:
            s, b = await reload
            stats.requests += 1
        except Exception:
            stats.errors += 1
            await asyncio.sleep(pt)
            continue
        if s != 200:
            stats.errors += 1
            if os.environ.get("VIEWERS_DEBUG"):
                print(s, q, b[:200], file=sys.stderr)
            await asyncio.sleep(pt)
            continue
        segs, parts, hint, pt, target = parse_playlist(b.decode())
        # Listed parts this viewer has not had (it joined late, or a hint was not taken).
        for _, _, u in parts[-2:]:
            if u not in fetched:
                s, b = await media.get(base + u, limit)
                stats.requests += 1
                now = time.monotonic()
                if s == 200:
                    stats.bytes += len(b)
                    stats.first.setdefault(u, now)
                    stats.done.append((u, now))
                fetched.add(u)
    pl.close()
    media.close()


async def plain_viewer(base, path, host, port, stats, stop, started):
    pl, media = Conn(host, port), Conn(host, port, keep_body=False)
    fetched = None
    while not stop.is_set():
        t = time.monotonic()
        try:
            s, b = await pl.get(path, 10)
            stats.requests += 1
        except Exception:
            stats.errors += 1
            await asyncio.sleep(0.5)
            continue
        segs, _, _, _, target = parse_playlist(b.decode())
        uris = [u for _, u in segs]
        if fetched is None:
            fetched = set(uris[:-1])  # join at the newest segment
        for u in uris:
            if u in fetched:
                continue
            t0 = time.monotonic()
            try:
                s, body = await media.get(base + u, 3 * target)
                stats.requests += 1
                now = time.monotonic()
                if s == 200:
                    stats.bytes += len(body)
                    stats.first.setdefault(u, now)
                    stats.done.append((u, now))
                else:
                    stats.errors += 1
            except Exception:
                stats.stalls += 1
            fetched.add(u)
        await asyncio.sleep(max(0.0, target / 2 - (time.monotonic() - t)))
    pl.close()
    media.close()


def proc_cpu(pids):
    """(CPU seconds, RSS bytes) summed over the processes (e.g. nginx's master and workers)."""
    cpu = rss = 0
    for pid in pids:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        cpu += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
        rss += int(fields[21]) * os.sysconf("SC_PAGE_SIZE")
    return cpu, rss


def pct(xs, p):
    if not xs:
        return None
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(p / 100 * len(xs)))]


def parse_args(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--url", required=True, help="live playlist URL (http://host:port/hls/<stream>/index.m3u8)")
    ap.add_argument("-n", "--viewers", type=int, default=100)
    ap.add_argument("-t", "--seconds", type=float, default=20, help="measured seconds (after the ramp)")
    ap.add_argument("--mode", choices=["ll", "plain"], default="ll")
    ap.add_argument("--ramp", type=float, default=2.0, help="seconds over which viewers join")
    ap.add_argument("--procs", type=int, default=1, help="worker processes the viewers are split over")
    ap.add_argument("--pid", type=lambda v: [int(x) for x in v.split(",")],
                    help="server process(es) to measure, comma-separated (CPU and RSS summed)")
    # Internal: one worker of --procs (prints its raw records as JSON).
    ap.add_argument("--worker-start", type=float, help=argparse.SUPPRESS)
    return ap.parse_args(argv)


async def worker(a, t_ramp):
    """Runs a.viewers viewers: join over [t_ramp, t_ramp + ramp], measure [t0, t0 + seconds]."""
    u = urllib.parse.urlsplit(a.url)
    host, port = u.hostname, u.port or 80
    base = u.path.rsplit("/", 1)[0] + "/"
    stats, stop = Stats(), asyncio.Event()
    viewer = ll_viewer if a.mode == "ll" else plain_viewer
    t0 = t_ramp + a.ramp + 1
    t1 = t0 + a.seconds
    await asyncio.sleep(max(0.0, t_ramp - time.monotonic()))
    tasks = []
    for i in range(a.viewers):
        tasks.append(asyncio.ensure_future(viewer(base, u.path, host, port, stats, stop, t0)))
        await asyncio.sleep(max(0.0, t_ramp + a.ramp * (i + 1) / max(1, a.viewers) - time.monotonic()))
    await asyncio.sleep(max(0.0, t0 - time.monotonic()))
    stats.done.clear()
    stats.stalls = stats.errors = stats.bytes = stats.requests = 0
    await asyncio.sleep(max(0.0, t1 - time.monotonic()))
    # Records after t1 are not counted (a worker that is late to wake must not count more).
    done = [(u_, t) for u_, t in stats.done if t <= t1]
    snapshot = (stats.stalls, stats.errors, stats.bytes, stats.requests)
    firsts = dict(stats.first)
    stop.set()
    finished, pending = await asyncio.wait(tasks, timeout=5)
    for t in pending:
        t.cancel()
    crashed = [repr(t.exception()) for t in finished if not t.cancelled() and t.exception()]
    return {
        "done": done,
        "first": firsts,
        "stalls": snapshot[0],
        "errors": snapshot[1],
        "bytes": snapshot[2],
        "requests": snapshot[3],
        "crashed": crashed,
    }


def merge_and_report(a, parts, elapsed, cpu0, cpu1):
    first = {}
    for p in parts:
        for u_, t in p["first"].items():
            if u_ not in first or t < first[u_]:
                first[u_] = t
    delays = [t - first[u_] for p in parts for u_, t in p["done"]]
    crashed = [c for p in parts for c in p["crashed"]]
    requests = sum(p["requests"] for p in parts)
    out = {
        "mode": a.mode,
        "viewers": a.viewers,
        "procs": a.procs,
        "seconds": round(elapsed, 1),
        "media_fetched": len(delays),
        "delay_p50_ms": round(1000 * pct(delays, 50), 1) if delays else None,
        "delay_p95_ms": round(1000 * pct(delays, 95), 1) if delays else None,
        "delay_p99_ms": round(1000 * pct(delays, 99), 1) if delays else None,
        "stalls": sum(p["stalls"] for p in parts),
        "errors": sum(p["errors"] for p in parts) + len(crashed),
        "requests_per_s": round(requests / elapsed),
        "mbit_per_s": round(sum(p["bytes"] for p in parts) * 8 / elapsed / 1e6, 1),
    }
    if cpu0 and cpu1:
        out["server_cpu_core_share"] = round((cpu1[0] - cpu0[0]) / elapsed, 3)
        out["server_cpu_ms_per_viewer_s"] = round(1000 * (cpu1[0] - cpu0[0]) / elapsed / a.viewers, 3)
        out["server_rss_mb"] = round(cpu1[1] / 2**20, 1)
    if crashed:
        out["first_crash"] = crashed[0]
    print(json.dumps(out))


def main():
    a = parse_args()
    if a.worker_start is not None:
        print(json.dumps(asyncio.run(worker(a, a.worker_start))))
        return
    procs = max(1, min(a.procs, a.viewers))
    t_ramp = time.monotonic() + 0.5 + 0.2 * procs  # time for the workers to start
    t0 = t_ramp + a.ramp + 1
    t1 = t0 + a.seconds
    workers = []
    for i in range(procs):
        n = a.viewers // procs + (1 if i < a.viewers % procs else 0)
        argv = [sys.executable, os.path.abspath(__file__), "--url", a.url, "-n", str(n), "-t", str(a.seconds),
                "--mode", a.mode, "--ramp", str(a.ramp), "--worker-start", repr(t_ramp)]
        workers.append(subprocess.Popen(argv, stdout=subprocess.PIPE, text=True))
    time.sleep(max(0.0, t0 - time.monotonic()))
    cpu0 = proc_cpu(a.pid) if a.pid else None
    time.sleep(max(0.0, t1 - time.monotonic()))
    cpu1 = proc_cpu(a.pid) if a.pid else None
    elapsed = a.seconds
    parts = []
    for w in workers:
        out, _ = w.communicate(timeout=30)
        if w.returncode != 0:
            raise SystemExit(f"viewers: a worker failed (exit {w.returncode})")
        parts.append(json.loads(out))
    a.procs = procs
    merge_and_report(a, parts, elapsed, cpu0, cpu1)


if __name__ == "__main__":
    try:
        import resource

        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    except (ImportError, ValueError, OSError):
        pass
    main()
