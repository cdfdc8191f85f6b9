"""Built-in state stores, each also a transaction sink."""

from incsync.stores._base import StateStoreBase, Transition
from incsync.stores.memory import InMemoryStore
from incsync.stores.sqlite import SQLiteStore

__all__ = ["InMemoryStore", "SQLiteStore", "StateStoreBase", "Transition"]
