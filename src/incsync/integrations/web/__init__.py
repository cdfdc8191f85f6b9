"""The Automated Import console: a live web page of every source, with Reset, Cancel and Resume.

An ASGI application (Starlette) that reads any :class:`~incsync.protocols.StateStore`; install it
with the ``web`` extra (``pip install 'incsync[web]'``). Mount :func:`create_app`'s result in a
FastAPI, Starlette or Django (ASGI) host, put it behind a WSGI host through an adapter, or run
``incsync serve``. docs/console.md is the guide.

Without an ``authorize`` callback (or a ``secret``), the console is read-only.
"""

from __future__ import annotations

from incsync.integrations.web._app import Authorizer, create_app

__all__ = ["Authorizer", "create_app"]
