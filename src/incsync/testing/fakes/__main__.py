"""``python -m incsync.testing.fakes serve VENDOR``: serve one fake vendor API for a person to try.

See :mod:`incsync.testing.fakes._serve`.
"""

from incsync.testing.fakes._serve import main

__all__: list[str] = []

raise SystemExit(main())
