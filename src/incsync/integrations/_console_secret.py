"""The console secret's rule, shared by the console and ``incsync serve`` without Starlette.

``incsync serve`` checks the secret before it imports the web extra (so a short one is refused
even where the extra is missing), and the console checks it when it derives its keys: both say
the same thing, from here.
"""

from __future__ import annotations

from incsync.errors import ConfigurationError

__all__ = ["MINIMUM_SECRET_LENGTH", "SECRET_HINT", "check_secret"]

MINIMUM_SECRET_LENGTH = 16
"""The shortest console secret accepted: shorter ones are guessed too easily."""

SECRET_HINT = "make one with: python -c 'import secrets; print(secrets.token_urlsafe(32))'"
"""How to make a good secret, for the errors that ask for one."""


def check_secret(secret: str) -> str:
    """Return ``secret`` if it is long enough to be the console's.

    Raises:
        ConfigurationError: It is shorter than :data:`MINIMUM_SECRET_LENGTH`.
    """
    if len(secret) < MINIMUM_SECRET_LENGTH:
        raise ConfigurationError(
            f"the console secret must be at least {MINIMUM_SECRET_LENGTH} characters long; "
            + SECRET_HINT
        )
    return secret
