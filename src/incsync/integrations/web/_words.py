"""The console's sentences that name the core's values: reasons, next steps, outcomes, actions.

Each is a message id of the catalogs (marked ``N_`` so that extraction finds it) and is shown
through :class:`~._i18n.Texts`. The colour, the reason and the label are decided by
:func:`incsync.status.classify_status`; these only say them in the viewer's language.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType

from incsync.actions import Action
from incsync.integrations.web._listing import SortKey
from incsync.results import Outcome
from incsync.status import StatusColor, StatusReason

__all__ = [
    "ACTION_CONSEQUENCES",
    "ACTION_DONE",
    "ACTION_NAMES",
    "COLOR_NAMES",
    "COLUMN_NAMES",
    "MEANINGS",
    "OUTCOME_NAMES",
    "SORT_NAMES",
    "auth_next_step",
    "next_step",
]


def N_(message: str) -> str:  # noqa: N802 - the name gettext's tools look for
    """Mark ``message`` for the catalogs; it is translated where it is shown."""
    return message


MEANINGS: Mapping[StatusReason, str] = MappingProxyType(
    {
        StatusReason.CANCELLED: N_("Synchronization was cancelled; no transaction was deleted."),
        StatusReason.STOPPED: N_("Synchronization stopped after repeated errors."),
        StatusReason.RESETTING: N_("Synchronization was reset and re-reads every record."),
        StatusReason.STARTING: N_("Synchronization is starting; no cycle has completed yet."),
        StatusReason.SYNC_OVERDUE: N_("No synchronization was attempted when one was due."),
        StatusReason.RETRYING: N_(
            "No cycle has completed for hours, so recent changes are not seen; attempts continue."
        ),
        StatusReason.RECENT_CHANGES: N_("Synchronized recently; the source changed recently."),
        StatusReason.NO_RECENT_CHANGES: N_(
            "Synchronized recently; the source has not changed recently."
        ),
    }
)
"""One sentence per reason, for the details and the inline text of red rows."""

_NEXT_STEPS: Mapping[StatusReason, str] = MappingProxyType(
    {
        StatusReason.STOPPED: N_("Fix the cause, then resume the source."),
        StatusReason.SYNC_OVERDUE: N_(
            "Check that the scheduler that starts cycles (incsync run) is running."
        ),
    }
)


def auth_next_step() -> str:
    """The next step of a source whose credentials were rejected."""
    return N_("Credentials rejected: reconnect the source, then resume it.")


def next_step(reason: StatusReason, auth_failed: bool) -> str | None:
    """Return what a person does next about a red source, ``None`` for other reasons.

    Args:
        reason: The status's reason.
        auth_failed: The last error was the source rejecting the credentials.
    """
    if reason is StatusReason.STOPPED and auth_failed:
        return auth_next_step()
    return _NEXT_STEPS.get(reason)


COLOR_NAMES: Mapping[StatusColor, str] = MappingProxyType(
    {
        StatusColor.RED: N_("Red"),
        StatusColor.ORANGE: N_("Orange"),
        StatusColor.GREY: N_("Grey"),
        StatusColor.GREEN: N_("Green"),
    }
)
"""Colour names for the filter, most urgent first."""

ACTION_NAMES: Mapping[Action, str] = MappingProxyType(
    {Action.RESET: N_("Reset"), Action.CANCEL: N_("Cancel"), Action.RESUME: N_("Resume")}
)

ACTION_CONSEQUENCES: Mapping[Action, str] = MappingProxyType(
    {
        Action.RESET: N_("Re-reads every record; deletes nothing."),
        Action.CANCEL: N_("Stops syncing; no transaction is deleted."),
        Action.RESUME: N_("Lets the source sync again with its next cycle."),
    }
)

ACTION_DONE: Mapping[Action, str] = MappingProxyType(
    {
        Action.RESET: N_("Reset by {actor}"),
        Action.CANCEL: N_("Cancelled by {actor}"),
        Action.RESUME: N_("Resumed by {actor}"),
    }
)
"""How the history names an action and who made it."""

OUTCOME_NAMES: Mapping[Outcome, str] = MappingProxyType(
    {
        Outcome.COMPLETED: N_("Completed"),
        Outcome.FAILED: N_("Failed"),
        Outcome.INTERRUPTED_RESET: N_("Interrupted by a reset"),
        Outcome.INTERRUPTED_CANCEL: N_("Interrupted by a cancel"),
        Outcome.INTERRUPTED_STOP: N_("Interrupted by a stop"),
        Outcome.SKIPPED_RUNNING: N_("Skipped: running elsewhere"),
        Outcome.SKIPPED_CANCELLED: N_("Skipped: cancelled"),
        Outcome.SKIPPED_STOPPED: N_("Skipped: stopped"),
        Outcome.SKIPPED_WAITING: N_("Skipped: waiting"),
    }
)

SORT_NAMES: Mapping[SortKey, str] = MappingProxyType(
    {
        SortKey.STATUS: N_("Status"),
        SortKey.NAME: N_("Name"),
        SortKey.LAST_CHANGE: N_("Last change"),
        SortKey.LAST_SYNC: N_("Last sync"),
    }
)

COLUMN_NAMES: Mapping[SortKey, str] = MappingProxyType(
    {
        SortKey.NAME: N_("Source"),
        SortKey.STATUS: N_("Status"),
        SortKey.LAST_CHANGE: N_("Last change"),
        SortKey.LAST_SYNC: N_("Last sync"),
    }
)
"""The list's sortable columns, in the table's order, with their headings."""
