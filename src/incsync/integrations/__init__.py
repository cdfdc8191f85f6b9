"""Ways to run incsync inside other systems: Celery workers, and the ``incsync`` command.

* :mod:`incsync.integrations.celery` (extra ``celery``): tasks for a host's own Celery app;
* :mod:`incsync.integrations.cli` (extra ``cli``): the ``incsync`` command.

Each is imported on its own; this package imports neither.
"""

__all__: list[str] = []
