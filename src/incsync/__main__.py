"""Run the command line as ``python -m incsync``, the same as the ``incsync`` script."""

from incsync.integrations.cli import main

__all__: list[str] = []

raise SystemExit(main())
