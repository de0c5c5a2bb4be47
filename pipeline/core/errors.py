"""Error hierarchy. Each class also inherits the builtin it refines, so callers that catch
ValueError/OSError/TimeoutError keep working, and the CLI maps classes to exit codes."""
from __future__ import annotations


class VideoclfError(Exception):
    """Root of every error videoclf raises on purpose."""

    exit_code = 1


class ConfigError(VideoclfError, ValueError):
    """The configuration is invalid (file, key path and value are in the message)."""

    exit_code = 2


class StreamExists(ConfigError):
    """A stream of that name is already running (the HTTP API answers 409)."""


class StreamNotFound(VideoclfError, LookupError):
    """No running stream has that name (the HTTP API answers 404)."""

    exit_code = 2


class InputError(VideoclfError, ValueError):
    """A source or a weights file cannot be used."""

    exit_code = 2


class SourceTimeout(VideoclfError, TimeoutError):
    """A network source did not answer within its timeout."""


class StageError(VideoclfError, RuntimeError):
    """A stage process failed at run time."""


class ResourceError(VideoclfError, OSError):
    """Not enough shared memory, disk, or an unwritable output directory."""

    exit_code = 2


class SharedMemoryError(VideoclfError, OSError):
    """The system refused a shared-memory segment for a reason other than space (permission,
    file descriptors, a read-only /dev/shm, a name in use): a run-time failure, exit 1."""


class ClusterUnreachable(VideoclfError, ConnectionError):
    """No Ray cluster answers at the address given to ``--ray``."""


class SourceGaveUp(VideoclfError):
    """A live stream stopped retrying (``live.max_reconnects``): the run fails once the other
    streams end, so whatever watches the exit code learns that a camera is gone."""


class StreamExists(ConfigError):
    """A stream of that name is running already (the HTTP API answers 409)."""


class StreamNotFound(VideoclfError, LookupError):
    """No running stream has that name (the HTTP API answers 404)."""


ERROR_KINDS: dict[str, type[VideoclfError]] = {
    cls.__name__: cls for cls in (VideoclfError, ConfigError, InputError, SourceTimeout, StageError, ResourceError,
                                   SharedMemoryError)
}


def error_from_event(kind: str, message: str) -> VideoclfError:
    """Rebuild a child's error in the parent from its class name and message."""
    return ERROR_KINDS.get(kind, StageError)(message)
