"""Connectors: the base class custom connectors subclass and the built-in ones."""

from incsync.connectors.base import BaseConnector, RawPage
from incsync.connectors.memory import InMemoryConnector, InMemorySource
from incsync.connectors.sample import generate_invoices, sample_source

__all__ = [
    "BaseConnector",
    "InMemoryConnector",
    "InMemorySource",
    "RawPage",
    "generate_invoices",
    "sample_source",
]
