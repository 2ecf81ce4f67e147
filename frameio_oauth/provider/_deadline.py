"""Wall-clock deadlines for HTTP calls, held at the socket.

``with Deadline(seconds):`` gives the calls made through a :class:`DeadlineAdapter` in the block
one deadline for connecting, the TLS handshake, sending and reading. One watchdog thread per
process shuts a late call's socket down, which wakes whatever is blocked on it; socket timeouts
bound each read, which a server sending a byte now and then restarts forever. DNS comes before
any socket and cannot be interrupted (docs/operations.md, "HTTP_TIMEOUT").
"""

from __future__ import annotations

import contextlib
import heapq
import itertools
import math
import os
import socket
import sys
import threading
import time
import weakref
from contextvars import ContextVar, Token
from typing import Any

import requests
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool
from urllib3.exceptions import ConnectTimeoutError, NameResolutionError, NewConnectionError
from urllib3.util.connection import allowed_gai_family

# How late the watchdog may act on a deadline, so that a burst of them is one wake-up, not many.
GRAIN = 0.01
_LONGEST_WAIT = 3600.0

_current: ContextVar[Deadline | None] = ContextVar("frameio_oauth_deadline", default=None)


class Deadline:
    """One call's deadline; ``with`` makes it the deadline of the HTTP calls in the block."""

    __slots__ = ("_alarm", "_kept", "_token", "at", "seconds", "tripped")

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.at = time.monotonic() + seconds
        # Set by the watchdog, before it shuts the call's socket down.
        self.tripped = False
        self._alarm: _Alarm | None = None
        self._token: Token[Deadline | None] | None = None
        # Wires whose connection closed while the call goes on (see _WatchedHTTPConnection).
        self._kept: list[Tripwire] = []

    def __enter__(self) -> Deadline:
        self._token = _current.set(self)
        return self

    def __exit__(self, *exc_info: object) -> None:
        if self._token is not None:
            _current.reset(self._token)
        alarm = self._alarm
        if alarm is not None and not alarm.done:
            _watchdog.cancel(alarm)
        while self._kept:
            self._kept.pop().close()

    @property
    def watched(self) -> bool:
        """Whether a socket of this call is under the watchdog (not one of a SOCKS proxy)."""
        return self._alarm is not None

    def keep_until_exit(self, wire: Tripwire) -> None:
        self._kept.append(wire)

    def remaining(self) -> float:
        return self.at - time.monotonic()

    def passed(self) -> bool:
        return self.tripped or time.monotonic() >= self.at

    def watch(self, wire: Tripwire) -> None:
        """Have ``wire`` cut at this deadline, instead of the wire watched before."""
        alarm = self._alarm
        if alarm is not None:
            if alarm.wire is wire and not alarm.done:
                return
            _watchdog.cancel(alarm)
        self._alarm = _watchdog.arm(self, wire)


class Tripwire:
    """A duplicate of a connection's socket, for the watchdog to shut down.

    A duplicate because TLS wraps the connection's socket in a new object while connecting and
    detaches the old one; the duplicate stays valid through the handshake and after, and shutting
    it down ends the one TCP connection under both."""

    __slots__ = ("_sock", "alarm", "tripped")

    def __init__(self, sock: socket.socket) -> None:
        self._sock = sock.dup()
        self.alarm: _Alarm | None = None
        self.tripped = False

    def disarm(self) -> None:
        alarm = self.alarm
        if alarm is not None:
            _watchdog.cancel(alarm)

    def close(self) -> None:
        _watchdog.close(self)

    def _cut(self) -> None:
        self.tripped = True
        # OSError: closed, or never connected, so nothing left to cut.
        with contextlib.suppress(OSError):
            self._sock.shutdown(socket.SHUT_RDWR)


class _Alarm:
    __slots__ = ("deadline", "done", "owner", "wire")

    def __init__(self, deadline: Deadline, wire: Tripwire, owner: _Watchdog) -> None:
        self.deadline = deadline
        self.wire = wire
        self.owner = owner
        self.done = False


