"""What a person did to a source (reset, cancel, resume), who did it and when: the action log.

A reset, a cancel or a resume changes what a source does next, and whoever looks at the source
later must be able to see who asked for it. :class:`ActionEntry` is that record. The engine's
:meth:`~incsync.engine.SyncEngine.reset`, :meth:`~incsync.engine.SyncEngine.cancel` and
:meth:`~incsync.engine.SyncEngine.resume` hand one to the store with the change, and the store
keeps it in the same transaction (:meth:`~incsync.protocols.StateStore.actions` reads them back):
a change is never made without its record, nor recorded without being made.

The log is kept apart from the cycle history (:mod:`incsync.history`) on purpose: an action is
no cycle, so it must not count among the status's "last 24 cycles", nor push a cycle out of the
history's retention, and it stays when the history is turned off. Actions are made by people and
are few; a store keeps every one.

:func:`available_actions` is the one rule of which actions make sense in which phase, for a screen
that offers them.
"""

from __future__ import annotations

import enum
from datetime import datetime

import attrs

from incsync.errors import ConfigurationError
from incsync.state import Phase, check_source_key
from incsync.timestamps import ensure_utc

__all__ = [
    "ACTOR_LENGTH",
    "Action",
    "ActionEntry",
    "available_actions",
    "check_actor",
]


class Action(enum.Enum):
    """A change a person may make to a source."""

    RESET = "reset"
    """Re-read and re-apply every record; no transaction is deleted."""
    CANCEL = "cancel"
    """Stop syncing until resumed or reset; no transaction is deleted."""
    RESUME = "resume"
    """Let a cancelled or stopped source run again."""


ACTOR_LENGTH = 200
"""The most characters an actor's name keeps; a longer one is an error, not cut silently."""


def check_actor(value: object) -> str:
    """Return ``value`` when it can name who made an action (the one rule for actors' names).

    Names are shown on screens and terminals: printable text only, not blank, at most
    :data:`ACTOR_LENGTH` characters.

    Raises:
        ConfigurationError: It cannot.
    """
    if (
        not isinstance(value, str)
        or not value.strip()
        or len(value) > ACTOR_LENGTH
        or not value.isprintable()
    ):
        raise ConfigurationError(
            f"an action's actor must be printable text of 1 to {ACTOR_LENGTH} characters "
            f"(a user name, an e-mail address or a process), got {value!r}"
        )
    return value


def _actor(_instance: object, _attribute: attrs.Attribute[str], value: object) -> None:
    check_actor(value)


def _source_key(_instance: object, _attribute: attrs.Attribute[str], value: object) -> None:
    check_source_key(value)


def _at(value: datetime) -> datetime:
    return ensure_utc(value, "at")


def _action(_instance: object, _attribute: attrs.Attribute[Action], value: object) -> None:
    if not isinstance(value, Action):
        raise ConfigurationError(f"an action must be an Action, got {value!r}")


@attrs.frozen(slots=True)
class ActionEntry:
    """One action on one source, as the store keeps it.

    Args:
        source_key: The source acted on.
        action: What was done.
        actor: Who did it: the name the host's authorization gave, or the process
            (``host:pid:thread``) when the engine was called without one.
        at: When (aware; kept in UTC).

    Raises:
        ConfigurationError: The key cannot name a source, the action is not an :class:`Action`,
            or the actor is empty, too long or holds control characters.
        NaiveDatetimeError: ``at`` has no timezone.
    """

    source_key: str = attrs.field(validator=_source_key)
    action: Action = attrs.field(validator=_action)
    actor: str = attrs.field(validator=_actor)
    at: datetime = attrs.field(converter=_at)


_WHEN_STOPPED = (Action.RESET, Action.RESUME)
_WHEN_RUNNING = (Action.RESET, Action.CANCEL)


def available_actions(phase: Phase) -> tuple[Action, ...]:
    """Return the actions that change something for a source in ``phase``, in screen order.

    Reset always does (it starts a full re-read). Cancel only while the source is not cancelled
    or stopped already; resume only then (:func:`incsync.state.resume` leaves any other phase as
    it is).
    """
    return _WHEN_STOPPED if phase in (Phase.CANCELLED, Phase.STOPPED) else _WHEN_RUNNING
