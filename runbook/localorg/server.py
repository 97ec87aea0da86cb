"""The HTTPS server: werkzeug's server on 127.0.0.1, with kept-alive connections and a bounded pool of threads.

This is the one module built on werkzeug's internals (its request handler's ``run_wsgi``, ``make_environ``'s
``werkzeug.socket``, ``BaseWSGIServer``): ``tests/test_library_internals.py`` checks each against the version
pyproject.toml pins. werkzeug decodes ``Transfer-Encoding: chunked`` request bodies, which the Salesforce CLI
uses for its token request. What the server serves is the WSGI app of ``urls``.

Connections are kept alive (HTTP/1.1), as Salesforce keeps them: a client session's next call reuses
its connection instead of paying a new TCP connection and TLS handshake, where the client also loads
its CA bundle again (~30 ms of CPU each time with certifi's CAs in it).

Threads are bounded: at most ``WORKERS`` (16) threads serve requests, one request at a time each, and a
connection between requests (or before its first) waits in one selector thread, holding no worker; at
most ``MAX_CONNECTIONS`` (256) are open, the longest idle closed first beyond that, and an idle one is
closed after ``IDLE_SECONDS``. So 400 idle connections cost 2 threads, not 400, and still leave every
worker to the clients that send requests. A body over ``MAX_BODY_BYTES`` (32 MiB) is never read whole: the
app refuses it before reading (``urls``).
"""

from __future__ import annotations

import contextlib
import io
import logging
import queue
import select
import selectors
import socket
import ssl
import threading
import time
from collections.abc import Callable
from typing import Any

from werkzeug.serving import BaseWSGIServer, WSGIRequestHandler, is_ssl_error

log = logging.getLogger(__name__)

MAX_BODY_BYTES = 32 * 1024 * 1024
WORKERS = 16  # threads serving requests, per org
MAX_CONNECTIONS = 256  # open connections, per org
IDLE_SECONDS = 120  # a kept-alive connection without a request is closed after this
REQUEST_SECONDS = 30  # while a request is read or answered, each socket read or write waits at most this


def hold(environ: dict[str, Any], seconds: float) -> None:
    """Hold the answer ``seconds``, or until the client gives up (its socket turns readable: closed).

    The request is served afterwards either way, as an org goes on with a call whose client has gone; but
    a worker is not kept for a client that is no longer there.
    """
    connection = environ.get("werkzeug.socket")
    deadline = time.monotonic() + seconds
    while (left := deadline - time.monotonic()) > 0:
        if connection is None:
            time.sleep(left)
            return
        try:
            readable, _, _ = select.select([connection], [], [], min(left, 1.0))
        except (OSError, ValueError):  # closed under us (the org stopping)
            return
        if readable:
            return


class _SocketReader(io.RawIOBase):
    """The raw stream under a connection's buffered ``rfile``; ``probing`` makes it report "no data yet"
    without touching the socket, so ``rfile.peek`` tells whether a request is already buffered."""

    def __init__(self, connection: socket.socket) -> None:
        super().__init__()
        self._connection = connection
        self.probing = False

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int | None:  # type: ignore[override]
        return None if self.probing else self._connection.recv_into(buffer)


class _SocketWriter(io.BufferedIOBase):
    """``wfile``: every write sent whole (socketserver's unbuffered writer, which is private there)."""

    def __init__(self, connection: socket.socket) -> None:
        super().__init__()
        self._connection = connection

    def writable(self) -> bool:
        return True

    def write(self, data: Any) -> int:  # type: ignore[override]
        self._connection.sendall(data)
        return len(data)


