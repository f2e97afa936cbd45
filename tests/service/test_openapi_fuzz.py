"""schemathesis against the service's own OpenAPI document, over real HTTP.

Every operation of ``/openapi.json`` gets ``MAX_EXAMPLES`` generated requests a
phase (examples, coverage, fuzzing; positive and negative data), sent to a live
``create_app`` under uvicorn (demo model, no delay, memory store, SQLite), and
every response goes through all of schemathesis' checks: no server error (a 503
only where the operation documents one), status codes, headers, content types
and bodies as documented, the answer streams event by event against their
``itemSchema``, ``Allow`` on a 405. On top of that, every error answer must be
our JSON ``{"code", "message"}`` with ``code`` the status.

Strings may hold NUL (schemathesis' ``allow-x00``) and, in JSON bodies, lone
UTF-16 surrogates, which schemathesis never draws on its own: ``_surrogates``
below slips one into a string of some bodies (sent as a ``\\udXXX`` escape, the
only way one can travel; in a URL or a header there are only bytes). A request
holding either may be refused with 422 or accepted, but never answered 5xx.

schemathesis' ``from_fixture`` does not run on pytest 9, so the document is
loaded when the module is (``create_app(...).openapi()``, no server needed) and
a fast test checks that the live server serves exactly that document.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import schemathesis
from hypothesis import strategies as st
from schemathesis import Case, CheckContext, HookContext, Response
from schemathesis.specs.openapi.checks import positive_data_acceptance

from askstream.service import Settings, create_app
from askstream.testing import ServerProcess

from .conftest import SERVICE_APP

#: Generated requests per operation and phase: about a minute on two cores for them all.
MAX_EXAMPLES = 500

#: What schemathesis takes as accepting valid data (its default).
ACCEPTED = ["2xx", "3xx", "401", "403", "404", "409", "429", "5xx"]


def _document() -> dict[str, Any]:
    # Made, never started: only the secret key would touch the disk, and it is
    # given. create_app sets the "askstream" logger's level: put it back.
    logger = logging.getLogger("askstream")
    level = logger.level
    try:
        app = create_app(Settings(data_dir=Path("never-written"), secret_key="only-the-document"))
        return app.openapi()
    finally:
        logger.setLevel(level)


DOCUMENT = _document()

schema = schemathesis.openapi.from_dict(
    DOCUMENT,
    config=schemathesis.Config.from_dict(
        {
            "generation": {"max-examples": MAX_EXAMPLES, "allow-x00": True},
            # A 503 passes here; `documented_503_only` holds it to the document.
            "checks": {"not_a_server_error": {"expected-statuses": ["2xx", "3xx", "4xx", "503"]}},
            "operations": [
                {
                    # A page cursor and a Last-Event-ID are tokens the service hands
                    # out: any other string is well-formed and still 400.
                    "include-name": name,
                    "checks": {
                        "positive_data_acceptance": {
                            "expected-statuses": [*ACCEPTED, "400"],
                        }
                    },
                }
                for name in ("GET /api/chats", "GET /api/streams/{message_id}")
            ]
            + [
                {
                    # JSON Schema cannot say "the last message is the user's, with
                    # text" (_aisdk.py): a body it allows may still be 422.
                    "include-name": "POST /api/chat",
                    "checks": {
                        "positive_data_acceptance": {"expected-statuses": [*ACCEPTED, "422"]}
                    },
                }
            ],
        }
    ),
)


@pytest.fixture(scope="module")
def fuzzed_service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    server = ServerProcess(
        SERVICE_APP,
        factory=True,
        env={
            "ASKSTREAM_DATA_DIR": str(tmp_path_factory.mktemp("data")),
            "ASKSTREAM_DEMO_DELAY": "0",
            "ASKSTREAM_LOG_LEVEL": "warning",
        },
        args=["--timeout-graceful-shutdown", "1"],
    )
    server.start()
    try:
        yield server
    finally:
        server.stop()


# -- lone surrogates in JSON bodies --------------------------------------------


def _with_surrogate(body: dict[str, Any], key: str, surrogate: int, at: int) -> dict[str, Any]:
    value = body[key]
    at = min(at, len(value))
    return {**body, key: value[:at] + chr(surrogate) + value[at:]}


@schema.hook("flatmap_body")
def _surrogates(context: HookContext, body: Any) -> st.SearchStrategy[Any]:
    """Some bodies as drawn, some with a lone surrogate in one of their strings."""
    keys = (
        sorted(k for k, v in body.items() if isinstance(v, str)) if isinstance(body, dict) else []
    )
    if not keys:
        return st.just(body)
    return st.just(body) | st.builds(
        _with_surrogate,
        st.just(body),
        st.sampled_from(keys),
        st.integers(0xD800, 0xDFFF),
        st.integers(0, 8),
    )


# -- checks of our own -----------------------------------------------------------


def documented_503_only(ctx: CheckContext, response: Response, case: Case) -> None:
    """A 503 (a part is down, the server is full) only where the operation says so."""
    if response.status_code == 503:
        documented = case.operation.definition.raw.get("responses", {})
        assert "503" in documented, f"{case.operation.label} answered 503, undocumented"


def errors_are_code_and_message(ctx: CheckContext, response: Response, case: Case) -> None:
    """Every error is ``{"code": <status>, "message": <str>}`` (docs/api.md)."""
    if response.status_code < 400:
        return
    assert response.headers.get("content-type", [""])[0].startswith("application/json")
    body = json.loads(response.content)
    assert set(body) == {"code", "message"}, body
    assert body["code"] == response.status_code, body
    assert isinstance(body["message"], str), body


# -- the tests -------------------------------------------------------------------


def test_the_fuzzed_document_is_the_one_the_server_serves(fuzzed_service: ServerProcess) -> None:
    served = httpx.get(fuzzed_service.url + "/openapi.json", timeout=10).json()
    assert served == DOCUMENT


def test_event_streams_are_described_event_by_event() -> None:
    for path, method in [("/api/ask", "post"), ("/api/streams/{message_id}", "get")]:
        content = DOCUMENT["paths"][path][method]["responses"]["200"]["content"]
        assert set(content) == {"text/event-stream"}
        stream = content["text/event-stream"]
        assert "schema" not in stream, "a stream of events is no JSON string"
        kinds = [item["properties"]["event"]["const"] for item in stream["itemSchema"]["oneOf"]]
        assert kinds == ["message", "reasoning", "done", "error"]


def test_every_error_is_documented_as_code_and_message() -> None:
    assert "HTTPValidationError" not in DOCUMENT["components"]["schemas"]
    for path, operations in DOCUMENT["paths"].items():
        for method, operation in operations.items():
            for status, response in operation["responses"].items():
                if int(status) >= 400:
                    schema = response["content"]["application/json"]["schema"]
                    assert schema == {"$ref": "#/components/schemas/ErrorBody"}, (
                        method,
                        path,
                        status,
                    )


def test_last_event_id_is_described_as_what_it_is() -> None:
    parameters = DOCUMENT["paths"]["/api/streams/{message_id}"]["get"]["parameters"]
    header = next(p for p in parameters if p["in"] == "header")
    assert header["name"] == "Last-Event-ID"
    assert not header["required"]
    assert header["schema"]["type"] == "string"  # a header is never null
    assert "last event" in header["description"]


@pytest.mark.slow
@pytest.mark.untraced  # hypothesis generating cases here; the server stays measured
@schema.parametrize()
def test_schemathesis_finds_no_server_error_and_no_lie(
    case: Case, fuzzed_service: ServerProcess
) -> None:
    # NUL and lone surrogates are strings to JSON Schema but no text to
    # PostgreSQL or UTF-8 (I-JSON, RFC 7493 §2.1, forbids lone surrogates):
    # refusing them (422) is as right as accepting them. A 5xx is wrong either way.
    excluded = [positive_data_acceptance] if _holds_non_text(case) else []
    case.call_and_validate(
        base_url=fuzzed_service.url,
        additional_checks=[documented_503_only, errors_are_code_and_message],
        excluded_checks=excluded,
        timeout=30,
    )


def _holds_non_text(case: Case) -> bool:
    parts = (case.path_parameters, case.query, case.headers, case.body)
    return any(_non_text(part) for part in parts)


def _non_text(value: Any) -> bool:
    if isinstance(value, str):
        return any(char == "\0" or "\ud800" <= char <= "\udfff" for char in value)
    if isinstance(value, dict):
        return any(_non_text(key) or _non_text(item) for key, item in value.items())
    if isinstance(value, list):
        return any(_non_text(item) for item in value)
    return False
