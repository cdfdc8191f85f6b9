"""The TOML config file of the command line: where state lives and which sources to sync.

Reading is two steps, so that commands which never call a source (``status``, ``reset``…) work
without its credentials: :func:`load_config` checks the whole file's shape, and
:func:`incsync.integrations.cli._secrets.build_connector` reads a source's secrets and builds
its connector.
Every problem is one :class:`ConfigFileError` naming the file, the key and what to do. No message
repeats a secret: a secret written in the file is refused without being echoed, environment
values are never shown, and what a connector says about its settings is masked.
"""

from __future__ import annotations

import argparse
import re
import sys
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import attrs

from incsync.errors import ConfigurationError
from incsync.history import DEFAULT_HISTORY_RETENTION, HistoryRetention
from incsync.integrations.cli._connectors import (
    CONNECTOR_TYPES,
    KINDS,
    ConnectorType,
    Setting,
    Settings,
)
from incsync.integrations.cli._parser import parse_interval
from incsync.integrations.cli._tokens import TOKENS_IN_STORE, default_token_path
from incsync.mapping import TransactionMapping, preset
from incsync.policy import SettingRule, SyncPolicy, flag, whole_number_setting
from incsync.views import terminal_safe

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on Python 3.10 only
    import tomli as tomllib  # type: ignore[import-not-found, unused-ignore]

__all__ = [
    "Config",
    "ConfigFileError",
    "RunConfig",
    "SecretRef",
    "SourceConfig",
    "StoreConfig",
    "dotted",
    "load_config",
]

STORE_KINDS = ("sqlite", "postgres")
"""The stores a config file can name in ``store.kind``."""
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_BARE_KEY = re.compile(r"[A-Za-z0-9_-]+")


class ConfigFileError(ConfigurationError):
    """The config file (or an environment variable it names) is wrong.

    Attributes:
        path: The config file.
        key: The dotted key at fault (``sources.acme.token_env``), or ``""`` for the whole file.
        problem: What is wrong and what to do, without any value that could be a secret.
    """

    def __init__(self, path: Path, key: str, problem: str) -> None:
        where = f"{path}: {key}" if key else str(path)
        super().__init__(f"{where}: {problem}")
        self.path = path
        self.key = key
        self.problem = problem


def dotted(*parts: str) -> str:
    """Return a TOML dotted key, quoting the parts that are not bare keys."""
    return ".".join(part if _BARE_KEY.fullmatch(part) else f'"{part}"' for part in parts)


@attrs.frozen
class StoreConfig:
    """Where source states and transactions live.

    Args:
        kind: ``"sqlite"`` or ``"postgres"``.
        path: The SQLite file (relative paths are taken from the config file's directory).
        conninfo_env: The environment variable holding the PostgreSQL connection string.
        schema: The PostgreSQL schema.
    """

    kind: str
    path: Path | None = None
    conninfo_env: str | None = None
    schema: str = "incsync"


@attrs.frozen
class RunConfig:
    """How ``incsync run`` schedules and how cautious its engine is: the ``[run]`` table.

    Args:
        interval: How often a source syncs when its table sets no ``interval``.
        workers: Cycles running at once.
        per_account_limit: Cycles of one vendor account running at once.
        policy: The engine's settings: ``count_interval`` and ``reconcile_drift`` from the
            table, the others :class:`~incsync.policy.SyncPolicy`'s defaults.
    """

    interval: timedelta = timedelta(hours=1)
    workers: int = 4
    per_account_limit: int = 1
    policy: SyncPolicy = attrs.field(factory=SyncPolicy)


@attrs.frozen
class SecretRef:
    """A secret setting of a source, given as the name of an environment variable.

    Args:
        name: The setting the connector's factory receives the value as (``token``).
        key: The key of the source's table that names the variable (``token_env``).
        variable: The environment variable (``HUBSPOT_TOKEN``).
    """

    name: str
    key: str
    variable: str


