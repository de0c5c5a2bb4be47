"""The Python API: start a run from code, take its results as typed objects (iterator or
callback, through a bounded queue that never stalls the pipeline), stop it, read its report."""
from videoclf.api.report import Report, StreamReport
from videoclf.api.results import Label, Result
from videoclf.api.run import Options, Run, load, run, start

__all__ = ["Label", "Options", "Report", "Result", "Run", "StreamReport", "load", "run", "start"]
