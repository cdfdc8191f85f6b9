"""incsync: keep a host application's transactions in step with the business systems it connects.

The public API is re-exported here; everything else is an implementation detail.
"""

import logging

from incsync.connectors.base import BaseConnector
from incsync.cursor import Cursor, Window
from incsync.engine import SyncEngine
from incsync.errors import (
    AuthError,
    BadRecordError,
    BadResponseError,
    ConfigurationError,
    GenerationChangedError,
    IncsyncError,
    LeaseLostError,
    NaiveDatetimeError,
    PermanentSourceError,
    RateLimitedError,
    ResultCapError,
    SourceError,
    StaleWriteError,
    StateConflictError,
    StoreError,
    TransientSourceError,
)
from incsync.history import CycleEntry, HistoryRetention, HistorySummary, summarize
from incsync.humanize import TimeText, exact_time, relative_time, time_text
from incsync.policy import SyncPolicy
from incsync.protocols import (
    AtomicPageStore,
    Clock,
    Connector,
    ProgressCallback,
    StateStore,
    TokenKeeper,
    TokenStore,
    TransactionSink,
)
from incsync.records import ApplyResult, Page, Record, RejectedRecord, Transaction
from incsync.results import CycleProgress, CycleResult, Outcome
from incsync.scheduling import DueSource, SourcePlan, due_sources, run_due
from incsync.state import (
    Checkpoint,
    CountCheck,
    ErrorInfo,
    Lease,
    Phase,
    SkipReason,
    SourceState,
)
from incsync.status import (
    SourceStatus,
    StatusColor,
    StatusIcon,
    StatusNote,
    StatusPolicy,
    StatusReason,
    classify_status,
    status_of,
    statuses_of,
)
from incsync.stores import InMemoryStore, SQLiteStore
from incsync.tokens import StoreTokenKeeper

__version__ = "0.1.0"

# A library logs but leaves output to the application: without logging configured, say nothing.
logging.getLogger("incsync").addHandler(logging.NullHandler())

__all__ = [
    "ApplyResult",
    "AtomicPageStore",
    "AuthError",
    "BadRecordError",
    "BadResponseError",
    "BaseConnector",
    "Checkpoint",
    "Clock",
    "ConfigurationError",
    "Connector",
    "CountCheck",
    "Cursor",
    "CycleEntry",
    "CycleProgress",
    "CycleResult",
    "DueSource",
    "ErrorInfo",
    "GenerationChangedError",
    "HistoryRetention",
    "HistorySummary",
    "InMemoryStore",
    "IncsyncError",
    "Lease",
    "LeaseLostError",
    "NaiveDatetimeError",
    "Outcome",
    "Page",
    "PermanentSourceError",
    "Phase",
    "ProgressCallback",
    "RateLimitedError",
    "Record",
    "RejectedRecord",
    "ResultCapError",
    "SQLiteStore",
    "SkipReason",
    "SourceError",
    "SourcePlan",
    "SourceState",
    "SourceStatus",
    "StaleWriteError",
    "StateConflictError",
    "StateStore",
    "StatusColor",
    "StatusIcon",
    "StatusNote",
    "StatusPolicy",
    "StatusReason",
    "StoreError",
    "StoreTokenKeeper",
    "SyncEngine",
    "SyncPolicy",
    "TimeText",
    "TokenKeeper",
    "TokenStore",
    "Transaction",
    "TransactionSink",
    "TransientSourceError",
    "Window",
    "__version__",
    "classify_status",
    "due_sources",
    "exact_time",
    "relative_time",
    "run_due",
    "status_of",
    "statuses_of",
    "summarize",
    "time_text",
]