class _Watchdog:
    """One daemon thread that cuts the wires whose deadline has passed.

    Arming is a heap push under a lock, disarming sets a flag: no thread, timer or system call
    per call. The thread starts on first use; a forked child gets a new watchdog (threads do not
    survive fork, and Celery's prefork workers fork after import)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)
        self._heap: list[tuple[float, int, _Alarm]] = []
        self._order = itertools.count()
        self._live = 0
        self._wake_at = math.inf
        self._running = False

    def arm(self, deadline: Deadline, wire: Tripwire) -> _Alarm:
        alarm = _Alarm(deadline, wire, self)
        with self._lock:
            if not self._running:
                self._start()
            if wire.alarm is not None:
                self._cancel(wire.alarm)
            wire.alarm = alarm
            self._live += 1
            heapq.heappush(self._heap, (deadline.at, next(self._order), alarm))
            if deadline.at < self._wake_at:
                self._changed.notify()
        return alarm

    def cancel(self, alarm: _Alarm) -> None:
        with self._lock:
            self._cancel(alarm)

    def close(self, wire: Tripwire) -> None:
        # Under the lock, so that a cut never reaches a descriptor number already reused.
        with self._lock:
            if wire.alarm is not None:
                self._cancel(wire.alarm)
            wire._sock.close()

    def _cancel(self, alarm: _Alarm) -> None:
        if alarm.done or alarm.owner is not self:
            return
        alarm.done = True
        if alarm.wire.alarm is alarm:
            alarm.wire.alarm = None
        self._live -= 1
        if not self._live:
            # Nothing armed: drop the cancelled entries rather than wake up for each of them.
            self._heap.clear()

    def _start(self) -> None:
        threading.Thread(target=self._run, name="frameio-oauth-deadlines", daemon=True).start()
        self._running = True

    def _run(self) -> None:
        try:
            self._watch()
        finally:
            # Whatever ended the loop, calls in flight keep their deadline: a new thread takes
            # over their alarms (and the next call to arm starts one anyway).
            with self._lock:
                self._running = False
                if self._live and not sys.is_finalizing():
                    self._start()

    def _watch(self) -> None:
        with self._lock:
            while True:
                now = time.monotonic()
                heap = self._heap
                while heap and heap[0][0] <= now:
                    alarm = heapq.heappop(heap)[2]
                    if not alarm.done:
                        self._cancel(alarm)
                        alarm.deadline.tripped = True
                        alarm.wire._cut()
                self._wake_at = max(heap[0][0], now + GRAIN) if heap else math.inf
                # Capped: a wait longer than threading.TIMEOUT_MAX would raise.
                self._changed.wait(min(self._wake_at - now, _LONGEST_WAIT) if heap else None)


_watchdog = _Watchdog()


def _new_watchdog_after_fork() -> None:
    global _watchdog
    _watchdog = _Watchdog()
    # A connection kept alive in the parent is shared with it and every sibling: a child that
    # sent on one would read another process's answer. Close the child's copies (no shutdown).
    for adapter in list(_ADAPTERS):
        adapter.forget_connections()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_new_watchdog_after_fork)


class _WatchedHTTPConnection(HTTPConnection):
    """Puts its socket under the deadline of the call in progress: a new socket as soon as it
    is connected (so the TLS handshake is covered), a kept-alive one when a request starts."""

    tripwire: Tripwire | None = None

    def _new_conn(self) -> socket.socket:
        deadline = _current.get()
        sock = super()._new_conn() if deadline is None else self._connect_within(deadline)
        try:
            wire = Tripwire(sock)
        except OSError as exc:
            sock.close()
            raise NewConnectionError(self, f"Failed to duplicate the socket: {exc}") from exc
        if self.tripwire is not None:
            self.tripwire.close()
        self.tripwire = wire
        if deadline is not None:
            deadline.watch(wire)
        return sock

    def _connect_within(self, deadline: Deadline) -> socket.socket:
        """Try each address of the host in turn, all within ``deadline`` (urllib3 gives each
        address the whole connect timeout)."""
        # urllib3's resolved name: it keeps a trailing dot that self.host drops.
        host = self._dns_host.strip("[]")
        try:
            addresses = socket.getaddrinfo(
                host, self.port, allowed_gai_family(), socket.SOCK_STREAM
            )
        except socket.gaierror as exc:
            raise NameResolutionError(self.host, self, exc) from exc
        failure: OSError | None = None
        for family, kind, proto, _, address in addresses:
            remaining = deadline.remaining()
            if remaining <= 0:
                break
            sock = socket.socket(family, kind, proto)
            try:
                for option in self.socket_options or ():
                    sock.setsockopt(*option)
                sock.settimeout(remaining)
                if self.source_address:
                    sock.bind(self.source_address)
                sock.connect(address)
            except OSError as exc:
                sock.close()
                failure = exc
                continue
            sys.audit("http.client.connect", self, self.host, self.port)
            return sock
        if failure is None or isinstance(failure, TimeoutError) or deadline.remaining() <= 0:
            raise ConnectTimeoutError(
                self, f"Connection to {self.host} timed out (deadline {deadline.seconds:g}s)"
            )
        raise NewConnectionError(self, f"Failed to establish a new connection: {failure}")

    def request(
        self, method: str, url: str, body: Any = None, headers: Any = None, **options: Any
    ) -> None:
        deadline = _current.get()
        if deadline is not None and self.tripwire is not None and self.sock is not None:
            deadline.watch(self.tripwire)
        super().request(method, url, body=body, headers=headers, **options)

    @property
    def is_connected(self) -> bool:
        # A cut connection is never used again, even if it was cut after its answer was read.
        wire = self.tripwire
        return (wire is None or not wire.tripped) and super().is_connected

    def close(self) -> None:
        try:
            super().close()
        finally:
            wire, self.tripwire = self.tripwire, None
            deadline = _current.get()
            alarm = wire.alarm if wire is not None else None
            if wire is not None and alarm is not None and alarm.deadline is deadline:
                # http.client closes an answer's connection once its head is in when the answer
                # ends with it (Connection: close, unframed), and keeps reading: stay armed.
                deadline.keep_until_exit(wire)
            elif wire is not None:
                wire.close()


class _WatchedHTTPSConnection(_WatchedHTTPConnection, HTTPSConnection):
    pass


class _DisarmedInPool(HTTPConnectionPool):
    def _put_conn(self, conn: Any) -> None:
        # Back in the pool, a connection belongs to no call: the deadline of the call that
        # used it must not cut it under the next one.
        if isinstance(conn, _WatchedHTTPConnection) and conn.tripwire is not None:
            conn.tripwire.disarm()
        super()._put_conn(conn)


class _HTTPPool(_DisarmedInPool):
    ConnectionCls = _WatchedHTTPConnection


class _HTTPSPool(_DisarmedInPool, HTTPSConnectionPool):
    ConnectionCls = _WatchedHTTPSConnection


_POOLS: dict[str, type[HTTPConnectionPool]] = {"http": _HTTPPool, "https": _HTTPSPool}
_ADAPTERS: weakref.WeakSet[DeadlineAdapter] = weakref.WeakSet()


class DeadlineAdapter(requests.adapters.HTTPAdapter):
    """requests' HTTPAdapter whose connections keep the :class:`Deadline` of the call in
    progress. A subclass, so that what mocks ``HTTPAdapter.send`` (``responses``) still does."""

    def init_poolmanager(
        self, connections: int, maxsize: int, block: bool = False, **pool_kwargs: Any
    ) -> None:
        super().init_poolmanager(connections, maxsize, block, **pool_kwargs)
        self.poolmanager.pool_classes_by_scheme = _POOLS
        _ADAPTERS.add(self)

    def forget_connections(self) -> None:
        """Drop every pooled connection, its proxies' included."""
        self.poolmanager.clear()
        for manager in self.proxy_manager.values():
            manager.clear()

    def proxy_manager_for(self, proxy: str, **proxy_kwargs: Any) -> Any:
        manager = super().proxy_manager_for(proxy, **proxy_kwargs)
        # SOCKS proxies bring connection classes of their own, which are not watched: through
        # them only the socket timeouts and the caller's checks between reads apply.
        if not proxy.lower().startswith("socks"):
            manager.pool_classes_by_scheme = _POOLS
        return manager
