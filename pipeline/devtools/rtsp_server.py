"""A looping RTSP camera simulator: serves an H.264 MP4 file on 127.0.0.1 forever.

Run with the *system* Python (``/usr/bin/python3``): the GStreamer GI bindings are Debian
packages, not pip packages, so they are absent from the virtual environment. The stream is
not re-encoded (about 2 % of a core). At the end of the file the demuxer's EOS is dropped
and the file is seeked back to the start, so clients see one endless live stream.

This file must import nothing from videoclf: it runs outside the venv.
"""
from __future__ import annotations

import argparse
import os
import signal
import sys

PACKAGES = "python3-gi python3-gst-1.0 gir1.2-gst-rtsp-server-1.0 gstreamer1.0-plugins-base gstreamer1.0-plugins-good gstreamer1.0-plugins-bad"
EXIT_MISSING = 2  # like any unusable input: the message names the Debian packages to install


def _import_gst():
    try:
        import gi

        gi.require_version("Gst", "1.0")
        gi.require_version("GstRtspServer", "1.0")
        from gi.repository import GLib, Gst, GstRtspServer
    except (ImportError, ValueError) as exc:
        print(f"videoclf serve: GStreamer RTSP server not available ({exc}); "
              f"install the Debian packages: apt-get install {PACKAGES}", file=sys.stderr)
        sys.exit(EXIT_MISSING)
    Gst.init(None)
    for element in ("qtdemux", "h264parse", "rtph264pay"):
        if Gst.ElementFactory.find(element) is None:
            print(f"videoclf serve: GStreamer element {element} missing; "
                  f"install the Debian packages: apt-get install {PACKAGES}", file=sys.stderr)
            sys.exit(EXIT_MISSING)
    return GLib, Gst, GstRtspServer


def _launch_line(path: str) -> str:
    quoted = path.replace("\\", "\\\\").replace('"', '\\"')
    # config-interval=1: SPS/PPS every second, so a client that (re)connects mid-stream can
    # start decoding at the next keyframe (-1, "with every IDR", makes FFmpeg emit IDR frames twice)
    return (f'( filesrc location="{quoted}" ! qtdemux name=demux demux.video_0 ! h264parse name=parse '
            f'! rtph264pay name=pay0 pt=96 config-interval=1 )')


def _loop_on_eos(GLib, Gst, media) -> None:
    """Drop the file's EOS before it reaches the payloader and seek back to the start."""
    element = media.get_element()
    parse = element.get_by_name("parse")
    if parse is None:
        return

    def restart() -> bool:
        # seek the top-level pipeline (the media's element is a bin inside it)
        el = element
        while el.get_parent() is not None:
            el = el.get_parent()
        el.seek_simple(Gst.Format.TIME, Gst.SeekFlags.FLUSH | Gst.SeekFlags.KEY_UNIT, 0)
        return False

    def probe(_pad, info):
        event = info.get_event()
        if event is not None and event.type == Gst.EventType.EOS:
            GLib.idle_add(restart)  # never seek from the streaming thread that carries the EOS
            return Gst.PadProbeReturn.DROP
        return Gst.PadProbeReturn.OK

    parse.get_static_pad("src").add_probe(Gst.PadProbeType.EVENT_DOWNSTREAM, probe)


def _require_auth(GstRtspServer, server, factory, user: str, password: str) -> None:
    """HTTP Basic auth like an IP camera: without the right user/password DESCRIBE gets 401."""
    auth = GstRtspServer.RTSPAuth()
    token = GstRtspServer.RTSPToken()
    token.set_string("media.factory.role", "viewer")
    auth.add_basic(GstRtspServer.RTSPAuth.make_basic(user, password), token)
    server.set_auth(auth)
    # the factory grants access only to the role in the token: anonymous clients have none
    permissions = GstRtspServer.RTSPPermissions()
    permissions.add_role("viewer")
    permissions.add_permission_for_role("viewer", "media.factory.access", True)
    permissions.add_permission_for_role("viewer", "media.factory.construct", True)
    factory.set_permissions(permissions)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="videoclf serve", description="serve a video file as a looping RTSP camera")
    ap.add_argument("file", help="H.264 video in an MP4/MOV container")
    ap.add_argument("--port", type=int, default=8554)
    ap.add_argument("--path", default="/cam", help="mount path, e.g. /cam → rtsp://127.0.0.1:8554/cam")
    ap.add_argument("--host", default="127.0.0.1", help="address to bind (default: loopback only)")
    ap.add_argument("--user", default="", help="require HTTP Basic auth with this user (and --password)")
    ap.add_argument("--password", default="", help="password for --user")
    args = ap.parse_args(argv)
    if bool(args.user) != bool(args.password):
        print("videoclf serve: --user and --password go together", file=sys.stderr)
        return 2
    if not os.path.isfile(args.file):
        print(f"videoclf serve: {args.file}: file not found", file=sys.stderr)
        return 2
    GLib, Gst, GstRtspServer = _import_gst()

    server = GstRtspServer.RTSPServer()
    server.set_address(args.host)
    server.set_service(str(args.port))
    factory = GstRtspServer.RTSPMediaFactory()
    factory.set_launch(_launch_line(os.path.abspath(args.file)))
    factory.set_shared(True)  # every client watches the same live "camera"
    factory.connect("media-configure", lambda _f, media: _loop_on_eos(GLib, Gst, media))
    if args.user:
        _require_auth(GstRtspServer, server, factory, args.user, args.password)
    server.get_mount_points().add_factory(args.path if args.path.startswith("/") else "/" + args.path, factory)
    if server.attach(None) == 0:
        print(f"videoclf serve: cannot listen on {args.host}:{args.port} (port in use?)", file=sys.stderr)
        return 1
    loop = GLib.MainLoop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        GLib.unix_signal_add(GLib.PRIORITY_DEFAULT, sig, lambda *_: (loop.quit(), False)[1])
    auth = f"{args.user}:***@" if args.user else ""  # the password is never printed
    print(f"serving {args.file} at rtsp://{auth}{args.host}:{args.port}{args.path} (looping; Ctrl-C stops)", flush=True)
    loop.run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
