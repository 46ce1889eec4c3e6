#!/usr/bin/python3
"""A real RTSP server for the tests: GStreamer's GstRtspServer serving an MP4 file's H.264
track at rtsp://127.0.0.1:PORT/PATH, paced in real time (the server's sinks sync to the
pipeline clock, as a camera would send).

    /usr/bin/python3 tests/support/rtsp_server.py --port 8554 --file clip.mp4 --path /cam

More streams from one server (scripts/bench_scale.sh: many cameras, a main and a sub-stream
each): `--mount PATH=FILE[@K]`, repeated; `@K` starts that stream at the file's K-th keyframe
(modulo their number), so cameras serving the same file do not all show the same moment.

The file's H.264 track is demuxed once into memory and fed through an `appsrc`, loop after loop,
with timestamps that keep going forward, so the stream never ends and never jumps back (a
`concat` of the file with itself failed to preroll about one time in three). The media is shared:
every client sees the same live stream, like a camera. Prints "ready" on stdout once it listens;
runs until killed, or until the process that started it dies.

Needs Debian's python3 with PyGObject and the GStreamer RTSP server library:
python3-gi gir1.2-gst-rtsp-server-1.0 gstreamer1.0-plugins-good gstreamer1.0-plugins-bad.
"""

import argparse
import os
import signal
import sys

PACKAGES = (
    "python3-gi gir1.2-gst-rtsp-server-1.0 "
    "gstreamer1.0-plugins-good gstreamer1.0-plugins-bad"
)


def fail(msg):
    print(
        f"rtsp_server.py: {msg}\n"
        f"Install the Debian packages: apt-get install {PACKAGES} "
        f"(and run this with /usr/bin/python3, which sees them)",
        file=sys.stderr,
        flush=True,
    )
    sys.exit(3)


try:
    import gi

    gi.require_version("Gst", "1.0")
    gi.require_version("GstRtspServer", "1.0")
    from gi.repository import GLib, Gst, GstRtspServer
except (ImportError, ValueError) as e:
    fail(f"cannot load GStreamer's Python bindings or its RTSP server library: {e}")


def die_with_parent():
    """Asks Linux to kill this process when the process that started it dies, so a crashed
    test leaves no server behind."""
    try:
        import ctypes

        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        PR_SET_PDEATHSIG = 1
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    except OSError:
        pass


