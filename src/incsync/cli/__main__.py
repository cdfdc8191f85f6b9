"""Run the command line as ``python -m incsync.cli``, the same as the ``incsync`` script."""

from incsync.cli import main

__all__: list[str] = []

raise SystemExit(main())
