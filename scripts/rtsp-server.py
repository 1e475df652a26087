#!/usr/bin/python3
"""A real RTSP camera for tests: GStreamer's RTSP server serving one clip, looped, in real time.

    scripts/rtsp-server.py CLIP [--port 8554] [--path /cam] [--host 127.0.0.1] [--no-loop]

CLIP is H.264 in mp4/mov/mkv/ts, optionally with AAC audio. The H.264 is sent as it is in the file
(no decode, no encode): each client gets its own reader pipeline (demux + parse into an appsink),
whose access units are pushed into the RTSP media's appsrc with the clip's own presentation times,
plus one clip length per loop, so the stream is seamless and its timestamps never go back. The
RTSP server's sinks run on the clock, so the stream goes out in real time.

Prints one line `ready rtsp://HOST:PORT/PATH` on stdout once it listens; exits on SIGTERM/SIGINT.
Needs Debian's python3 with python3-gi, gir1.2-gst-rtsp-server-1.0 and gstreamer1.0-plugins-
{base,good,bad} (./scripts/test.sh installs them). Standard library and gi only.
"""

import argparse
import signal
import sys
import threading

import gi

gi.require_version("Gst", "1.0")
gi.require_version("GstApp", "1.0")
gi.require_version("GstPbutils", "1.0")
gi.require_version("GstRtspServer", "1.0")
from gi.repository import GLib, Gst, GstApp, GstPbutils, GstRtspServer  # noqa: E402

# Output caps for the appsinks: whole access units / AAC frames with codec data out of band, which
# is what the payloaders take and what the file already has (no re-packing in the common case).
VIDEO_CAPS = "video/x-h264,stream-format=avc,alignment=au"
AUDIO_CAPS = "audio/mpeg,mpegversion=4,stream-format=raw"


def log(*args):
    print("rtsp-server:", *args, file=sys.stderr, flush=True)


def demuxer_for(clip):
    ext = clip.rsplit(".", 1)[-1].lower()
    if ext in ("mkv", "webm"):
        return "matroskademux"
    if ext in ("ts", "m2ts", "mts"):
        return "tsdemux"
    return "qtdemux"


def has_audio(clip):
    """Whether the clip has an audio stream (the reader builds a branch only for what exists)."""
    info = GstPbutils.Discoverer.new(10 * Gst.SECOND).discover_uri(Gst.filename_to_uri(clip))
    return bool(info.get_audio_streams())


class Reader:
    """Demuxes the clip into appsinks (one per elementary stream) and loops it on EOS."""

    def __init__(self, clip, with_audio, loop):
        self.loop = loop
        self.pipeline = Gst.Pipeline.new("reader")
        src = Gst.ElementFactory.make("filesrc")
        src.set_property("location", clip)
        demux = Gst.ElementFactory.make(demuxer_for(clip))
        self.pipeline.add(src)
        self.pipeline.add(demux)
        src.link(demux)
        self.sinks = {}
        self.video = self._branch("video", "h264parse", VIDEO_CAPS)
        self.audio = self._branch("audio", "aacparse", AUDIO_CAPS) if with_audio else None
        demux.connect("pad-added", self._pad_added)

    def _branch(self, name, parser, caps):
        # A queue per branch: the demuxer's one thread must not block on the first sink while the
        # other still waits for its first buffer (preroll would deadlock).
        queue = Gst.ElementFactory.make("queue")
        parse = Gst.ElementFactory.make(parser)
        filt = Gst.ElementFactory.make("capsfilter")
        filt.set_property("caps", Gst.Caps.from_string(caps))
        sink = Gst.ElementFactory.make("appsink", name)
        # Pull-driven: the RTSP media's appsrc blocks when full, which paces this reader.
        sink.set_property("sync", False)
        sink.set_property("emit-signals", False)
        sink.set_property("max-buffers", 4)
        for e in (queue, parse, filt, sink):
            self.pipeline.add(e)
        queue.link(parse)
        parse.link(filt)
        filt.link(sink)
        self.sinks[name] = queue
        return sink

    def _pad_added(self, _demux, pad):
        caps = pad.get_current_caps() or pad.query_caps(None)
        kind = caps.get_structure(0).get_name()
        target = None
        if kind.startswith("video/x-h264"):
            target = self.sinks.get("video")
        elif kind.startswith("audio/mpeg"):
            target = self.sinks.get("audio")
        if target is not None and not target.get_static_pad("sink").is_linked():
            pad.link(target.get_static_pad("sink"))

    def preroll(self):
        """Caps of each branch (PAUSED preroll), then back to NULL."""
        self.pipeline.set_state(Gst.State.PAUSED)
        ok, _, _ = self.pipeline.get_state(10 * Gst.SECOND)
        if ok == Gst.StateChangeReturn.FAILURE:
            raise RuntimeError("cannot read the clip (is it H.264 in mp4/mkv/ts?)")
        caps, first = {}, None
        for name, sink in (("video", self.video), ("audio", self.audio)):
            if sink is None:
                continue
            sample = sink.try_pull_preroll(5 * Gst.SECOND)
            if sample is None:
                if name == "video":
                    raise RuntimeError("the clip has no H.264 video")
                continue
            caps[name] = sample.get_caps()
            buf = sample.get_buffer()
            for t in (buf.dts, buf.pts):
                if t != Gst.CLOCK_TIME_NONE:
                    first = t if first is None else min(first, t)
        self.pipeline.set_state(Gst.State.NULL)
        return caps, first or 0


