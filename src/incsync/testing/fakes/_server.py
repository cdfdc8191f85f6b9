"""What every fake vendor shares: a request handler served in-process or on a loopback port."""

from __future__ import annotations

import abc
import re
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime, timezone
from email.utils import format_datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import attrs
import httpx

__all__ = ["FakeVendor", "RecordedRequest"]

Fault = Callable[[httpx.Request], "httpx.Response | None"]
"""Looks at a request and answers it instead of the fake (a throttle, an outage), or passes."""

# A Host header the fake takes as the address it was asked at: a name or address, and a port.
_AUTHORITY = re.compile(r"[\w.\-]+(:\d{1,5})?|\[[0-9A-Fa-f:.]+\](:\d{1,5})?")

# Headers that carry credentials: recorded as present, never by value.
_SECRET_HEADERS = frozenset({"authorization", "x-api-key", "x-api-token", "cookie"})


@attrs.frozen
class RecordedRequest:
    """A request a fake received, for tests to assert on (credentials masked).

    Args:
        method: The HTTP method.
        url: The full URL, query included.
        headers: The headers, with credential values replaced by ``"***"``.
        status: The status the fake answered with.
    """

    method: str
    url: str
    headers: dict[str, str]
    status: int


class FakeVendor(abc.ABC):
    """An in-process fake of one vendor's API.

    A subclass implements :meth:`handle`. Tests reach it through :meth:`transport` (no socket) or
    :meth:`serve` (a real HTTP server on 127.0.0.1), queue faults with :meth:`add_fault`, and read
    :attr:`requests` afterwards. Requests are handled one at a time, as one consistent backend.
    """

    def __init__(self) -> None:
        self._lock = threading.RLock()
        self._faults: list[Fault] = []
        self.requests: list[RecordedRequest] = []

    @abc.abstractmethod
    def handle(self, request: httpx.Request) -> httpx.Response:
        """Answer ``request`` as the vendor would."""

    def now(self) -> datetime:
        """Return the vendor's clock: what its answers' ``Date`` header says (real time here).

        A fake with a clock of its own returns it, so a test can put the vendor's clock and the
        host's apart, as real clocks drift.
        """
        return datetime.now(timezone.utc)

    def add_fault(self, fault: Fault) -> None:
        """Let ``fault`` answer requests before the fake does, until it returns ``None`` again.

        Faults are asked in the order they were added; the first that answers wins.
        """
        with self._lock:
            self._faults.append(fault)

    def clear_faults(self) -> None:
        """Remove every fault."""
        with self._lock:
            self._faults.clear()

    def dispatch(self, request: httpx.Request) -> httpx.Response:
        """Answer ``request``: the first fault that answers, else :meth:`handle`; and record it."""
        with self._lock:
            response = None
            for fault in self._faults:
                response = fault(request)
                if response is not None:
                    break
            if response is None:
                response = self.handle(request)
            if "date" not in response.headers:
                # Every HTTP server dates its answers (RFC 9110 6.6.1), by its own clock.
                response.headers["Date"] = format_datetime(self.now(), usegmt=True)
            headers = {
                name: "***" if name.lower() in _SECRET_HEADERS else value
                for name, value in request.headers.items()
            }
            self.requests.append(
                RecordedRequest(request.method, str(request.url), headers, response.status_code)
            )
            return response

    def transport(self) -> httpx.MockTransport:
        """Return an httpx transport that answers from this fake without any socket."""
        return httpx.MockTransport(self.dispatch)

    @contextmanager
    def serve(self, *, host: str = "127.0.0.1", port: int = 0) -> Iterator[str]:
        """Serve this fake over HTTP; yield its base URL.

        Args:
            host: The address to listen on: loopback by default, so nothing outside the machine
                reaches the fake.
            port: The port; a free one (chosen by the system) when 0.

        Raises:
            OSError: The address cannot be listened on (the port is taken, say).
        """
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            # Headers and body go out in separate writes; with Nagle's algorithm on, loopback
            # answers then wait ~40 ms for a delayed acknowledgement each.
            disable_nagle_algorithm = True

            def _answer(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                # The address the client asked for, as a server reads it from the Host header:
                # answers that name the server (Salesforce's instance_url) name it the same way.
                authority = self.headers.get("Host") or ""
                if not _AUTHORITY.fullmatch(authority):
                    authority = f"{host}:{port}"
                request = httpx.Request(
                    self.command,
                    f"http://{authority}{self.path}",
                    headers=list(self.headers.items()),
                    content=body,
                )
                response = fake.dispatch(request)
                content = response.read()
                # Not send_response(), which would add a second Date from this machine's clock.
                self.log_request(response.status_code)
                self.send_response_only(response.status_code)
                self.send_header("Server", self.version_string())
                for name, value in response.headers.items():
                    if name.lower() not in {"content-length", "transfer-encoding", "connection"}:
                        self.send_header(name, value)
                self.send_header("Content-Length", str(len(content)))
                self.end_headers()
                self.wfile.write(content)

            do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _answer  # noqa: N815

            def log_message(self, format: str, *args: object) -> None:
                """Stay quiet: tests read :attr:`FakeVendor.requests` instead."""

        server = ThreadingHTTPServer((host, port), Handler)
        server.daemon_threads = True
        port = server.server_address[1]
        thread = threading.Thread(
            target=server.serve_forever,
            kwargs={"poll_interval": 0.05},
            name="fake-vendor",
            daemon=True,
        )
        thread.start()
        try:
            yield f"http://{host}:{port}"
        finally:
            server.shutdown()
            server.server_close()
            thread.join()
