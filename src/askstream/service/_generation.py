"""Generation: one task per answer, writing the model's output to the stream log.

The HTTP response that asked never produces the answer: a task owned by
:class:`Generations` reads the back end, appends each piece to the store and
saves the text as it grows; responses only follow the store. So a reader that
goes away stops nothing, and any number of readers (a resume, a second tab)
see the same events.

The one thing an ask waits for is the first piece: :meth:`Generations.start`
returns once the back end produced it (or finished), and raises the back end's
:class:`UpstreamError` if it failed before that, which the route answers with
502 instead of a stream that begins with an error. The question and its
answer's row are written before the back end is asked (so no database work
stands between the model's first token and the reader), and removed again if
the ask fails before its first piece: a 502 leaves nothing behind.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
import uuid
from collections.abc import Sequence
from contextlib import aclosing
from dataclasses import dataclass, field
from functools import partial
from types import TracebackType

from ..streams import FinishStatus, Store
from ._backend import Backend, ChatMessage
from ._errors import ServiceError
from ._history import ChatHistory

__all__ = ["Answer", "Generations"]

logger = logging.getLogger("askstream.service")

# Why a generation was cancelled, given as Task.cancel(msg), and what its
# readers are told in the closing error event.
# A reader's cancel ends the answer normally: `done` with finishReason
# "cancelled" and the text so far. A deleted chat or a shutdown ends it with an
# error event, since the answer did not end by anyone's choice about it.
CANCELLED = "the answer was cancelled"
DELETED = "the chat was deleted"
SHUTDOWN = "the server is shutting down"
_CANCEL_CODES = {CANCELLED: 409, DELETED: 410, SHUTDOWN: 503}


# One encoder for every event: json.dumps() with options builds a new one per
# call, a few microseconds on each token.
_json = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode


@dataclass(slots=True)
class Answer:
    """One answer being generated: where it goes and what it has so far."""

    chat_id: str
    message_id: str
    question: str
    context: list[ChatMessage]
    new_chat: bool
    owner: str = ""  # the user who asked: the chat's and the stream's owner
    question_id: str = field(default_factory=lambda: uuid.uuid4().hex)
    parts: list[str] = field(default_factory=list)
    ended: bool = False  # its last event (done or error) is in the store

    @property
    def text(self) -> str:
        return "".join(self.parts)


class Generations:
    """Owns every generation task and the periodic saver; an async context manager.

    Leaving it cancels what still runs: each answer is stored ``cancelled``
    with its text so far, and its readers get an error event (503).
    """

    def __init__(
        self,
        *,
        store: Store,
        history: ChatHistory,
        backend: Backend,
        save_interval: float = 1.0,
    ) -> None:
        self._store = store
        self._history = history
        self._backend = backend
        self._save_interval = save_interval
        self._tasks: dict[str, tuple[Answer, asyncio.Task[None]]] = {}
        self._dirty: dict[str, Answer] = {}
        self._group: asyncio.TaskGroup | None = None
        self._saver_task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> Generations:
        # A TaskGroup owns the tasks; no task may raise (they end their answer
        # with an error event instead), or the group would cancel all the others.
        self._group = asyncio.TaskGroup()
        await self._group.__aenter__()
        self._saver_task = self._group.create_task(self._saver())
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        assert self._group is not None
        for _, task in list(self._tasks.values()):
            task.cancel(SHUTDOWN)
        if self._saver_task is not None:
            self._saver_task.cancel()
        await self._group.__aexit__(exc_type, exc, tb)
        self._group = self._saver_task = None

    # -- starting and stopping --------------------------------------------

    async def start(
        self,
        chat_id: str | None,
        question: str,
        context: Sequence[ChatMessage],
        *,
        owner: str = "",
    ) -> Answer:
        """Start answering ``owner``'s ``question`` after ``context`` in chat ``chat_id``
        (a new chat for ``None``); return once the first piece is in the store.

        Raises :class:`UpstreamError` if the back end failed before its first piece.
        """
        if self._group is None:
            raise RuntimeError("Generations is not running: use it as `async with`")
        answer = Answer(
            chat_id=chat_id or uuid.uuid4().hex,
            message_id=uuid.uuid4().hex,
            question=question,
            context=[*context, ChatMessage(role="user", content=question)],
            new_chat=chat_id is None,
            owner=owner,
        )
        started: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        task = self._group.create_task(self._guarded(answer, started))
        self._tasks[answer.message_id] = (answer, task)
        task.add_done_callback(lambda _: self._tasks.pop(answer.message_id, None))
        await started
        return answer

    async def cancel(self, message_id: str) -> bool:
        """Cancel one answer and wait until it is closed; ``False`` if it is not
        being generated here (unknown, or already finished)."""
        running = self._tasks.get(message_id)
        if running is None:
            return False
        running[1].cancel(CANCELLED)
        await asyncio.wait([running[1]])
        return True

    def _cancel_requested(self, message_id: str) -> None:
        # A cancel asked on any instance, passed on by the store (once).
        running = self._tasks.get(message_id)
        if running is not None and not running[1].cancelling():
            running[1].cancel(CANCELLED)

    async def cancel_chat(self, chat_id: str, reason: str = DELETED) -> None:
        """Cancel every answer being generated in a chat and wait until each is closed."""
        tasks = [task for answer, task in self._tasks.values() if answer.chat_id == chat_id]
        for task in tasks:
            task.cancel(reason)
        if tasks:
            await asyncio.wait(tasks)

    # -- the task ----------------------------------------------------------

    async def _guarded(self, answer: Answer, started: asyncio.Future[None]) -> None:
        try:
            await self._run(answer, started)
        except Exception:  # the last line of defence of the TaskGroup; logged, not hidden
            logger.exception("answer %s could not be closed", answer.message_id)
            _fail(started, ServiceError(500, "generating the answer failed"))
            # Its readers must not wait for ever: end the stream if it is still open.
            if await self._store.status(answer.message_id) == "open":
                error = _json({"code": 500, "message": "generating the answer failed"})
                await self._store.append(answer.message_id, error, event="error")
                await self._store.finish(answer.message_id, "failed")

    async def _run(self, answer: Answer, started: asyncio.Future[None]) -> None:
        mid = answer.message_id
        stored = began = False  # rows written; first piece (so the stream) in the store
        finish_reason: str | None = None
        # The event data around each delta is the same for the whole answer; the
        # ids are hex, so only the delta needs JSON escaping (the hot path).
        head = f'{{"chatId":"{answer.chat_id}","messageId":"{mid}","delta":'
        try:
            # The rows come first, so the database work is not in the first
            # token's way, and an answer that is streaming always has a row.
            await self._history.begin_answer(
                answer.chat_id,
                answer.question,
                answer.question_id,
                mid,
                new_chat=answer.new_chat,
                owner=answer.owner,
            )
            stored = True
            async with aclosing(self._backend.stream(answer.context)) as chunks:
                async for chunk in chunks:
                    if not began:
                        await self._store.create(
                            mid, owner=answer.owner, on_cancel=partial(self._cancel_requested, mid)
                        )
                        began = True
                    if chunk.delta:
                        answer.parts.append(chunk.delta)
                        await self._store.append(mid, head + _json(chunk.delta) + "}")
                        self._dirty[mid] = answer
                    if not started.done():
                        started.set_result(None)
                    if chunk.finish_reason:
                        finish_reason = chunk.finish_reason
            if not began:  # the back end ended without a single chunk: an empty answer
                await self._store.create(
                    mid, owner=answer.owner, on_cancel=partial(self._cancel_requested, mid)
                )
                began = True
            await self._end(answer, "complete", finish_reason or "stop")
            if not started.done():
                started.set_result(None)
        except asyncio.CancelledError as exc:
            reason = exc.args[0] if exc.args and exc.args[0] in _CANCEL_CODES else SHUTDOWN
            if not began:
                await self._discard(answer, stored)
                _fail(started, ServiceError(_CANCEL_CODES[reason], reason))
            elif not answer.ended and reason == CANCELLED:
                await self._end(answer, "cancelled", "cancelled")
            elif not answer.ended:
                await self._end_with_error(answer, "cancelled", _CANCEL_CODES[reason], reason)
            raise
        except Exception as exc:
            if isinstance(exc, ServiceError):
                error = exc
                logger.warning("answer %s failed: %s", mid, exc.message)
            else:
                error = ServiceError(500, "generating the answer failed")
                logger.exception("answer %s failed", mid)
            if not began:
                await self._discard(answer, stored)  # before the 502 goes out
                _fail(started, error)
            elif not answer.ended:
                await self._end_with_error(answer, "failed", error.code, error.message)

    async def _discard(self, answer: Answer, stored: bool) -> None:
        # The ask fails as a whole (502, 500): it leaves nothing behind.
        if not stored:
            return
        try:
            await self._history.discard_answer(
                answer.chat_id, answer.question_id, answer.message_id, chat=answer.new_chat
            )
        except Exception:
            logger.exception("removing the rows of failed ask %s failed", answer.message_id)

    async def _end(self, answer: Answer, status: FinishStatus, finish_reason: str) -> None:
        mid = answer.message_id
        text = answer.text
        # Stored before `done` goes out: a reader that got `done` finds it saved.
        self._dirty.pop(mid, None)
        await self._history.finish_answer(mid, text, status, finish_reason)
        done = {
            "chatId": answer.chat_id,
            "messageId": mid,
            "answer": text,
            "finishReason": finish_reason,
        }
        answer.ended = True
        await self._store.append(mid, _json(done), event="done")
        await self._store.finish(mid, status)

    async def _end_with_error(
        self, answer: Answer, status: FinishStatus, code: int, message: str
    ) -> None:
        mid = answer.message_id
        self._dirty.pop(mid, None)
        try:
            await self._history.finish_answer(mid, answer.text, status, error=message)
        except Exception:
            # The readers must still hear how it ended; the row stays "streaming".
            logger.exception("saving answer %s as %s failed", mid, status)
        answer.ended = True
        await self._store.append(mid, _json({"code": code, "message": message}), event="error")
        await self._store.finish(mid, status)

    # -- saving while streaming ---------------------------------------------

    async def _saver(self) -> None:
        # One transaction a tick for every answer in flight, instead of one per
        # answer: with hundreds of answers streaming, the database sees one write.
        while True:
            await asyncio.sleep(self._save_interval)
            await self.save_now()

    async def save_now(self) -> None:
        """Write the text so far of every answer that grew since the last save."""
        dirty, self._dirty = self._dirty, {}
        if not dirty:
            return
        started = time.perf_counter()
        try:
            await self._history.save_progress({mid: a.text for mid, a in dirty.items()})
        except Exception:
            logger.exception("saving %d answers in progress failed", len(dirty))
            for mid, answer in dirty.items():
                self._dirty.setdefault(mid, answer)
            return
        logger.debug(
            "saved %d answers in %.1f ms", len(dirty), (time.perf_counter() - started) * 1e3
        )


def _fail(started: asyncio.Future[None], error: BaseException) -> None:
    if not started.done():
        started.set_exception(error)
