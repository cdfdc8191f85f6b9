"""Tests for incsync.redaction: secrets never reach logs, errors or the state store."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from incsync.redaction import MASK, redact
from tests.strategies import secrets


def test_mask_is_three_asterisks() -> None:
    """The mask is the fixed text "***" (hosts grep logs for it)."""
    assert MASK == "***"


# declared secrets ---------------------------------------------------------------------------------


def test_declared_secrets_are_masked_everywhere() -> None:
    """Every occurrence of every declared secret is replaced by the mask."""
    text = "token s3cr3t-value failed; retried with s3cr3t-value and key AKIA1234 for tenant 42"
    assert redact(text, ["s3cr3t-value", "AKIA1234"]) == (
        "token *** failed; retried with *** and key *** for tenant 42"
    )


def test_longer_secrets_are_masked_before_their_prefixes() -> None:
    """When one secret contains another, the longer one is masked whole (no tail left behind)."""
    assert redact("k=abcd1234wxyz;", ["abcd", "abcd1234wxyz"]) == "k=***;"
    assert redact("k=abcd1234wxyz;", ["abcd1234wxyz", "abcd"]) == "k=***;"


@pytest.mark.parametrize("short", ["", "a", "ab", "abc"])
def test_secrets_shorter_than_four_characters_are_not_masked_verbatim(short: str) -> None:
    """Very short declared values would mask ordinary text, so they are ignored."""
    text = "a cab crossed abc street"
    assert redact(text, [short]) == text


def test_secrets_may_be_any_iterable() -> None:
    """secrets is consumed as an iterable (a generator works)."""
    assert redact("hello hunter22", (s for s in ["hunter22"])) == "hello ***"


# secret shapes ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Authorization: Bearer eyJhbGciOi.J9eyJzdWIi", "Authorization: *** ***"),
        ("sent bearer abc123def456 to the API", "sent bearer *** to the API"),
        ("header Basic dXNlcjpwYXNzd29yZA== rejected", "header Basic *** rejected"),
        ("using Token 0123456789abcdef", "using Token ***"),
    ],
)
def test_bearer_basic_and_token_credentials_are_masked(text: str, expected: str) -> None:
    """Authorization schemes followed by a credential lose the credential, in any case."""
    assert redact(text) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "GET https://api.example.com/v3/invoices?page=2&access_token=ya29.a0Af&limit=5",
            "GET https://api.example.com/v3/invoices?page=2&access_token=***&limit=5",
        ),
        ("POST /oauth2/token body: refresh_token=rt-123&grant_type=refresh_token", None),
        ("?api_key=k-1&apikey=k-2&api-token=k-3", "?api_key=***&apikey=***&api-token=***"),
        ("client_secret = cs_live_99, client_id=app-1", "client_secret = ***, client_id=app-1"),
        ("form password=hunter2&user=alice", "form password=***&user=alice"),
        ("X-Api-Key: 9f8e7d6c5b", "X-Api-Key: ***"),
        ("passwd:letmein; retry", "passwd:***; retry"),
        ("secret=abc id_token=def", "secret=*** id_token=***"),
    ],
)
def test_query_string_and_header_pairs_are_masked(text: str, expected: str | None) -> None:
    """name=value and name: value pairs with a secret-like name lose the value, nothing else."""
    redacted = redact(text)
    if expected is None:
        assert "rt-123" not in redacted
        assert "grant_type=refresh_token" in redacted
    else:
        assert redacted == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            '{"access_token": "ya29.a0Af", "expires_in": 3599}',
            '{"access_token": "***", "expires_in": 3599}',
        ),
        (
            '{"error": "bad", "client_secret":"cs_live_99"}',
            '{"error": "bad", "client_secret":"***"}',
        ),
        ("{'password': 'hunter2', 'user': 'alice'}", "{'password': '***', 'user': 'alice'}"),
        ('{"Refresh-Token": "rt-1"}', '{"Refresh-Token": "***"}'),
    ],
)
def test_json_pairs_are_masked(text: str, expected: str) -> None:
    """A quoted secret-like key's quoted value is masked in JSON and in Python reprs."""
    assert redact(text) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "postgres://sync:pa55w0rd@db.internal:5432/app",
            "postgres://sync:***@db.internal:5432/app",
        ),
        ("connect to https://alice:s3cret@api.example.com/x failed", None),
        ("sftp://user:p%40ss@files.example.com", "sftp://user:***@files.example.com"),
    ],
)
def test_passwords_in_urls_are_masked(text: str, expected: str | None) -> None:
    """scheme://user:password@host keeps the user and host and masks the password."""
    redacted = redact(text)
    if expected is None:
        assert redacted == "connect to https://alice:***@api.example.com/x failed"
    else:
        assert redacted == expected