@attrs.frozen
class SourceConfig:
    """One source of the file: its key, connector type and settings.

    Args:
        key: The source's key (its name in the state store).
        connector_type: The connector type it names.
        settings: Validated values of its non-secret settings, with defaults filled in.
        secrets: Its secret settings, each with the environment variable that holds it.
        interval: Time between the starts of two of its cycles.
        account: The vendor account whose concurrency limit it shares (default: its key).
        mapping: The mapping its records are kept mapped by (the ``mapping`` key names a
            preset, ``"quickbooks/Invoice"``), or ``None``.
    """

    key: str
    connector_type: ConnectorType
    settings: Mapping[str, Any]
    secrets: tuple[SecretRef, ...] = ()
    interval: timedelta = timedelta(hours=1)
    account: str = attrs.field(default=attrs.Factory(lambda self: self.key, takes_self=True))
    mapping: TransactionMapping | None = None


@attrs.frozen
class Config:
    """A validated config file.

    Args:
        path: The file it was read from.
        store: Where state lives.
        sources: The sources, in the file's order.
        run: How ``incsync run`` schedules.
        history: How much cycle history the store keeps (the ``[history]`` table).
        tokens: The token file, where rotated OAuth2 tokens are kept; ``None`` keeps them in the
            state store.
    """

    path: Path
    store: StoreConfig
    sources: tuple[SourceConfig, ...]
    run: RunConfig = RunConfig()
    history: HistoryRetention = DEFAULT_HISTORY_RETENTION
    tokens: Path | None = attrs.field(
        default=attrs.Factory(
            lambda self: default_token_path(self.store.path, self.path), takes_self=True
        )
    )

    def source(self, key: str) -> SourceConfig | None:
        """Return the source with this key, or ``None``."""
        return next((source for source in self.sources if source.key == key), None)

    def selected(self, keys: Sequence[str] | None) -> tuple[SourceConfig, ...]:
        """Return the sources ``keys`` name, in that order; every source when none is named.

        Raises:
            ConfigFileError: A key names no source of the file (see :meth:`no_source`).
        """
        if not keys:
            return self.sources
        chosen = []
        for key in keys:
            source = self.source(key)
            if source is None:
                raise self.no_source(key)
            chosen.append(source)
        return tuple(chosen)

    def mappings(self) -> dict[str, TransactionMapping]:
        """Return the mapping of every source that names one, by key (the store keeps them)."""
        return {source.key: source.mapping for source in self.sources if source.mapping}

    def require_mapping(self, key: str) -> TransactionMapping:
        """Return the mapping of the source ``key``.

        Raises:
            ConfigFileError: The key names no source of the file, or one without a mapping.
        """
        source = self.source(key)
        if source is None:
            raise self.no_source(key)
        if source.mapping is None:
            raise ConfigFileError(
                self.path,
                dotted("sources", key, "mapping"),
                "missing; name the mapping preset its records are kept mapped by, for example "
                'mapping = "quickbooks/Invoice"',
            )
        return source.mapping

    def no_source(self, key: str) -> ConfigFileError:
        """Return the error for a key that names no source, listing the sources of the file."""
        known = ", ".join(source.key for source in self.sources)
        return ConfigFileError(self.path, "sources", f"no source {key!r}; the sources are {known}")


def _type_name(value: object) -> str:
    names = {bool: "a boolean", int: "an integer", float: "a number", str: "a string"}
    for kind, name in names.items():
        if type(value) is kind:
            return name
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "a table"
    return "a date or time"


def _table(path: Path, key: str, value: object) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise ConfigFileError(path, key, f"must be a table, got {_type_name(value)}")
    return value


def _converted(path: Path, key: str, setting: Setting, value: object) -> object:
    wrong = ConfigFileError(path, key, f"must be {KINDS[setting.kind]}, got {_type_name(value)}")
    if setting.kind == "text":
        if not isinstance(value, str):
            raise wrong
        if not value.strip():
            raise ConfigFileError(path, key, "must not be empty")
        return value
    if setting.kind == "integer":
        if isinstance(value, bool) or not isinstance(value, int):
            raise wrong
        return value
    if setting.kind == "number":
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise wrong
        return float(value)
    if setting.kind == "boolean":
        if not isinstance(value, bool):
            raise wrong
        return value
    if setting.kind == "text_list":
        if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
            raise wrong
        return tuple(value)
    # timestamp: a TOML offset date-time (a local one would be ambiguous).
    if not isinstance(value, datetime):
        raise wrong
    if value.tzinfo is None:
        raise ConfigFileError(path, key, "needs a UTC offset, like 2026-01-01T00:00:00Z")
    return value


