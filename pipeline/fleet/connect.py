"""The fleet driver's connection to its Ray cluster (``videoclf run CONFIG --ray ADDRESS``).

``ray.init`` given an address where no cluster answers retries for minutes (Ray 2.60 on
127.0.0.1:1: 5½ minutes of 5 s connects and 30 s waits for the cluster id, a log line at
each), then raises SystemExit; so the address is tried first with one TCP connect of bounded
time, and a cluster that is not there is one line naming the address. (A port that accepts
connections but is no Ray head still meets Ray's own retries.)
"""
from __future__ import annotations

import logging
import os
import re
import socket
from typing import Optional

from videoclf.core.errors import ClusterUnreachable, ConfigError

# a head on the local network answers a connect in milliseconds; a filtered address never does
CONNECT_TIMEOUT_S = float(os.environ.get("VIDEOCLF_RAY_CONNECT_TIMEOUT_S", "5"))
_HOST_PORT = re.compile(r"(ray://)?(\[[0-9A-Fa-f:.]+\]|[^\s:/\[\]]+)(?::([0-9]{1,5}))?")
RAY_CLIENT_PORT = 10001  # what ray:// means without a port


def resolve(address: str) -> tuple[Optional[str], str]:
    """What ``ray.init`` gets (None: start a local cluster) and how to name it in a message:
    ``auto`` is ``$RAY_ADDRESS`` when set."""
    if address == "auto":
        env = os.environ.get("RAY_ADDRESS")
        return (env, f"RAY_ADDRESS={env}") if env else (None, "a local cluster")
    return address, f"--ray {address}"


def check_reachable(address: str, named: str, timeout: float = CONNECT_TIMEOUT_S) -> None:
    """A TCP connect to the head's ``host:port`` (Ray's own ``auto`` and ``local`` are left
    to Ray): ``ConfigError`` when it is no address, ``ClusterUnreachable`` when nothing answers."""
    if address in ("auto", "local"):
        return
    m = _HOST_PORT.fullmatch(address)
    port = int(m.group(3) or (RAY_CLIENT_PORT if m.group(1) else 0)) if m else 0
    if not 0 < port < 65536:
        raise ConfigError(f"{named}: not a Ray address; give the head's HOST:PORT, ray://HOST[:PORT] or auto")
    host = m.group(2).strip("[]")
    try:
        socket.create_connection((host, port), timeout=timeout).close()
    except socket.timeout:
        raise ClusterUnreachable(f"{named}: no Ray cluster answered within {timeout:g} s") from None
    except OSError as exc:
        raise ClusterUnreachable(f"{named}: no Ray cluster answers there ({exc.strerror or exc})") from None


def connect(address: str) -> None:
    """``ray.init`` on the run's cluster, or one line saying why not."""
    import ray

    addr, named = resolve(address)
    if addr is not None:
        check_reachable(addr, named)
    try:
        ray.init(address=addr, namespace="videoclf", log_to_driver=False, logging_level=logging.WARNING)
    except (ConnectionError, RuntimeError, ValueError) as exc:  # Ray's messages run to many lines
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise ClusterUnreachable(f"{named}: cannot join the Ray cluster ({first})") from exc
