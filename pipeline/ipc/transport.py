"""Hand-overs between processes that a killed process cannot wedge.

Every link has one producer and one consumer, each on its own socket connection:

- ``Inbox`` is a consumer's end: it listens on an abstract Unix socket (Linux: no file to
  leak), accepts any number of producers and reads each connection in its own thread into
  one local queue. A producer that dies simply closes its connection: its half-written
  message, if any, dies with it, and the consumer gets ``Lost``.
- ``Outbox`` is a producer's end: it connects lazily, reconnects when the consumer comes
  back, and sends a hello first so that a new consumer learns who is talking (stream, pool).
  A consumer that dies closes the socket; the producer sees it on its next send or poll.
- ``Flag`` replaces ``multiprocessing.Event`` for stop/drain/go: one byte in the run's
  control segment, read without a lock (an Event's ``is_set`` takes a lock that a killed
  process may hold forever).

Nothing here takes a lock shared between processes, so a SIGKILL at any instruction of one
end leaves the other end usable. Connections authenticate with the run's authkey
(``multiprocessing``'s challenge), since an abstract socket has no file permissions.
"""
from __future__ import annotations

import logging
import multiprocessing as mp
import queue
import socket
import threading
import time
from multiprocessing.connection import Client, Connection, Listener
from typing import Any, NamedTuple, Optional

log = logging.getLogger(__name__)

CONNECT_EVERY_S = 0.05  # a producer retries an absent consumer at most this often
_ERRORS = (OSError, EOFError, mp.AuthenticationError)


def address(run_id: str, label: str) -> str:
    """An abstract-namespace Unix socket address, unique to the run."""
    return f"\0videoclf_{run_id}_{label}"


class Joined(NamedTuple):
    """A producer connected; ``hello`` is the first thing it sent."""

    peer: int
    hello: Any


class Lost(NamedTuple):
    """A producer's connection ended (it finished, or died)."""

    peer: int
    hello: Any


def _authkey() -> bytes:
    return bytes(mp.current_process().authkey)


def _shutdown(conn: Connection) -> None:
    """Wake a thread blocked in ``conn.recv`` (closing the fd alone does not)."""
    try:
        s = socket.socket(fileno=conn.fileno())
    except (OSError, ValueError):
        return
    try:
        s.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass
    finally:
        s.detach()


class Inbox:
    """A consumer's end of its links. ``get(timeout)`` returns ``(peer, message)`` pairs in
    arrival order, with ``Joined``/``Lost`` markers around each producer's messages, or None
    when nothing came in time. Picklable before ``open()``."""

    def __init__(self, addr: str) -> None:
        self.address = addr
        self._q: queue.Queue = queue.Queue()
        self._listener: Optional[Listener] = None
        self._conns: dict[int, Connection] = {}
        self._next = 0
        self._lock = threading.Lock()
        self._acceptor: Optional[threading.Thread] = None

    def __getstate__(self) -> dict[str, Any]:
        return {"address": self.address}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(state["address"])  # type: ignore[misc]

    def open(self) -> "Inbox":
        if self._listener is None:
            self._listener = Listener(self.address, "AF_UNIX", backlog=128, authkey=_authkey())
            # a bounded accept: the thread sees close() within this even if nothing wakes it
            self._listener._listener._socket.settimeout(0.2)
            self._acceptor = threading.Thread(target=self._accept, name="inbox-accept", daemon=True)
            self._acceptor.start()
        return self

    def _accept(self) -> None:
        listener = self._listener
        while listener is self._listener and listener is not None:
            try:
                conn = listener.accept()
            except _ERRORS:  # a timeout, a peer that died in the handshake, or the listener closed
                continue
            with self._lock:
                peer, self._next = self._next, self._next + 1
                self._conns[peer] = conn
            threading.Thread(target=self._read, args=(peer, conn), name=f"inbox-{peer}", daemon=True).start()

    def _read(self, peer: int, conn: Connection) -> None:
        hello = None
        try:
            hello = conn.recv()
            self._q.put((peer, Joined(peer, hello)))
            while True:
                self._q.put((peer, conn.recv()))
        except _ERRORS:
            pass
        except Exception as exc:  # noqa: BLE001 (a message that does not unpickle: drop the peer, say so)
            log.warning("dropped a connection on %s: %s", self.address.lstrip("\0"), exc)
        with self._lock:
            self._conns.pop(peer, None)
        try:
            conn.close()
        except OSError:
            pass
        if hello is not None:
            self._q.put((peer, Lost(peer, hello)))

    def get(self, timeout: float) -> Optional[tuple[int, Any]]:
        try:
            return self._q.get(timeout=timeout) if timeout > 0 else self._q.get_nowait()
        except queue.Empty:
            return None

    def reply(self, peer: int, msg: Any) -> bool:
        """Send ``msg`` back to one producer; False when it is gone."""
        with self._lock:
            conn = self._conns.get(peer)
        if conn is None:
            return False
        try:
            conn.send(msg)
            return True
        except _ERRORS:
            return False

    def empty(self) -> bool:
        return self._q.empty()

    def close(self) -> None:
        listener, self._listener = self._listener, None
        if listener is not None:
            try:
                listener._listener._socket.shutdown(socket.SHUT_RDWR)  # wakes accept()
            except (OSError, AttributeError):
                pass
            listener.close()
        if self._acceptor is not None and self._acceptor is not threading.current_thread():
            # the address is free once no thread sits in accept() on it: another Inbox may take it
            self._acceptor.join(1.0)
        with self._lock:
            conns = list(self._conns.values())
        for c in conns:
            _shutdown(c)