def read_access_units(path):
    """Demuxes the file's H.264 track into byte-stream access units:
    (data, pts, duration, keyframe), times in ns from the first frame, and the caps. SPS and
    PPS go in front of every keyframe, as cameras send them, so a stream can start at any."""
    pipe = Gst.parse_launch(
        "filesrc name=src ! qtdemux ! h264parse config-interval=-1 ! "
        "video/x-h264,stream-format=byte-stream,alignment=au ! appsink name=sink sync=false"
    )
    pipe.get_by_name("src").set_property("location", path)
    sink = pipe.get_by_name("sink")
    pipe.set_state(Gst.State.PLAYING)
    units, caps = [], None
    while True:
        sample = sink.emit("pull-sample")
        if sample is None:
            break
        if caps is None:
            caps = sample.get_caps()
        buf = sample.get_buffer()
        ok, info = buf.map(Gst.MapFlags.READ)
        if not ok:
            continue
        data = bytes(info.data)
        buf.unmap(info)
        key = not buf.has_flags(Gst.BufferFlags.DELTA_UNIT)
        units.append((data, buf.pts, buf.duration, key))
    bus = pipe.get_bus()
    err = bus.pop_filtered(Gst.MessageType.ERROR)
    pipe.set_state(Gst.State.NULL)
    if err is not None:
        e, dbg = err.parse_error()
        print(f"rtsp_server.py: cannot read {path}: {e.message} ({dbg})", file=sys.stderr)
        sys.exit(2)
    if not units:
        print(f"rtsp_server.py: no H.264 frames in {path}", file=sys.stderr)
        sys.exit(2)
    first = units[0][1]
    step = units[1][1] - first if len(units) > 1 else Gst.SECOND // 25
    units = [
        (d, pts - first, dur if dur != Gst.CLOCK_TIME_NONE else step, key)
        for d, pts, dur, key in units
    ]
    return units, caps


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--file", help="the clip served at --path")
    ap.add_argument("--path", default="/cam")
    ap.add_argument(
        "--mount",
        action="append",
        default=[],
        metavar="PATH=FILE[@K]",
        help="one more stream: FILE at PATH, starting at its K-th keyframe (repeatable)",
    )
    args = ap.parse_args()

    mounts = []  # (path, file, first keyframe)
    if args.file:
        mounts.append((args.path, args.file, 0))
    for m in args.mount:
        path, sep, rest = m.partition("=")
        file, _, k = rest.rpartition("@") if "@" in rest else (rest, "", "0")
        if not sep or not path.startswith("/") or not file or not k.isdigit():
            ap.error(f"--mount {m!r}: expected /PATH=FILE or /PATH=FILE@K")
        mounts.append((path, file, int(k)))
    if not mounts:
        ap.error("give --file (with --path) or at least one --mount")
    for _, file, _ in mounts:
        if not os.path.isfile(file):
            print(f"rtsp_server.py: no such file: {file}", file=sys.stderr, flush=True)
            sys.exit(2)
    die_with_parent()

    Gst.init(None)
    missing = [
        e
        for e in ("filesrc", "qtdemux", "h264parse", "appsrc", "appsink", "rtph264pay")
        if Gst.ElementFactory.find(e) is None
    ]
    if missing:
        fail(f"GStreamer elements not found: {', '.join(missing)}")

    clips = {}  # file -> (units, caps), each file demuxed once

    def configure_for(units, caps, first):
        period = units[-1][1] + units[-1][2]
        keys = [i for i, u in enumerate(units) if u[3]] or [0]
        start = keys[first % len(keys)]

        def configure(_factory, media):
            """Each prepared media plays the access units from its first one (the start, or
            the K-th keyframe), loop after loop, with timestamps that keep going (loop n is
            shifted by n periods) and start at 0."""
            src = media.get_element().get_by_name("src")
            src.set_property("caps", caps)
            state = {"i": start}

            def need_data(appsrc, _length):
                n = state["i"]
                state["i"] = n + 1
                data, pts, dur, key = units[n % len(units)]
                buf = Gst.Buffer.new_wrapped(data)
                buf.pts = buf.dts = pts + (n // len(units)) * period - units[start][1]
                buf.duration = dur
                if not key:
                    buf.set_flags(Gst.BufferFlags.DELTA_UNIT)
                appsrc.emit("push-buffer", buf)

            src.connect("need-data", need_data)

        return configure

    server = GstRtspServer.RTSPServer()
    server.set_address("127.0.0.1")
    server.set_service(str(args.port))
    for path, file, first in mounts:
        if file not in clips:
            clips[file] = read_access_units(file)
        units, caps = clips[file]
        factory = GstRtspServer.RTSPMediaFactory()
        # The sinks inside the server sync on the buffers' times: the stream goes out in real
        # time.
        factory.set_launch(
            "( appsrc name=src format=time is-live=false ! h264parse ! "
            "rtph264pay name=pay0 pt=96 config-interval=1 )"
        )
        factory.set_shared(True)
        factory.connect("media-configure", configure_for(units, caps, first))
        server.get_mount_points().add_factory(path, factory)
    if server.attach(None) == 0:
        print(
            f"rtsp_server.py: cannot listen on 127.0.0.1:{args.port}",
            file=sys.stderr,
            flush=True,
        )
        sys.exit(1)

    loop = GLib.MainLoop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        GLib.unix_signal_add(GLib.PRIORITY_DEFAULT, sig, lambda *_: (loop.quit(), False)[1])
    print("ready", flush=True)
    loop.run()


if __name__ == "__main__":
    main()
