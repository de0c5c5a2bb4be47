"""Command line: videoclf run | validate | models | serve."""
from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from typing import Any, Sequence

from videoclf import __version__
from videoclf.core.errors import VideoclfError

log = logging.getLogger("videoclf")


class _Format(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        who = "videoclf" if record.processName == "MainProcess" else record.processName
        level = "" if record.levelno == logging.INFO else f"{record.levelname.lower()}: "
        return f"{who}: {level}{record.getMessage()}"


class _JsonFormat(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        return json.dumps({"t": round(record.created, 3), "level": record.levelname.lower(),
                           "process": record.processName, "msg": record.getMessage()})


def _setup_logging(verbose: bool, quiet: bool, json_logs: bool) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_JsonFormat() if json_logs else _Format())
    level = logging.DEBUG if verbose else logging.WARNING if quiet else logging.INFO
    handler.setLevel(level)  # records from children arrive via a queue and skip the root level
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    if verbose:
        os.environ["VIDEOCLF_DEBUG"] = "1"  # children read it when they set up logging


def _run_fleet(cfg: Any, args: argparse.Namespace) -> int:
    """The config's streams on a Ray cluster (``pipeline/fleet/run.py``); report.json as a local run's."""
    from videoclf.core.errors import ConfigError
    from videoclf.fleet.outputs import check_fleet

    check_fleet(cfg)  # an output a fleet cannot honour is refused, never dropped
    try:
        import ray  # noqa: F401
    except ImportError:
        raise ConfigError("--ray needs Ray, not installed (pip install 'videoclf[ray]')") from None
    from videoclf.fleet.run import run_fleet

    if args.max_frames:
        cfg = cfg.model_copy(update={"max_frames": args.max_frames})
    result = run_fleet(cfg, args.config, args.ray, args.duration)
    if not args.quiet:
        for name, s in result.report["streams"].items():
            print(f"{name}: {s['frames']} frames on {str(s['node'])[:12]}, {s['reassignments']} reassignment(s), "
                  f"end {s['end']}")
        print(f"report: {os.path.join(cfg.output.dir, 'report.json')}")
    if result.error is not None:
        raise result.error
    return 0


def _cmd_run(args: argparse.Namespace) -> int:
    from videoclf import api
    from videoclf.observe.report import print_summary

    cfg = api.load(args.config, args.output)
    for key in ("web", "metrics", "video"):  # --web/--metrics/--video override the config
        value = getattr(args, key, None)
        if value:
            from videoclf.config.load import parse_config

            data = cfg.model_dump()
            web = data["output"].get("web") if key == "web" else None
            data["output"][key] = {**web, "listen": value} if web else value  # --web keeps the config's token
            cfg = parse_config(data, f"--{key}", env=cfg.env)
    if args.ray:
        return _run_fleet(cfg, args)
    watch = args.config if os.path.isfile(args.config) else None
    report = api.run(cfg, max_frames=args.max_frames, duration=args.duration, null_sink=args.null_sink,
                     progress=not args.quiet, overwrite=args.overwrite, watch=watch, follow=not args.no_watch)
    if not args.quiet:
        print_summary(dict(report.data))
        print(f"report: {report.path}")
    if report.error is not None:
        raise report.error
    return 0


def _cmd_validate(args: argparse.Namespace) -> int:
    from videoclf.config.load import load_config
    from videoclf.config.schema import redact

    cfg = load_config(args.config)
    if args.ray:
        from videoclf.fleet.outputs import check_fleet

        check_fleet(cfg)
    if args.check_sources:  # probing sources needs the decoders (PyAV); --no-sources imports none
        from videoclf.supervision.supervisor import preflight

        preflight(cfg)
    names = ", ".join(f"{s.name} ({redact(s.source)}, {s.effective_policy})" for s in cfg.streams)
    print(f"{args.config}: ok — {len(cfg.streams)} stream(s): {names}; model {cfg.model.backbone} "
          f"({cfg.model.weights}) input {cfg.model.crop}px on {cfg.model.device}")
    return 0


def _cmd_models(args: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.table import Table

    from videoclf.config.backbones import BACKBONES, describe

    rows = [describe(BACKBONES.get(n)) for n in BACKBONES]
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    table = Table(title="backbones")
    for col in ("backbone", "params (M)", "input", "resize", "ImageNet weights"):
        table.add_column(col)
    for r in rows:
        table.add_row(str(r["backbone"]), f"{r['params_m']:.1f}", str(r["input"]), str(r["resize"]), str(r["weights"]))
    Console().print(table)
    return 0


SYSTEM_PYTHON = "/usr/bin/python3"  # Debian's GStreamer GI bindings live there, not in the venv


def _cmd_serve(args: argparse.Namespace) -> int:
    from videoclf.core.errors import InputError
    from videoclf.devtools.rtsp_server import PACKAGES

    if not os.path.isfile(args.file):
        raise InputError(f"{args.file}: file not found")
    if not os.access(SYSTEM_PYTHON, os.X_OK):
        raise InputError(f"videoclf serve needs {SYSTEM_PYTHON} with GStreamer; install: apt-get install {PACKAGES}")
    script = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "devtools", "rtsp_server.py")
    sys.stdout.flush()
    # exec, not a child: signals (Ctrl-C, SIGSTOP in tests) reach the server itself
    auth = ["--user", args.user, "--password", args.password] if args.user or args.password else []
    os.execv(SYSTEM_PYTHON, [SYSTEM_PYTHON, script, args.file, "--port", str(args.port), "--path", args.path,
                             "--host", args.host, *auth])
    return 1  # not reached


def _cmd_tune(args: argparse.Namespace) -> int:
    from videoclf.config.load import load_config
    from videoclf.plan.compose import tune

    cfg = load_config(args.config)
    v = tune(cfg, frames=args.frames, bound=args.bound, margin=args.margin)
    holds = "holds" if v["agreement_holds"] else "does not hold"
    print(f"{v['backbone']} int8 on {v['held_out_frames']} held-out frames: "
          f"{100 * v['confident_agreement']:.1f} % top-1 agreement with fp32 on the {v['confident_frames']} "
          f"confident ones ({100 * v['confident_share']:.0f} % of them; margin >= {v['margin']}), "
          f"{100 * v['overall_agreement']:.1f} % on all; bound {100 * v['bound']:.1f} %: {holds}")
    print(f"speed: int8 {v['int8_images_per_s']:.0f} images/s, {v['float_precision']} {v['float_images_per_s']:.0f}; "
          f"{v['int8_float_ops']} ops kept in float; {v['tune_s']:.0f} s")
    choice = "int8" if v["agreement_holds"] and v["int8_faster"] else v["float_precision"]
    print(f"precision: auto now picks {choice} for {v['backbone']} with these weights on this CPU")
    f = v["fast_decode"]
    print(f"fast decode (no loop filter) on {f['frames']} frames: {100 * f['confident_agreement']:.1f} % top-1 "
          f"agreement with the normal decode on the {f['confident_frames']} confident ones, "
          f"{100 * f['overall_agreement']:.1f} % on all; bound {100 * f['bound']:.1f} %: decode.fast auto now "
          f"{'turns it on' if f['agreement_holds'] else 'leaves it off'} ({f['verdict_file']})")
    print(f"verdict: {v['verdict_file']}")
    return 0


def _cmd_bench(args: argparse.Namespace) -> int:
    from videoclf.cli.bench import print_table, run_bench, sample_clip, write_outputs

    split = lambda v: [x.strip() for x in v.split(",") if x.strip()]  # noqa: E731
    clip = args.clip or sample_clip()
    rows = run_bench(clip, split(args.backbones), split(args.backends), split(args.precisions), args.frames, args.weights)
    print_table(rows, clip)
    md, csv_path = write_outputs(rows, args.out)
    print(f"markdown: {md}\ncsv: {csv_path}")
    return 0


def _run_parser(sub: Any) -> argparse.ArgumentParser:
    run = sub.add_parser("run", help="classify every frame of the configured streams")
    run.add_argument("config", help="YAML config file")
    run.add_argument("--output", "-o", help="output directory (overrides output.dir)")
    run.add_argument("--max-frames", type=int, metavar="N", help="stop each stream after N frames")
    run.add_argument("--duration", type=float, metavar="SECONDS", help="stop after this many seconds")
    run.add_argument("--null-sink", action="store_true", help="measure without writing label logs (benchmarks)")
    run.add_argument("--overwrite", action="store_true",
                     help="start every stream's label log afresh from start_frame, losing the lines it held (by "
                          "default a run appends and goes on after the last logged frame; complete files are "
                          "not classified again)")
    run.add_argument("--no-watch", action="store_true",
                     help="read CONFIG again on SIGHUP only: by default, each time it is saved, the streams added, "
                          "removed or changed in it are applied while the run goes on")
    run.add_argument("--web", metavar="[HOST]:PORT", help="serve the live web view (loopback unless HOST is given)")
    run.add_argument("--metrics", metavar="[HOST]:PORT", help="serve Prometheus metrics at /metrics")
    run.add_argument("--video", action="store_true", help="write annotated MP4s (output.video: true)")
    run.add_argument("--ray", metavar="ADDRESS", help="run the streams on a Ray cluster (auto: $RAY_ADDRESS, else a "
                                                     "local one); label logs and report.json are gathered here")
    run.set_defaults(func=_cmd_run)
    return run


def _serve_parser(sub: Any) -> argparse.ArgumentParser:
    serve = sub.add_parser("serve", help="serve a video file as a looping live RTSP camera (needs GStreamer)")
    serve.add_argument("file", help="H.264 video in an MP4/MOV container")
    serve.add_argument("--port", type=int, default=8554, help="RTSP port (default 8554)")
    serve.add_argument("--path", default="/cam", help="mount path (default /cam → rtsp://127.0.0.1:8554/cam)")
    serve.add_argument("--host", default="127.0.0.1", help="address to bind (default: loopback only)")
    serve.add_argument("--user", default="", help="require RTSP Basic auth with this user (with --password)")
    serve.add_argument("--password", default="", help="password for --user (test cameras: it shows in `ps`)")
    serve.set_defaults(func=_cmd_serve)
    return serve


def _bench_parser(sub: Any) -> argparse.ArgumentParser:
    bench = sub.add_parser("bench", help="compare backbones x backends x precisions on a clip")
    bench.add_argument("clip", nargs="?", help="video file (default: the shipped sample)")
    bench.add_argument("--backbones", default="resnet18,mobilenet_v2,efficientnet_lite0")
    bench.add_argument("--backends", default="auto", help="comma list of auto,torch,onnxruntime,openvino")
    bench.add_argument("--precisions", default="fp32,bf16", help="comma list of auto,fp32,bf16,fp16,int8")
    bench.add_argument("--weights", default="auto", help="auto (imagenet where offline, else none), imagenet, none")
    bench.add_argument("--frames", type=int, default=300, help="frames of the clip the pipeline classifies")
    bench.add_argument("--out", default="out/bench", help="directory for bench.md and bench.csv")
    bench.set_defaults(func=_cmd_bench)
    return bench


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="videoclf", description="Streaming video classification for files and cameras.")
    p.add_argument("--version", action="version", version=f"videoclf {__version__}")
    sub = p.add_subparsers(dest="command", required=True)

    run = _run_parser(sub)

    val = sub.add_parser("validate", help="check a config without running it")
    val.add_argument("config")
    val.add_argument("--no-sources", dest="check_sources", action="store_false",
                     help="do not open the sources and weights, check the YAML only")
    val.add_argument("--ray", metavar="ADDRESS", help="also check that a fleet run (run --ray) can honour every "
                                                     "output (the cluster is not contacted)")
    val.set_defaults(func=_cmd_validate)

    models = sub.add_parser("models", help="list the available backbones")
    models.add_argument("--json", action="store_true")
    models.set_defaults(func=_cmd_models)

    serve = _serve_parser(sub)

    tune = sub.add_parser("tune", help="measure int8's agreement with fp32 on the config's footage; "
                                       "precision: auto uses int8 only where it holds")
    tune.add_argument("config")
    tune.add_argument("--frames", type=int, default=120, help="calibration frames (as many more are held out)")
    tune.add_argument("--bound", type=float, default=0.99, help="agreement int8 must reach on confident held-out frames")
    tune.add_argument("--margin", type=float, default=0.1, help="top-1 minus top-2 softmax of a confident frame")
    tune.set_defaults(func=_cmd_tune)
    bench = _bench_parser(sub)

    for sp in (run, val, models, serve, tune, bench):
        sp.add_argument("-v", "--verbose", action="store_true", help="debug logging")
        sp.add_argument("-q", "--quiet", action="store_true", help="warnings and errors only, no progress")
        sp.add_argument("--json-logs", action="store_true", help="log lines as JSON objects")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    _setup_logging(args.verbose, args.quiet, args.json_logs)
    try:
        return args.func(args)
    except VideoclfError as exc:
        from videoclf.config.schema import redact

        for line in redact(str(exc)).splitlines() or [""]:  # a config's mistakes: one line each
            print(f"videoclf: error: {line}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("videoclf: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
