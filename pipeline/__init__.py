"""videoclf runtime: supervisor, shared-memory rings, stage loop, metrics, config and CLI."""
__version__ = "0.1.0"