def _env_name(path: Path, key: str, value: object) -> str:
    if not isinstance(value, str):
        raise ConfigFileError(path, key, f"must be a string, got {_type_name(value)}")
    if not _ENV_NAME.fullmatch(value):
        # Not echoed: a secret pasted here by mistake must not reach a terminal or a log.
        raise ConfigFileError(
            path,
            key,
            "must be the name of an environment variable (letters, digits and _), "
            "not the secret itself",
        )
    return value


def _interval(path: Path, key: str, value: object) -> timedelta:
    if not isinstance(value, str):
        raise ConfigFileError(path, key, f'must be a string like "1h", got {_type_name(value)}')
    try:
        interval = parse_interval(value)
    except argparse.ArgumentTypeError as error:
        raise ConfigFileError(path, key, str(error)) from None
    if interval < timedelta(seconds=1):
        raise ConfigFileError(path, key, "must be at least 1s")
    return interval


def _checked(path: Path, key: str, rule: SettingRule, value: object, accepts: str) -> Any:
    """Return ``value`` if the library's ``rule`` for the setting holds, in the file's words."""
    if not rule.holds(value):
        # A number or a boolean is no secret, and saying which one was read is clearer.
        plain = isinstance(value, (bool, int, float))
        got = str(value).lower() if plain else _type_name(value)
        raise ConfigFileError(path, key, f"must be {accepts}, got {got}")
    return value


