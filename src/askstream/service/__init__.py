"""The ask service: questions in, answers streamed out as server-sent events.

``create_app`` builds the FastAPI app (what ``askstream serve`` runs); its
lifespan owns the chat history (SQLAlchemy: SQLite or PostgreSQL), the stream
log and one generation task per answer, which reads an LLM back end and
appends to the log. Responses only follow the log, so any reader can resume.

>>> from askstream.service import Settings, create_app
>>> app = create_app(Settings.from_env({}, demo_delay=0.0))  # uvicorn.run(app)
"""

from ._app import create_app
from ._backend import Backend, ChatMessage, Chunk, ModelOptions, Usage
from ._demo import DemoBackend
from ._errors import SchemaError, ServiceError, Unavailable, UpstreamError
from ._openai import OpenAIBackend
from ._protocol import HttpProtocol
from ._retry import RetryPolicy
from ._settings import Settings

__all__ = [
    "Backend",
    "ChatMessage",
    "Chunk",
    "DemoBackend",
    "HttpProtocol",
    "ModelOptions",
    "OpenAIBackend",
    "RetryPolicy",
    "SchemaError",
    "ServiceError",
    "Settings",
    "Unavailable",
    "UpstreamError",
    "Usage",
    "create_app",
]
