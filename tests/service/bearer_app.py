"""A stand-in for the service in token mode, for ``askstream ask --token``'s tests.

It speaks the service's wire format (docs/api.md) and its token rule (issue 11,
docs/security.md): every ``/api`` request needs ``Authorization: Bearer <TOKEN>``,
else 401 JSON ``{"code", "message"}`` with ``WWW-Authenticate: Bearer``. The
answer to ``POST /api/ask`` ends after its first delta, without ``done``, and
names ``/api/streams/m1`` in ``Content-Location``: the client resumes there,
which needs the token too: the whole answer arrives only if the resume carried it.
"""

from __future__ import annotations

import json

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from askstream import Event, EventStreamResponse

TOKEN = "tok-alice-0123456789abcdef"
ANSWER = ["Hello, ", "token holder."]


def _refusal(request: Request) -> Response | None:
    authorization = request.headers.get("authorization")
    if authorization == f"Bearer {TOKEN}":
        return None
    message = "a valid bearer token is required" if authorization else "a bearer token is required"
    return JSONResponse(
        {"code": 401, "message": message},
        status_code=401,
        headers={"WWW-Authenticate": "Bearer"},
    )


def _message(chat_id: str, n: int) -> Event:
    data = {"chatId": chat_id, "messageId": "m1", "delta": ANSWER[n - 1]}
    return Event(json.dumps(data), event="message", id=str(n))


async def ask(request: Request) -> Response:
    refusal = _refusal(request)
    if refusal is not None:
        return refusal
    chat_id = (await request.json()).get("chatId") or "c1"
    return EventStreamResponse(
        [_message(chat_id, 1)], headers={"content-location": f"/api/streams/m1?chat={chat_id}"}
    )


async def stream(request: Request) -> Response:
    refusal = _refusal(request)
    if refusal is not None:
        return refusal
    chat_id = request.query_params["chat"]
    done = {"chatId": chat_id, "messageId": "m1", "answer": "".join(ANSWER)}
    after = int(request.headers.get("last-event-id") or 0)
    events = [_message(chat_id, 1), _message(chat_id, 2)][after:]
    return EventStreamResponse([*events, Event(json.dumps(done), event="done", id="3")])


app = Starlette(
    routes=[
        Route("/api/ask", ask, methods=["POST"]),
        Route("/api/streams/{message_id}", stream),
    ]
)