@pytest.mark.parametrize(
    "text",
    [
        "",
        "connection reset by peer after 30s",
        "HTTP 503 Service Unavailable from https://api.example.com/v3/invoices?page=2&limit=100",
        "record 'INV-0000042': field 'updated_at' has no timezone: '2024-03-01T12:00:00'",
        "source 'acme/quickbooks' was reset during this cycle (generation 3 -> 4)",
        "rate limited: retry after 2024-03-01T12:00:00Z",
        "https://api.example.com:8443/v1/items?updated_since=2024-03-01T12:00:00Z",
        "ünïcödé and emoji 🚀 pass through",
    ],
)
def test_ordinary_text_is_untouched(text: str) -> None:
    """Messages without secrets come back exactly as they were."""
    assert redact(text) == text


# length bound -------------------------------------------------------------------------------------


def test_long_messages_are_cut_to_a_thousand_characters() -> None:
    """A message longer than 1,000 characters is cut there and marked with an ellipsis."""
    redacted = redact("x" * 5_000)
    assert redacted == "x" * 1_000 + "…"


def test_a_message_of_exactly_a_thousand_characters_is_kept_whole() -> None:
    """The bound is inclusive: 1,000 characters pass unchanged."""
    text = "y" * 1_000
    assert redact(text) == text


def test_secrets_are_masked_before_the_cut() -> None:
    """A secret straddling the cut is masked first, so no prefix of it survives the cut."""
    secret = "SECRETVALUE123"
    redacted = redact("x" * 995 + secret + "tail" * 10, [secret])
    assert "SECR" not in redacted
    assert redacted == ("x" * 995 + "***" + "tail" * 10)[:1_000] + "…"


# properties ---------------------------------------------------------------------------------------


@given(st.lists(secrets(), min_size=1, max_size=3), st.lists(st.text(max_size=40), max_size=5))
def test_redact_never_returns_a_declared_secret(declared: list[str], fragments: list[str]) -> None:
    """Wherever declared secrets (4+ credential characters) appear in a text, none survives."""
    text = "".join(
        fragment + declared[index % len(declared)] for index, fragment in enumerate(fragments)
    )
    redacted = redact(text, declared)
    for secret in declared:
        assert secret not in redacted


@given(st.text(max_size=2_000), st.lists(st.text(max_size=10), max_size=3))
def test_redact_output_is_bounded(text: str, declared: list[str]) -> None:
    """redact never returns more than 1,000 characters plus the ellipsis."""
    assert len(redact(text, declared)) <= 1_001


@given(st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789 .,()-", max_size=300))
def test_redact_is_idempotent(text: str) -> None:
    """Redacting an already redacted text changes nothing more (logs may redact twice)."""
    once = redact(text)
    assert redact(once) == once


# known leaks --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text",
    [
        "Credentials(client_id='app-1', client_secret='cs_live_99')",
        'conninfo: host=db password="hunter2x" dbname=app',
    ],
)
def test_quoted_values_after_equals_are_masked(text: str) -> None:
    """name='value' and name="value" lose the value, like name=value does."""
    redacted = redact(text)
    assert "cs_live_99" not in redacted
    assert "hunter2x" not in redacted


@pytest.mark.parametrize(
    "text",
    [
        "GET /1.1/account?oauth_token=tok-998877&count=5",
        "DB_PASSWORD=hunter2x in environment",
        '{"stripe_api_key": "sk_live_hunter2x"}',
    ],
)
def test_prefixed_secret_names_are_masked(text: str) -> None:
    """A secret-like name with a prefix (oauth_token, db_password, x_api_key) is still masked."""
    redacted = redact(text)
    assert "tok-998877" not in redacted
    assert "hunter2x" not in redacted


@pytest.mark.parametrize(
    "text",
    [
        "refresh_token: fix the scopes of the app",
        "token: expired",
        "password: must be at least 8 characters",
        "api_key: missing; set API_KEY",
    ],
)
def test_a_message_about_a_secret_keeps_its_words(text: str) -> None:
    """After "name:", the words messages use about a credential are not taken for its value."""
    assert redact(text) == text


@pytest.mark.parametrize(
    ("text", "masked"),
    [
        ("password: sunshine", "password: ***"),
        ("password: hunter2", "password: ***"),
        ("token=fix", "token=***"),
        ('token: "expired"', 'token: "***"'),
        ("x-api-key: Expired1", "x-api-key: ***"),
    ],
)
def test_any_other_value_after_a_secret_name_is_masked(text: str, masked: str) -> None:
    """A plain word is what an undeclared password looks like: only message words are kept, and
    only after a colon and unquoted; a name=value pair or a quoted value is always masked."""
    assert redact(text) == masked
