"""An app on a loopback port of its own, served in a thread: ASGI by uvicorn, WSGI by waitress."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

import uvicorn
from starlette.types import ASGIApp
from waitress.server import BaseWSGIServer, create_server
from waitress.wasyncore import close_all, loop

if TYPE_CHECKING:
    from _typeshed.wsgi import WSGIApplication


@contextmanager
def served(app: ASGIApp, start_within: float = 10) -> Iterator[str]:
    """Serve ``app`` on a free loopback port; yield its base URL; stop it afterwards."""
    # Port 0: the system picks a free port as uvicorn binds, so no other process can take it.
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning", access_log=False)
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + start_within
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("uvicorn did not start")
        time.sleep(0.01)
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)


@contextmanager
def served_wsgi(app: WSGIApplication) -> Iterator[str]:
    """Serve a WSGI ``app`` with waitress on a free loopback port; yield its base URL."""
    sockets: dict[int, Any] = {}
    server = create_server(app, map=sockets, host="127.0.0.1", port=0, threads=4)
    assert isinstance(server, BaseWSGIServer)
    stop = threading.Event()

    def serve() -> None:
        # waitress's own loop, a short poll at a time, so that it ends here, in its thread: its
        # sockets closed from another thread would still be polled.
        while not stop.is_set():
            loop(timeout=0.05, map=sockets, count=1)
        close_all(sockets)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.getsockname()[1]}"
    finally:
        stop.set()
        thread.join(timeout=10)
        server.task_dispatcher.shutdown()