class Feeder:
    """One client's media: a reader thread per stream pushing timestamped units into an appsrc."""

    def __init__(self, args, caps, first, media):
        self.args = args
        self.reader = Reader(args.clip, "audio" in caps, not args.no_loop)
        self.stop = threading.Event()
        self.lock = threading.Lock()
        # Per loop: the offset added to the clip's times, and each stream's end in this loop.
        self.offset = 0
        # The clip's earliest time goes out as 0 (the media's running time when it starts).
        self.first = first
        self.rewinding = False
        self.ends = {}
        self.eos = set()
        self.srcs = {}
        element = media.get_element()
        for name in caps:
            src = element.get_by_name(name + "src")
            src.set_property("caps", caps[name])
            self.srcs[name] = src
        bus = self.reader.pipeline.get_bus()
        bus.add_signal_watch()
        bus.connect("message", self._on_message)
        media.connect("unprepared", lambda *_: self.close())
        self.threads = [
            threading.Thread(target=self._pump, args=(name,), daemon=True) for name in self.srcs
        ]
        self.reader.pipeline.set_state(Gst.State.PLAYING)
        for t in self.threads:
            t.start()

    def _pump(self, name):
        sink = self.reader.video if name == "video" else self.reader.audio
        src = self.srcs[name]
        while not self.stop.is_set():
            sample = sink.try_pull_sample(100 * Gst.MSECOND)
            if sample is None:
                if sink.is_eos():
                    self._stream_eos(name)
                continue
            buf = sample.get_buffer().copy()
            with self.lock:
                pts = buf.pts if buf.pts != Gst.CLOCK_TIME_NONE else buf.dts
                end = pts - self.first
                end += buf.duration if buf.duration != Gst.CLOCK_TIME_NONE else 0
                self.ends[name] = max(self.ends.get(name, 0), end)
                shift = self.offset - self.first
                buf.pts = max(0, pts + shift)
                if buf.dts != Gst.CLOCK_TIME_NONE:
                    buf.dts = max(0, buf.dts + shift)
            if src.emit("push-buffer", buf) != Gst.FlowReturn.OK:
                return

    def _stream_eos(self, name):
        with self.lock:
            if name in self.eos or self.rewinding:
                return
            self.eos.add(name)
            if self.eos != set(self.srcs):
                return
            if not self.reader.loop:
                for src in self.srcs.values():
                    src.emit("end-of-stream")
                return
            # Every stream finished this pass: the next pass starts after the longest one.
            self.offset += max(self.ends.values(), default=0)
            self.ends = {}
            self.eos = set()
            self.rewinding = True
        # From our own thread (not a streaming thread): a flushing seek returns once the appsinks
        # are flushed, so no pump sees the old EOS again.
        self.reader.pipeline.seek_simple(
            Gst.Format.TIME, Gst.SeekFlags.FLUSH | Gst.SeekFlags.KEY_UNIT, 0
        )
        with self.lock:
            self.rewinding = False

    def _on_message(self, _bus, msg):
        if msg.type == Gst.MessageType.ERROR:
            err, dbg = msg.parse_error()
            log("reader error:", err.message, dbg or "")
            self.close()

    def close(self):
        if self.stop.is_set():
            return
        self.stop.set()
        self.reader.pipeline.set_state(Gst.State.NULL)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("clip")
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=8554)
    ap.add_argument("--path", default="/cam")
    ap.add_argument("--no-loop", action="store_true", help="play the clip once, then end")
    ap.add_argument("--no-audio", action="store_true", help="serve the video only")
    args = ap.parse_args()
    if not args.path.startswith("/"):
        args.path = "/" + args.path

    Gst.init(None)
    try:
        with_audio = not args.no_audio and has_audio(args.clip)
        caps, first = Reader(args.clip, with_audio, False).preroll()
    except (GLib.Error, RuntimeError) as e:
        log(f"cannot serve {args.clip}: {e}")
        sys.exit(1)
    launch = (
        "( appsrc name=videosrc is-live=true format=time block=true max-bytes=2000000 "
        "! h264parse config-interval=-1 ! rtph264pay name=pay0 pt=96 config-interval=-1"
    )
    if "audio" in caps:
        launch += (
            " appsrc name=audiosrc is-live=true format=time block=true max-bytes=200000 "
            "! aacparse ! rtpmp4gpay name=pay1 pt=97"
        )
    launch += " )"

    server = GstRtspServer.RTSPServer()
    server.set_address(args.host)
    server.set_service(str(args.port))
    factory = GstRtspServer.RTSPMediaFactory()
    factory.set_launch(launch)
    # A media per client: each starts the clip from its beginning and owns its reader.
    factory.set_shared(False)
    feeders = []

    def configure(_factory, media):
        feeders.append(Feeder(args, caps, first, media))

    factory.connect("media-configure", configure)
    server.get_mount_points().add_factory(args.path, factory)
    if server.attach(None) == 0:
        log(f"cannot listen on {args.host}:{args.port}")
        sys.exit(1)

    loop = GLib.MainLoop()

    def quit_(*_):
        for f in feeders:
            f.close()
        loop.quit()

    GLib.unix_signal_add(GLib.PRIORITY_DEFAULT, signal.SIGTERM, quit_)
    GLib.unix_signal_add(GLib.PRIORITY_DEFAULT, signal.SIGINT, quit_)
    # Sessions of clients that vanished without TEARDOWN are cleaned up every 2 s.
    pool = server.get_session_pool()
    GLib.timeout_add_seconds(2, lambda: (pool.cleanup(), True)[1])
    streams = "+".join(sorted(caps))
    print(f"ready rtsp://{args.host}:{args.port}{args.path} ({streams})", flush=True)
    loop.run()


if __name__ == "__main__":
    main()
