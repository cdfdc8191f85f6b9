"""The parts of ``python -m incsync.demo`` that are not its command line: data, steps, output.

:mod:`._world` builds the fake vendors, their history and the real connectors on one clock;
:mod:`._changes` makes the changes and the outage the steps show; :mod:`._steps` runs and checks
each step; :mod:`._checks` compares the SQLite sink with each fake's ground truth; and
:mod:`._console` lays the output out.
"""

from __future__ import annotations

__all__: list[str] = []
