"""Start a run from code: ``start`` (in the background: iterate its results, stop it, wait for
its report) or ``run`` (in the calling thread, the way ``videoclf run`` does)."""
from __future__ import annotations

import logging
import os
import threading
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping, Optional, Union

from videoclf.api.report import Report
from videoclf.api.results import Reader, Result, ResultQueue, label_index
from videoclf.core.errors import VideoclfError

log = logging.getLogger("videoclf")

ConfigLike = Union[str, os.PathLike, Mapping[str, Any], Any]  # a file, a shipped name ("sample"), a dict, a Config
OnResult = Callable[[Result], Any]


@dataclass(frozen=True)
class Options:
    """What ``videoclf run``'s flags set, and how results are delivered."""

    max_frames: Optional[int] = None  # stop each stream after N frames
    duration: Optional[float] = None  # stop after this many seconds
    output_dir: Optional[str] = None  # overrides output.dir
    overwrite: bool = False  # start every label log afresh (by default a run goes on after what they hold)
    null_sink: bool = False  # write no label logs (benchmarks)
    progress: bool = False  # the terminal progress line
    queue_size: int = 1024  # results waiting for the consumer; beyond, the oldest are dropped and counted
    lossless: bool = False  # a file's results wait for the consumer instead (cameras still drop)
    write_report: bool = True  # report.json and report.html in the output directory, as the CLI writes
    # a config file to follow: streams added, removed or changed in it (or by the HTTP API, which
    # writes it) are applied while the run goes on; SIGHUP reloads it (``videoclf run CONFIG`` does this)
    watch: Optional[str] = None
    follow: bool = True  # False: ``watch`` is read again on SIGHUP only, not each time it is saved


def load(config: ConfigLike, output_dir: Optional[str] = None) -> Any:
    """A validated ``Config`` from a path, a shipped config's name, a dict or a ``Config``."""
    from videoclf.config.load import load_config, parse_config
    from videoclf.config.schema import Config

    if isinstance(config, Config):
        cfg = config
    elif isinstance(config, Mapping):
        cfg = parse_config(dict(config), "<dict>")
    else:
        cfg = load_config(config if isinstance(config, (str, Path)) else os.fspath(config))
    if output_dir:
        cfg = cfg.model_copy(update={"output": cfg.output.model_copy(update={"dir": str(output_dir)})})
    return cfg


def _options(kw: Mapping[str, Any]) -> Options:
    known = {f.name for f in fields(Options)}
    unknown = sorted(set(kw) - known)
    if unknown:
        raise TypeError(f"unknown option(s) {', '.join(unknown)}; options are {', '.join(sorted(known))}")
    return Options(**kw)