class Outbox:
    """A producer's end of one link. ``send`` connects on demand (sending ``hello()`` first)
    and returns False while the consumer is absent; ``epoch`` counts connections made, so the
    owner can tell that it now talks to a new consumer (and resend what the old one lost)."""

    def __init__(self, addr: str, hello: Any = None) -> None:
        self.address = addr
        self.hello = hello  # a value, or a callable returning one (evaluated at each connect)
        self.epoch = 0
        self._conn: Optional[Connection] = None
        self._next_try = 0.0
        self._lock = threading.Lock()

    def __getstate__(self) -> dict[str, Any]:
        return {"address": self.address, "hello": self.hello}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(state["address"], state["hello"])  # type: ignore[misc]

    @property
    def connected(self) -> bool:
        return self._conn is not None

    def connect(self) -> bool:
        with self._lock:
            return self._connect()

    def _connect(self) -> bool:
        if self._conn is not None:
            return True
        now = time.monotonic()
        if now < self._next_try:
            return False
        self._next_try = now + CONNECT_EVERY_S
        try:
            conn = Client(self.address, "AF_UNIX", authkey=_authkey())
        except _ERRORS:
            return False
        try:
            conn.send(self.hello() if callable(self.hello) else self.hello)
        except _ERRORS:
            conn.close()
            return False
        self._conn = conn
        self.epoch += 1
        return True

    def send(self, msg: Any) -> bool:
        with self._lock:
            if not self._connect():
                return False
            try:
                self._conn.send(msg)  # type: ignore[union-attr]
                return True
            except _ERRORS:
                self._drop()
                return False

    def replies(self) -> list[Any]:
        """What the consumer sent back; finding the connection closed drops it (consumer gone)."""
        out: list[Any] = []
        with self._lock:
            try:
                while self._conn is not None and self._conn.poll(0):
                    out.append(self._conn.recv())
            except _ERRORS:
                self._drop()
        return out

    def _drop(self) -> None:
        if self._conn is not None:
            try:
                self._conn.close()
            except OSError:
                pass
            self._conn = None

    def close(self) -> None:
        with self._lock:
            self._drop()


class Flag:
    """An Event-like byte in a shared segment: ``set``/``is_set``/``wait`` without a lock.

    ``attach`` maps the byte from a segment's name in the child (the segment itself is the
    run's control pool, created and unlinked by the supervisor)."""

    def __init__(self, pool: Any, index: int) -> None:
        self.pool, self.index = pool, index  # videoclf.ipc.shm.SlotPool of uint8 flags, one slot each

    def _byte(self) -> Any:
        return self.pool.attach().view(self.index)

    def set(self) -> None:
        self._byte()[0] = 1

    def is_set(self) -> bool:
        return bool(self._byte()[0])

    def wait(self, timeout: Optional[float] = None) -> bool:
        end = None if timeout is None else time.monotonic() + timeout
        while not self.is_set():
            left = 0.01 if end is None else end - time.monotonic()
            if left <= 0:
                return False
            time.sleep(min(0.005, left))
        return True


class EventOutbox:
    """A child's status line to the supervisor: ``put(event)`` like a queue, over its own
    connection. A lost supervisor is not an error here: the child then dies with it."""

    def __init__(self, addr: str, who: str) -> None:
        self.box = Outbox(addr, ("child", who))

    def put(self, msg: Any) -> None:
        if not self.box.send(msg):
            # the supervisor's listener exists for the whole run: retry once after a pause
            time.sleep(CONNECT_EVERY_S)
            self.box.send(msg)

    put_nowait = put  # logging.handlers.QueueHandler's call

