"""A source's secrets, from the environment and the kept tokens, and the connector built with them.

The second step of reading a config file (:mod:`._config` is the first): only ``incsync run``
needs it, so the other commands work without any source's credentials. No message repeats a
secret: environment values are never shown, and what a connector says about its settings is
masked.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from pathlib import Path

from incsync.connectors.http import HttpOptions
from incsync.errors import ConfigurationError, SourceError
from incsync.integrations.cli._config import Config, ConfigFileError, SourceConfig, dotted
from incsync.integrations.cli._connectors import HTTP_OPTIONS, SAVED_TOKENS, SavedTokens
from incsync.integrations.cli._tokens import NotedKeeper, TokenFile
from incsync.protocols import Connector, TokenKeeper, TokenStore
from incsync.redaction import redact
from incsync.tokens import StoreTokenKeeper, TokenCipher

__all__ = ["build_connector", "env_value", "secret_values", "token_keepers"]


def _looks_like_a_secret(name: str) -> bool:
    # Variable names are words (HUBSPOT_TOKEN); a long run mixing case and digits is more likely
    # a credential pasted where its variable's name belonged, and must not be printed back.
    mixed = any(c.islower() for c in name) and any(c.isdigit() for c in name)
    return len(name) >= 24 and mixed


def env_value(path: Path, key: str, variable: str, environ: Mapping[str, str]) -> str:
    """Return a variable's value from ``environ``.

    Raises:
        ConfigFileError: The variable is not set, or empty. The message names it, unless the
            name looks like a credential pasted in its place.
    """
    value = environ.get(variable, "")
    if not value:
        state = "is empty" if variable in environ else "is not set"
        if _looks_like_a_secret(variable):
            raise ConfigFileError(
                path,
                key,
                f"the environment variable named here {state}; the name is not shown because "
                "it looks like a secret: write the variable's name, not the secret",
            )
        raise ConfigFileError(path, key, f"environment variable {variable} {state}")
    return value


def secret_values(config: Config, environ: Mapping[str, str] = os.environ) -> list[str]:
    """Return every secret value the config's environment variables hold, for redaction."""
    names = [secret.variable for source in config.sources for secret in source.secrets]
    if config.store.conninfo_env is not None:
        names.append(config.store.conninfo_env)
    values = [environ[name] for name in names if environ.get(name)]
    if config.tokens is not None and any(s.connector_type.saves_tokens for s in config.sources):
        values.extend(TokenFile(config.tokens).values())
    return values


def build_connector(
    config: Config,
    source: SourceConfig,
    environ: Mapping[str, str] = os.environ,
    keepers: Callable[[str], TokenKeeper] | None = None,
    options: HttpOptions | None = None,
) -> Connector:
    """Read the source's secrets and build its connector.

    Args:
        config: The config the source belongs to.
        source: The source.
        environ: Where secrets are read.
        keepers: Return the token keeper of a source key (the token file's entry, or the state
            store's row), for a type whose vendor rotates refresh tokens: the tokens it holds,
            when it holds some, replace the refresh token's variable (which then need not be
            set), and every refresh is saved to it. ``None``: tokens are neither read nor kept.
        options: How a connector reading over HTTP sends its requests; the defaults otherwise.

    Returns:
        The connector.

    Raises:
        ConfigFileError: A named variable is not set, the kept tokens cannot be read, or the
            connector refused a setting.
    """
    settings = dict(source.settings)
    if options is not None:
        settings[HTTP_OPTIONS] = options
    if keepers is not None and source.connector_type.saves_tokens:
        keeper = keepers(source.key)
        try:
            stored = keeper.load()
        except (SourceError, ConfigurationError) as error:
            raise ConfigFileError(config.path, "tokens", str(error)) from None
        saved = SavedTokens(keeper=keeper)
        if stored is not None:
            settings["refresh_token"] = stored.refresh_token
            saved = SavedTokens(stored.access_token, stored.expires_at, keeper)
        settings[SAVED_TOKENS] = saved
    for secret in source.secrets:
        if secret.name == "refresh_token" and "refresh_token" in settings:
            continue  # taken from the kept tokens, which are newer than the initial grant
        at = f"{dotted('sources', source.key)}.{secret.key}"
        settings[secret.name] = env_value(config.path, at, secret.variable, environ)
    try:
        return source.connector_type.build(settings)
    except ConfigurationError as error:
        message = redact(str(error), secret_values(config, environ))
        raise ConfigFileError(config.path, dotted("sources", source.key), message) from None


def token_keepers(
    config: Config,
    store: TokenStore | None,
    note: Callable[[str], None],
    environ: Mapping[str, str] = os.environ,
) -> Callable[[str], TokenKeeper]:
    """Return the token keeper of each source: its token file entry, or its state store row.

    Args:
        config: The config, which says where tokens are kept.
        store: The open state store; needed only when the config keeps tokens there.
        note: Called with every token saved, so that what is printed masks it.
        environ: Where the encryption key of tokens kept in the store is read.

    Raises:
        ConfigFileError: The key of the tokens kept in the store is malformed.
    """
    if config.tokens is None:
        if store is None:
            raise ConfigurationError("tokens kept in the state store need the store open")
        kept = store
        try:
            cipher = TokenCipher.from_env(environ)
        except ConfigurationError as error:
            raise ConfigFileError(config.path, "tokens", str(error)) from None
        return lambda key: NotedKeeper(StoreTokenKeeper(kept, key, cipher=cipher), note)
    file = TokenFile(config.tokens)
    return lambda key: NotedKeeper(file.keeper(key), note)