class Run:
    """A run of a config's streams. Iterate it (or ``results()``) for typed results, or give
    ``on_result``; ``stop()`` finishes it as SIGINT does; ``wait()`` returns its ``Report``.
    As a context manager it stops the run (if still going) and waits for it on exit."""

    def __init__(self, cfg: Any, opts: Options, on_result: Optional[OnResult] = None, tap: bool = True) -> None:
        from videoclf.config.zones import logged_streams
        from videoclf.ipc.shm import new_run_id
        from videoclf.ipc.transport import Inbox, address

        self.cfg, self.opts, self.on_result = cfg, opts, on_result
        self.names = [lg.name for lg in logged_streams(cfg.streams)]  # the sink's: a zone's <stream>.<zone>
        self.queue = ResultQueue(opts.queue_size, self.names)
        self._stop = threading.Event()
        self._report: Optional[Report] = None
        self._failure: Optional[BaseException] = None
        self._thread: Optional[threading.Thread] = None
        self._consumer: Optional[threading.Thread] = None
        self.reader: Optional[Reader] = None
        if tap:
            inbox = Inbox(address(new_run_id(), "api")).open()
            lossless = [opts.lossless and not cfg.streams[lg.stream].is_live for lg in logged_streams(cfg.streams)]
            index: dict[str, int] = {}
            labels = lambda: index or index.update(label_index(cfg.model)) or index  # noqa: E731 (loaded once)
            self.reader = Reader(inbox, self.queue, self.names, lossless, labels).start()
        else:
            self.queue.close()
        if on_result is not None:
            self._consumer = threading.Thread(target=self._deliver, name="videoclf-on-result", daemon=True)
            self._consumer.start()

    # -- driving -------------------------------------------------------------------
    def start(self) -> "Run":
        self._thread = threading.Thread(target=self.execute, name="videoclf-run", daemon=True)
        self._thread.start()
        return self

    def execute(self) -> None:
        """Run to the end in the calling thread (SIGINT/SIGTERM handled when it is the main one)."""
        from videoclf.supervision.supervisor import RunOptions, run_pipeline

        o = self.opts
        opts = RunOptions(max_frames=o.max_frames, duration=o.duration, sink="null" if o.null_sink else "auto",
                          progress=o.progress, overwrite=o.overwrite,
                          tap=self.reader.inbox.address if self.reader else None, stop=self._stop,
                          watch=os.fspath(o.watch) if o.watch else None, follow=o.follow)
        try:
            result = run_pipeline(self.cfg, opts)
        except BaseException as exc:
            self._failure = exc
            self._finish_results()
            return
        self._finish_results()
        data = result.report
        if self.reader is not None:
            data["api"] = {"lossless": o.lossless, "dropped": dict(self.queue.dropped),
                           "duplicates": self.reader.duplicates}
        path = self._write(data, result.error) if o.write_report else None
        self._report = Report.from_data(data, result.exit_code, result.error, path)

    def _finish_results(self) -> None:
        if self.reader is not None:
            self.reader.run_over.set()
            self.reader.thread.join()

    def _write(self, data: dict[str, Any], error: Optional[VideoclfError]) -> Optional[str]:
        from videoclf.observe.report import write_report
        from videoclf.observe.report_html import write_html

        out = self.cfg.output.dir
        try:
            path = write_report(data, out)
            write_html(data, out)
            return path
        except OSError as exc:  # disk full or directory gone: the run's own error, if any, says more
            if error is None:
                from videoclf.core.errors import ResourceError

                self._failure = ResourceError(f"output.dir {out}: cannot write report.json ({exc.strerror or exc})")
            else:
                log.warning("report.json not written (%s)", exc.strerror or exc)
            return None

    def _deliver(self) -> None:
        assert self.on_result is not None
        while (r := self.queue.get()) is not None:
            if self._failure is not None:
                continue  # the callback failed: the run stops, what is left is not handed over
            try:
                self.on_result(r)
            except BaseException as exc:  # the user's callback failed: stop, and say so from wait()
                self._failure = self._failure or exc
                self.queue.release()
                self.stop()

    # -- the user's side -----------------------------------------------------------
    def results(self, timeout: Optional[float] = None) -> Iterator[Result]:
        """Each result once, in the order the sink wrote them; ends when the run has ended and
        every result was taken. ``timeout``: give up waiting for the next one after this long."""
        if self.on_result is not None:
            raise RuntimeError("this run delivers its results to on_result; iterate a run started without it")
        if self.reader is None:
            raise RuntimeError("this run was started without results (run() without on_result)")
        while (r := self.queue.get(timeout)) is not None:
            yield r
        if self._failure is not None and self.done:
            raise self._failure

    __iter__ = results

    def stop(self) -> None:
        """Finish as SIGINT does: sources stop reading, frames in flight are classified and
        written, cameras disconnect, the report is written. Safe from any thread."""
        self._stop.set()

    def wait(self, timeout: Optional[float] = None) -> Optional[Report]:
        """The report once the run has ended (None if ``timeout`` passed first). An error
        that kept the run from starting (a bad config or source) is raised here."""
        if self._thread is not None:
            self._thread.join(timeout)
            if self._thread.is_alive():
                return None
        if self._consumer is not None:
            self._consumer.join(timeout)
        if self._failure is not None:
            raise self._failure
        return self._report

    @property
    def done(self) -> bool:
        return self._thread is None or not self._thread.is_alive()

    @property
    def report(self) -> Optional[Report]:
        return self._report

    @property
    def dropped(self) -> int:
        """Results dropped so far because the consumer was slower than the pipeline."""
        return sum(self.queue.dropped.values())

    @property
    def delivered(self) -> int:
        return self.queue.delivered

    def __enter__(self) -> "Run":
        return self

    def __exit__(self, *_: object) -> None:
        if not self.done:
            self.stop()
        self.queue.release()  # nobody iterates any more: lossless results must not hold the sink
        self.wait()


def start(config: ConfigLike, on_result: Optional[OnResult] = None, **options: Any) -> Run:
    """Start a run in the background and return it at once (``Options`` lists ``options``)."""
    opts = _options(options)
    return Run(load(config, opts.output_dir), opts, on_result).start()


def run(config: ConfigLike, on_result: Optional[OnResult] = None, **options: Any) -> Report:
    """Run in the calling thread until the end and return the report; ``on_result`` is called
    from a thread of its own. In the main thread, Ctrl-C finishes the run as ``stop()`` does."""
    opts = _options(options)
    r = Run(load(config, opts.output_dir), opts, on_result, tap=on_result is not None)
    r.execute()
    report = r.wait()
    assert report is not None
    return report