def _at_least_one(path: Path, key: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigFileError(path, key, "must be a whole number of at least 1")
    return value


_COUNT_OFF = "off"  # count_interval's value that turns counting off (SyncPolicy's None)


def _count_interval(path: Path, value: object) -> timedelta | None:
    if value == _COUNT_OFF:
        return None
    try:
        return _interval(path, "run.count_interval", value)
    except ConfigFileError as error:
        raise ConfigFileError(
            path, error.key, f'{error.problem}; or "{_COUNT_OFF}" to never count'
        ) from None


def _run(path: Path, raw: object) -> RunConfig:
    table = dict(_table(path, "run", {} if raw is None else raw))
    defaults = RunConfig()
    interval = table.pop("interval", None)
    workers = table.pop("workers", defaults.workers)
    limit = table.pop("per_account_limit", defaults.per_account_limit)
    count_interval = table.pop("count_interval", None)
    reconcile = table.pop("reconcile_drift", defaults.policy.reconcile_drift)
    if table:
        raise ConfigFileError(
            path,
            dotted("run", sorted(table)[0]),
            "unknown setting; accepted: interval, workers, per_account_limit, count_interval, "
            "reconcile_drift",
        )
    policy = SyncPolicy(
        count_interval=defaults.policy.count_interval
        if count_interval is None
        else _count_interval(path, count_interval),
        reconcile_drift=_checked(path, "run.reconcile_drift", flag, reconcile, "true or false"),
    )
    return RunConfig(
        interval=defaults.interval
        if interval is None
        else _interval(path, "run.interval", interval),
        workers=_at_least_one(path, "run.workers", workers),
        per_account_limit=_at_least_one(path, "run.per_account_limit", limit),
        policy=policy,
    )


_KEPT_CYCLES = whole_number_setting(0)  # HistoryRetention.max_cycles, where TOML has no None


def _history(path: Path, raw: object) -> HistoryRetention:
    table = dict(_table(path, "history", {} if raw is None else raw))
    defaults = DEFAULT_HISTORY_RETENTION
    cycles = table.pop("keep_cycles", defaults.max_cycles)
    keep_for = table.pop("keep_for", None)
    if table:
        raise ConfigFileError(
            path,
            dotted("history", sorted(table)[0]),
            "unknown setting; accepted: keep_cycles, keep_for",
        )
    return HistoryRetention(
        max_cycles=_checked(
            path, "history.keep_cycles", _KEPT_CYCLES, cycles, "a whole number of at least 0"
        ),
        max_age=defaults.max_age
        if keep_for is None
        else _interval(path, "history.keep_for", keep_for),
    )


def _source(path: Path, key: str, raw: object, run: RunConfig) -> SourceConfig:
    if not key or terminal_safe(key) != key:
        raise ConfigFileError(path, dotted("sources", key), "a source key must be printable text")
    table = dict(_table(path, dotted("sources", key), raw))
    # Scheduling keys belong to every type, so they are taken out before the type's own check.
    interval = table.pop("interval", None)
    account = table.pop("account", key)
    mapping = table.pop("mapping", None)
    if not isinstance(account, str) or not account.strip():
        raise ConfigFileError(path, dotted("sources", key, "account"), "must be a non-empty string")
    at = dotted("sources", key, "interval")
    every = run.interval if interval is None else _interval(path, at, interval)
    return attrs.evolve(
        _typed_source(path, key, table),
        interval=every,
        account=account,
        mapping=None if mapping is None else _mapping(path, key, mapping),
    )


def _mapping(path: Path, key: str, value: object) -> TransactionMapping:
    """Return the preset a source's ``mapping = "vendor/object"`` names."""
    at = dotted("sources", key, "mapping")
    vendor, _, name = value.partition("/") if isinstance(value, str) else ("", "", "")
    if not vendor or not name:
        raise ConfigFileError(
            path, at, 'name a mapping preset as "vendor/object", for example "quickbooks/Invoice"'
        )
    try:
        return preset(vendor, name)
    except ConfigurationError as error:
        raise ConfigFileError(path, at, str(error)) from None


def _typed_source(path: Path, key: str, table: dict[str, Any]) -> SourceConfig:
    type_value = table.pop("type", None)
    if type_value is None:
        raise ConfigFileError(
            path,
            dotted("sources", key, "type"),
            f"missing; choose one of {', '.join(sorted(CONNECTOR_TYPES))}",
        )
    connector_type = CONNECTOR_TYPES.get(type_value) if isinstance(type_value, str) else None
    if connector_type is None:
        raise ConfigFileError(
            path,
            dotted("sources", key, "type"),
            f"unknown connector type; choose one of {', '.join(sorted(CONNECTOR_TYPES))}",
        )
    if connector_type.parse is not None:
        return _parsed_source(path, key, connector_type, connector_type.parse, table)
    # A secret written in the file is the first thing to report, whatever else is wrong.
    for name, setting in connector_type.settings.items():
        if setting.secret and name in table:
            raise ConfigFileError(
                path,
                dotted("sources", key, name),
                f"secrets are never written in the config file: put it in an environment "
                f'variable and name that variable with {name}_env = "VARIABLE"',
            )
    settings: dict[str, Any] = {}
    secrets: list[SecretRef] = []
    for name, setting in connector_type.settings.items():
        at = dotted("sources", key, name)
        if setting.secret:
            env_key = f"{name}_env"
            if env_key in table:
                variable = _env_name(path, at + "_env", table.pop(env_key))
                secrets.append(SecretRef(name, env_key, variable))
            elif setting.required:
                raise ConfigFileError(
                    path, at + "_env", f"missing; name the environment variable holding the {name}"
                )
        elif name in table:
            settings[name] = _converted(path, at, setting, table.pop(name))
        elif setting.required:
            raise ConfigFileError(path, at, f"missing; give {setting.help or name}")
        else:
            settings[name] = setting.default
    if table:
        unknown = sorted(table)[0]
        accepted = sorted(
            f"{name}_env" if setting.secret else name
            for name, setting in connector_type.settings.items()
        )
        raise ConfigFileError(
            path,
            dotted("sources", key, unknown),
            f"unknown setting for type {connector_type.name!r}; "
            f"accepted: type, interval, account, mapping, {', '.join(accepted)}",
        )
    return SourceConfig(key, connector_type, settings, tuple(secrets))


def _parsed_source(
    path: Path,
    key: str,
    connector_type: ConnectorType,
    parse: Callable[[Mapping[str, Any]], tuple[Settings, Mapping[str, str]]],
    table: Mapping[str, Any],
) -> SourceConfig:
    try:
        settings, variables = parse(table)
    except ConfigurationError as error:
        # The type's messages start with the dotted key inside the source's table.
        inner, _, problem = str(error).partition(": ")
        at = f"{dotted('sources', key)}.{inner}" if problem else dotted("sources", key)
        raise ConfigFileError(path, at, problem or inner) from None
    secrets = tuple(SecretRef(name, name, variable) for name, variable in variables.items())
    return SourceConfig(key, connector_type, settings, secrets)


def _store(path: Path, raw: object) -> StoreConfig:
    if raw is None:
        raise ConfigFileError(path, "store", 'missing; add [store] with path = "incsync.db"')
    table = dict(_table(path, "store", raw))
    kind = table.pop("kind", "sqlite")
    if kind not in STORE_KINDS:
        raise ConfigFileError(path, "store.kind", f"must be one of {', '.join(STORE_KINDS)}")
    if kind == "sqlite":
        file = table.pop("path", None)
        if not isinstance(file, str) or not file.strip():
            problem = "missing" if file is None else f"must be a string, got {_type_name(file)}"
            raise ConfigFileError(path, "store.path", f"{problem}; give the SQLite file's path")
        config = StoreConfig("sqlite", path=path.parent / Path(file).expanduser())
    else:
        if "conninfo" in table:
            raise ConfigFileError(
                path,
                "store.conninfo",
                "a connection string may hold a password, so it is never written in the config "
                'file: put it in an environment variable and write conninfo_env = "VARIABLE"',
            )
        conninfo_env = _env_name(path, "store.conninfo_env", table.pop("conninfo_env", None))
        schema = table.pop("schema", "incsync")
        if not isinstance(schema, str) or not _ENV_NAME.fullmatch(schema):
            raise ConfigFileError(path, "store.schema", "must be a plain SQL name, like incsync")
        config = StoreConfig("postgres", conninfo_env=conninfo_env, schema=schema)
    if table:
        raise ConfigFileError(path, dotted("store", sorted(table)[0]), "unknown setting")
    return config


def load_config(path: Path) -> Config:
    """Read and check a config file; no environment variable is read yet.

    Args:
        path: The TOML file.

    Returns:
        The validated config.

    Raises:
        ConfigFileError: The file is missing, not TOML, or a key is missing, unknown or wrong.
    """
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigFileError(
            path, "", "no such file; pass --config FILE or set INCSYNC_CONFIG"
        ) from None
    except (OSError, UnicodeDecodeError) as error:
        raise ConfigFileError(path, "", f"cannot be read: {error}") from None
    try:
        document = tomllib.loads(text)
    except tomllib.TOMLDecodeError as error:
        raise ConfigFileError(path, "", f"is not valid TOML: {error}") from None
    unknown = sorted(set(document) - {"store", "sources", "run", "history", "tokens"})
    if unknown:
        raise ConfigFileError(
            path,
            dotted(unknown[0]),
            "unknown key; a config file has tokens, [store], [run], [history] and [sources.KEY]",
        )
    store = _store(path, document.get("store"))
    run = _run(path, document.get("run"))
    history = _history(path, document.get("history"))
    raw_sources = _table(path, "sources", document.get("sources", {}))
    if not raw_sources:
        raise ConfigFileError(
            path, "sources", 'no source defined; add one, like [sources.demo] with type = "sample"'
        )
    sources = tuple(_source(path, key, raw, run) for key, raw in raw_sources.items())
    config = Config(path=path, store=store, sources=sources, run=run, history=history)
    tokens = document.get("tokens")
    if tokens is None:
        return config
    if not isinstance(tokens, str) or not tokens.strip():
        raise ConfigFileError(
            path, "tokens", f'must be the token file\'s path, or "{TOKENS_IN_STORE}", as a string'
        )
    if tokens == TOKENS_IN_STORE:
        return attrs.evolve(config, tokens=None)
    return attrs.evolve(config, tokens=path.parent / Path(tokens).expanduser())
