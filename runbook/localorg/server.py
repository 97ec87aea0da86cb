"""The HTTPS server: routing by path, the call log, and a threaded werkzeug server on 127.0.0.1.

Paths are matched with or without a trailing slash (simple-salesforce adds one, the Salesforce CLI
does not). werkzeug decodes ``Transfer-Encoding: chunked`` request bodies, which the CLI uses for its
token request. Every request is written to the call log with the operation its handler named.

Connections are kept alive (HTTP/1.1), as Salesforce keeps them: a client session's next call reuses
its connection instead of paying a new TCP connection and TLS handshake, where the client also loads
its CA bundle again (~30 ms of CPU each time with certifi's CAs in it).
"""

from __future__ import annotations

import contextlib
import io
import logging
import re
import socket
import ssl
import threading
import time
from collections.abc import Callable, Iterable
from typing import Any

from werkzeug import Request, Response
from werkzeug.exceptions import HTTPException
from werkzeug.serving import ThreadedWSGIServer, WSGIRequestHandler

from runbook.localorg import dev_hub, oauth, rest, soap
from runbook.localorg.context import Call, OrgContext
from runbook.localorg.faults import Fault, Injection
from runbook.localorg.soapxml import api_fault, fault_body

log = logging.getLogger(__name__)

MAX_BODY_BYTES = 32 * 1024 * 1024
_VERSION = r"(?P<version>\d{2}\.\d)"
Handler = Callable[..., Response]
_ROUTES: list[tuple[re.Pattern[str], Handler]] = [
    (re.compile(r"/services/oauth2/token"), oauth.token_endpoint),
    (re.compile(r"/services/oauth2/authorize"), oauth.authorize_endpoint),
    (re.compile(r"/services/oauth2/revoke"), oauth.revoke_endpoint),
    (re.compile(r"/services/oauth2/userinfo"), oauth.userinfo_endpoint),
    (re.compile(r"/id/(?P<org_id>\w+)/(?P<user_id>\w+)"), oauth.identity_endpoint),
    (re.compile(rf"/services/Soap/u/{_VERSION}(?:/.*)?"), soap.partner),
    (re.compile(rf"/services/Soap/m/{_VERSION}(?:/.*)?"), lambda ctx, request, call, version:
        soap.metadata_api(ctx, request, call)),
    (re.compile(r"/services/data"), rest.versions),
    (re.compile(rf"/services/data/v{_VERSION}/(?P<tail>{dev_hub.PATHS})"), dev_hub.handle),
    (re.compile(rf"/services/data/v{_VERSION}(?:/(?P<rest>.*))?"),
     lambda ctx, request, call, version, tail:
        rest.handle(ctx, request, call, version, (tail or "").strip("/"))),
]
_SOAP_PREFIX = "/services/Soap/"
_UNEXPECTED = {"errorCode": "UNKNOWN_EXCEPTION", "message": "An unexpected error occurred in the local org."}


class _Request(Request):
    max_content_length = MAX_BODY_BYTES


def _route(ctx: OrgContext, request: Request, call: Call) -> Response:
    path = request.path.rstrip("/") or "/"
    for pattern, handler in _ROUTES:
        match = pattern.fullmatch(path)
        if match:
            if path.startswith(_SOAP_PREFIX) and request.method != "POST":
                call.operation = "soap.unknown"
                return Response("SOAP endpoints accept POST only", status=405, content_type="text/plain")
            return handler(ctx, request, call, *match.groups())
    return rest.json_response(rest.NOT_FOUND, 404)


