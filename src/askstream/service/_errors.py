"""The ask service's errors, the ``ServiceError`` branch of askstream's one tree.

They are defined in ``askstream._exceptions`` (which imports nothing, so that
catching :class:`UpstreamError` loads no FastAPI or SQLAlchemy) and drawn there;
this module lets the service's modules import them from beside them.
"""

from __future__ import annotations

from .._exceptions import SchemaError, ServiceError, Unavailable, UpstreamError

__all__ = ["SchemaError", "ServiceError", "Unavailable", "UpstreamError"]