class _QuietHandler(WSGIRequestHandler):
    """HTTP/1.1 keep-alive, one request per ``serve_one()``; no access log (notebooks would print every call).

    socketserver's handlers serve a whole connection from ``__init__``; here the server makes one handler
    per connection (``for_connection``) and calls ``serve_one`` each time the connection has a request, so
    a worker thread is held for a request, never for an idle connection.
    """

    protocol_version = "HTTP/1.1"
    timeout = REQUEST_SECONDS

    @classmethod
    def for_connection(cls, connection: socket.socket, address: Any, server: TlsServer) -> _QuietHandler:
        handler = cls.__new__(cls)  # not __init__: it would serve the connection to its end
        handler.request, handler.client_address, handler.server = connection, address, server
        handler.setup()
        return handler

    def setup(self) -> None:
        """StreamRequestHandler's setup, with a reader whose buffer can be looked into."""
        self.connection = self.request
        self.connection.settimeout(self.timeout)
        self.rfile = io.BufferedReader(_SocketReader(self.connection), 64 * 1024)
        self.wfile = _SocketWriter(self.connection)

    def serve_one(self) -> bool:
        """Serve the request on the connection; True when the connection stays open for another.

        The TLS handshake is made here, on the first request, not in the accept loop: one client that
        connects and stalls holds one worker for at most ``REQUEST_SECONDS``, not the server.
        """
        self.close_connection = True
        try:
            self.handle_one_request()
        except (ConnectionError, TimeoutError) as exc:
            self.connection_dropped(exc)
            return False
        except Exception as exc:
            if is_ssl_error(exc):  # e.g. a client that does not trust the CA: its error to report
                self.log_error("TLS error: %s", exc)
                return False
            raise
        return not self.close_connection

    def has_buffered_request(self) -> bool:
        """Whether the next request's bytes were read already (a pipelining client), so no selector sees them."""
        if getattr(self.connection, "pending", lambda: 0)():
            return True
        raw = self.rfile.raw
        raw.probing = True  # type: ignore[attr-defined]
        try:
            return bool(self.rfile.peek(1))
        finally:
            raw.probing = False  # type: ignore[attr-defined]

    def run_wsgi(self) -> None:
        """Serve one request and keep the connection for the next one, unless the client asked to close it.

        werkzeug's own ``run_wsgi`` answers every request with "Connection: close": a general WSGI dev
        server cannot tell where an unread request body ends and the next request begins. Here the
        body (``Content-Length`` bytes) is read before the app runs and the app's answer is one bytes
        body sent with its length, so the connection can carry the next request. Requests without a
        plain length (chunked bodies, from the Salesforce CLI), over ``MAX_BODY_BYTES`` or expecting
        ``100-continue`` go to werkzeug's ``run_wsgi`` as before, which closes the connection after them.
        """
        length = self.headers.get("Content-Length", "0").strip()
        if (not length.isdigit() or int(length) > MAX_BODY_BYTES or "Transfer-Encoding" in self.headers
                or "Expect" in self.headers):
            super().run_wsgi()
            return
        body = self.rfile.read(int(length))
        if len(body) < int(length):  # the client went away mid-body
            self.close_connection = True
            return
        self.environ = environ = self.make_environ()
        environ["wsgi.input"] = io.BytesIO(body)
        started: list[Any] = []

        def start_response(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Callable:
            started[:] = [status, headers]
            return self._unsupported_write

        try:
            answer = self.server.app(environ, start_response)
            try:
                content = b"".join(answer)
            finally:
                if hasattr(answer, "close"):
                    answer.close()
        except Exception:  # the app answers its own errors (500 with Salesforce's body): this is a bug here
            log.exception("local org: %s %s failed in the server", self.command, self.path)
            started[:] = ["500 INTERNAL SERVER ERROR", [("Content-Type", "text/plain; charset=utf-8")]]
            content, self.close_connection = b"Internal Server Error", True
        status, headers = started
        code, _, reason = status.partition(" ")
        self.send_response(int(code), reason)
        for name, value in headers:
            if name.lower() not in ("content-length", "connection", "transfer-encoding"):
                self.send_header(name, value)
        self.send_header("Content-Length", str(len(content)))
        if self.close_connection:  # the client sent "Connection: close" or spoke HTTP/1.0
            self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(content)

    @staticmethod
    def _unsupported_write(_data: bytes) -> None:
        raise NotImplementedError("the local org's app returns its body; it never calls write()")

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        pass

    def log_error(self, format: str, *args: Any) -> None:
        """TLS alerts from clients that do not trust the CA are theirs to report, not the server's."""
        log.debug("local org: " + format, *args)


class _Connection:
    """One client connection: its socket, its handler (made on its first request), and when it went idle."""

    def __init__(self, sock: socket.socket, address: Any) -> None:
        self.sock, self.address = sock, address
        self.handler: _QuietHandler | None = None
        self.idle_since = time.monotonic()


class _Workers:
    """At most ``size`` daemon threads running submitted calls, started as calls come (an idle org has one).

    Daemon threads, as werkzeug's threaded server has them: a request held by an injected fault never keeps
    the process from exiting.
    """

    def __init__(self, size: int, name: str) -> None:
        self._size, self._name = size, name
        self._tasks: queue.SimpleQueue[tuple[Callable[..., None], tuple[Any, ...]] | None] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._threads: list[threading.Thread] = []
        self._idle = 0

    def submit(self, fn: Callable[..., None], *args: Any) -> None:
        with self._lock:
            if self._idle == 0 and len(self._threads) < self._size:
                thread = threading.Thread(target=self._work, name=f"{self._name}:worker{len(self._threads)}",
                                          daemon=True)
                self._threads.append(thread)
                thread.start()
            self._tasks.put((fn, args))

    def _work(self) -> None:
        while True:
            with self._lock:
                self._idle += 1
            task = self._tasks.get()
            with self._lock:
                self._idle -= 1
            if task is None:
                return
            fn, args = task
            try:
                fn(*args)
            except Exception:  # a bug in serving one connection must not end the worker
                log.exception("local org: a worker failed")

    @property
    def count(self) -> int:
        return len(self._threads)

    def close(self) -> None:
        """Let each worker end after its current call (none is waited for)."""
        with self._lock:
            for _ in self._threads:
                self._tasks.put(None)


class _Parking:
    """Connections waiting for their next request (or their first), watched by one selector thread.

    A connection that turns readable goes to ``ready``; one idle for ``idle_seconds``, or the longest idle
    while more than ``max_open()`` connections are open, goes to ``expired``.
    """

    def __init__(self, name: str, ready: Callable[[_Connection], None], expired: Callable[[_Connection], None],
                 open_count: Callable[[], int], max_open: int, idle_seconds: float) -> None:
        self._ready, self._expired, self._open_count = ready, expired, open_count
        self._max_open, self._idle_seconds = max_open, idle_seconds
        self._selector = selectors.DefaultSelector()
        self._wake_reader, self._wake_writer = socket.socketpair()
        self._wake_reader.setblocking(False)
        self._selector.register(self._wake_reader, selectors.EVENT_READ)
        self._incoming: list[_Connection] = []
        self._parked: dict[_Connection, None] = {}  # oldest first
        self._lock = threading.Lock()
        self._closed = False
        self._thread = threading.Thread(target=self._run, name=f"{name}:parking", daemon=True)
        self._thread.start()

    def park(self, connection: _Connection) -> None:
        connection.idle_since = time.monotonic()
        with self._lock:
            if self._closed:
                self._expired(connection)
                return
            self._incoming.append(connection)
        with contextlib.suppress(OSError):
            self._wake_writer.send(b"x")

    def close(self) -> None:
        """Stop watching; every parked connection goes to ``expired``."""
        with self._lock:
            self._closed = True
        with contextlib.suppress(OSError):
            self._wake_writer.send(b"x")
        self._thread.join(timeout=5)

    def _run(self) -> None:
        while True:
            events = self._selector.select(timeout=1.0)
            with self._lock:
                incoming, self._incoming, closed = self._incoming, [], self._closed
            for connection in incoming:
                try:
                    self._selector.register(connection.sock, selectors.EVENT_READ, connection)
                    self._parked[connection] = None
                except (OSError, ValueError):  # closed meanwhile
                    self._expired(connection)
            if closed:
                break
            for key, _ in events:
                if key.fileobj is self._wake_reader:
                    with contextlib.suppress(OSError):
                        self._wake_reader.recv(4096)
                elif key.data in self._parked:
                    self._unpark(key.data)
                    self._ready(key.data)
            self._expire()
        for connection in list(self._parked):
            self._unpark(connection)
            self._expired(connection)
        self._selector.close()
        self._wake_reader.close()
        self._wake_writer.close()

    def _unpark(self, connection: _Connection) -> None:
        self._parked.pop(connection, None)
        with contextlib.suppress(KeyError, ValueError, OSError):
            self._selector.unregister(connection.sock)

    def _expire(self) -> None:
        """Close connections idle too long, then the longest idle ones while too many are open."""
        now = time.monotonic()
        for connection in [c for c in self._parked if now - c.idle_since > self._idle_seconds]:
            self._unpark(connection)
            self._expired(connection)
        excess = self._open_count() - self._max_open
        for connection in sorted(self._parked, key=lambda c: c.idle_since)[:max(excess, 0)]:
            self._unpark(connection)
            self._expired(connection)


class TlsServer(BaseWSGIServer):
    """werkzeug's server on 127.0.0.1 with TLS, a bounded worker pool and parked idle connections.

    What ``make_server(threaded=True, ssl_context=...)`` builds, with these changes: the socket is bound
    here, so a taken port raises OSError instead of werkzeug's ``sys.exit(1)``; a connection waits for its
    requests in one selector thread (``_Parking``) and each request is served by one of at most ``workers``
    threads (``_Workers``), instead of a thread per connection for its whole life; and the TLS handshake is
    made by the worker serving the first request, so the accept loop never waits for a client.
    """

    multithread = True  # werkzeug puts it in wsgi.multithread
    _closed = False  # until server_close (which werkzeug also calls when its __init__ fails)

    def __init__(self, port: int, context: ssl.SSLContext, *, workers: int = WORKERS,
                 max_connections: int = MAX_CONNECTIONS, idle_seconds: float = IDLE_SECONDS) -> None:
        listener = socket.create_server(("127.0.0.1", port))
        try:
            super().__init__("127.0.0.1", listener.getsockname()[1], app=None,  # type: ignore[arg-type]
                             handler=_QuietHandler, ssl_context=context, fd=listener.fileno())
        finally:
            listener.close()  # werkzeug holds its own duplicate of the descriptor
        self.socket.do_handshake_on_connect = False  # type: ignore[attr-defined]
        name = f"localorg:{self.port}"
        self._connections: dict[socket.socket, _Connection] = {}
        self._connections_lock = threading.Lock()
        self._workers = _Workers(workers, name)
        self._parking = _Parking(name, ready=lambda c: self._workers.submit(self._serve, c), expired=self._end,
                                 open_count=self.open_connections, max_open=max_connections,
                                 idle_seconds=idle_seconds)

    @property
    def threads(self) -> int:
        """The threads serving this org besides the accept loop: the workers started so far and the parking one."""
        return self._workers.count + 1

    def open_connections(self) -> int:
        with self._connections_lock:
            return len(self._connections)

    def process_request(self, request: Any, client_address: Any) -> None:
        """A new connection waits, parked, for its first request (a silent client holds no worker)."""
        connection = _Connection(request, client_address)
        with self._connections_lock:
            self._connections[request] = connection
        # an answer goes out as two writes (head, body): without this, Nagle's algorithm holds the body
        # back until the client's delayed ACK of the head (up to 40 ms) on a reused connection
        with contextlib.suppress(OSError):
            request.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._parking.park(connection)

    def _serve(self, connection: _Connection) -> None:
        """One request of ``connection`` (in a worker); then the connection is parked again, or closed."""
        keep = False
        try:
            if connection.handler is None:
                connection.handler = _QuietHandler.for_connection(connection.sock, connection.address, self)
            keep = connection.handler.serve_one() and not self._closed
        except Exception:
            self.handle_error(connection.sock, connection.address)
        if not keep:
            self._end(connection)
        elif connection.handler is not None and connection.handler.has_buffered_request():
            self._workers.submit(self._serve, connection)
        else:
            self._parking.park(connection)

    def _end(self, connection: _Connection) -> None:
        with self._connections_lock:
            self._connections.pop(connection.sock, None)
        if connection.handler is not None:
            with contextlib.suppress(Exception):
                connection.handler.finish()
        self.shutdown_request(connection.sock)

    def close_connections(self) -> None:
        """End every connection: parked ones are closed, busy ones shut down (their worker then ends them)."""
        self._parking.close()
        with self._connections_lock:
            busy = list(self._connections)
        for sock in busy:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)

    def server_close(self) -> None:
        """Stop accepting, end the connections and let the workers go (werkzeug's serve_forever calls this)."""
        if not self._closed and hasattr(self, "_parking"):
            self._closed = True
            self.close_connections()
            self._workers.close()
        super().server_close()

    def handle_error(self, request: Any, client_address: Any) -> None:
        log.debug("local org: connection from %s ended with an error", client_address, exc_info=True)