def make_app(ctx: OrgContext, injection: Injection | None = None,
             ) -> Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]:
    """The WSGI application serving ``ctx``'s org, with ``injection``'s latency and faults applied."""
    injection = injection or Injection()

    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        request = _Request(environ)
        call = Call()
        injection.delay()
        fault = injection.plan.take(request.method, request.path, _body(request))
        if fault is not None and fault.kind == "timeout":
            time.sleep(fault.seconds)
        try:
            if fault is not None and not fault.after and fault.kind != "timeout":
                response = _fault_response(fault, request, call)
            else:
                response = _route(ctx, request, call)
                if fault is not None and fault.after and fault.kind != "timeout":
                    response = _fault_response(fault, request, call)
        except HTTPException as exc:  # e.g. a body over MAX_BODY_BYTES
            response = exc.get_response(environ)
        except Exception:
            log.exception("local org: %s %s failed", request.method, request.path)
            response = rest.json_response([_UNEXPECTED], 500)
        ctx.store.log_call(request.method, request.path, call.operation, call.is_write, response.status_code)
        return response(environ, start_response)

    return app


def _body(request: Request) -> bytes:
    """The request body, read once and cached for the handler (only POSTs carry one here)."""
    return request.get_data(cache=True) if request.method in ("POST", "PATCH", "PUT") else b""


def _fault_response(fault: Fault, request: Request, call: Call) -> Response:
    """The answer an injected fault gives; the call log names the fault unless the org did the work."""
    if not fault.after:
        call.operation = f"fault.{fault.kind}"
    if fault.kind == "server_error":
        return Response("<html><body>Service Unavailable</body></html>", status=503, content_type="text/html")
    if fault.kind == "rate_limit":
        return rest.json_response([{"errorCode": "REQUEST_LIMIT_EXCEEDED",
                                    "message": "TotalRequests Limit exceeded."}], 403)
    if request.path.startswith(_SOAP_PREFIX):
        return Response(fault_body(api_fault("INVALID_SESSION_ID", "Invalid Session ID found in SessionHeader: "
                                             "Illegal Session")), status=500, content_type="text/xml; charset=utf-8")
    return rest.json_response([{"errorCode": "INVALID_SESSION_ID", "message": "Session expired or invalid"}], 401)


class _QuietHandler(WSGIRequestHandler):
    """HTTP/1.1 keep-alive; no access log (notebooks would print every call); idle connections close after 2 min."""

    protocol_version = "HTTP/1.1"
    timeout = 120

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


class TlsServer(ThreadedWSGIServer):
    """werkzeug's threaded server (what ``make_server(threaded=True, ssl_context=...)`` builds) on 127.0.0.1.

    Two changes: the socket is bound here, so a taken port raises OSError instead of werkzeug's
    ``sys.exit(1)``; and the TLS handshake moves from the accept loop into each connection's thread,
    so one client that connects and stalls cannot hold up everyone else.
    """

    def __init__(self, port: int, context: ssl.SSLContext) -> None:
        listener = socket.create_server(("127.0.0.1", port))
        try:
            super().__init__("127.0.0.1", listener.getsockname()[1], app=None,  # type: ignore[arg-type]
                             handler=_QuietHandler, ssl_context=context, fd=listener.fileno())
        finally:
            listener.close()  # werkzeug holds its own duplicate of the descriptor
        self.socket.do_handshake_on_connect = False  # type: ignore[attr-defined]
        self._connections: set[socket.socket] = set()
        self._connections_lock = threading.Lock()

    def process_request(self, request: Any, client_address: Any) -> None:
        with self._connections_lock:
            self._connections.add(request)
        # an answer goes out as two writes (head, body): without this, Nagle's algorithm holds the body
        # back until the client's delayed ACK of the head (up to 40 ms) on a reused connection
        with contextlib.suppress(OSError):
            request.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        super().process_request(request, client_address)

    def shutdown_request(self, request: Any) -> None:
        with self._connections_lock:
            self._connections.discard(request)
        super().shutdown_request(request)

    def close_connections(self) -> None:
        """End idle keep-alive connections, whose threads would otherwise outlive the server."""
        with self._connections_lock:
            for connection in list(self._connections):
                with contextlib.suppress(OSError):
                    connection.shutdown(socket.SHUT_RDWR)

    def handle_error(self, request: Any, client_address: Any) -> None:
        log.debug("local org: connection from %s ended with an error", client_address, exc_info=True)
