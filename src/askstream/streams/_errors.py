"""The answer log's errors, the ``StoreError`` branch of askstream's one tree.

They are defined in ``askstream._exceptions`` (which imports nothing, so that
catching one costs no import) and drawn there; this module lets the store's
modules import them from beside them.
"""

from __future__ import annotations

from .._exceptions import (
    InvalidEventId,
    StoreError,
    StoreFull,
    StoreUnavailable,
    StreamExpired,
    StreamNotFound,
)

__all__ = [
    "InvalidEventId",
    "StoreError",
    "StoreFull",
    "StoreUnavailable",
    "StreamExpired",
    "StreamNotFound",
]
