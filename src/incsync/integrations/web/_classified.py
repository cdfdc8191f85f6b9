"""Every source's status for the list, kept between requests: only what changed is classified.

Classifying is most of a list's cost at 10,000 sources (:func:`~incsync.status.status_of` words
each source's hover too). A status depends on the present only through the thresholds its
:attr:`~incsync.status.SourceStatus.reason_until` names, so a status classified from a state
stays right for an equal state until then (the console shows the reason, colour, icon and label;
never the hover, whose words change with the minute). :func:`classify` re-uses such statuses and
classifies the rest with ``status_of``, the one classifier: after a cycle's end it classifies
one source, after a threshold passes the sources it concerns. A source's policy is taken to stay
the same for the console's life, as ``create_app`` was given it.
"""

from __future__ import annotations

import functools
import hashlib
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime

import attrs

from incsync.state import SourceState
from incsync.status import SourceStatus, StatusPolicy, status_of

__all__ = ["Classified", "classify"]


# Not slotted, so that the digest can be kept once computed (functools.cached_property).
@attrs.frozen(slots=False)
class Classified:
    """A source's state, its status, and the present it was classified at."""

    state: SourceState
    status: SourceStatus
    at: datetime

    @functools.cached_property
    def digest(self) -> bytes:
        """The state and its reason, digested, for the list's entity tag.

        Kept with the status, it is computed once per change, and only once a poll asks for it
        (a first page does not): not once per poll for every source.
        """
        text = f"{self.state!r}\0{self.status.reason.value}"
        return hashlib.sha256(text.encode("utf-8", "surrogatepass")).digest()

    def holds(self, state: SourceState, now: datetime) -> bool:
        """Whether the status is still right for ``state`` at ``now``.

        Only from its own present on: a clock set back could cross a threshold backwards.
        """
        until = self.status.reason_until
        return self.at <= now and (until is None or now < until) and self.state == state


def classify(
    states: Sequence[SourceState],
    kept: Mapping[str, Classified],
    now: datetime,
    policy: Callable[[str], StatusPolicy],
) -> list[Classified]:
    """Return each state's status at ``now``, in order, re-using those of ``kept`` that hold.

    Args:
        states: The sources' states, as just read.
        kept: The statuses classified before, by key.
        now: The present.
        policy: Each source's thresholds, by key.
    """
    classified = []
    for state in states:
        before = kept.get(state.key)
        if before is not None and before.holds(state, now):
            classified.append(before)
        else:
            status = status_of(state, now=now, policy=policy(state.key))
            classified.append(Classified(state, status, now))
    return classified
