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
import logging
import time
import uuid
from collections.abc import Sequence
from contextlib import aclosing
from dataclasses import dataclass, field
from functools import partial
from types import TracebackType

from ..http import Clock, SystemClock
from ..streams import FinishStatus, Store, StoreFull, StreamExpired, StreamNotFound
from ._backend import Backend, ChatMessage, ModelOptions, Usage
from ._errors import ServiceError, Unavailable, UpstreamError
from ._health import UPSTREAM, Dependencies, unavailable
from ._history import ChatHistory
from ._json import dumps
from ._limits import RETRY_AFTER, GenerationLimits
from ._logs import bind_answer
from ._metrics import Metrics, Outcome
from ._schemas import DeltaData, DoneData, ErrorData
from ._text import valid_text

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


# One JSON call per event's data, behind one function (_json.py: orjson).
_json = dumps


@dataclass(slots=True)
class Answer:
    """One answer being generated: where it goes and what it has so far."""

    chat_id: str
    message_id: str
    question: str
    context: list[ChatMessage]
    new_chat: bool
    owner: str = ""  # the user who asked: the chat's and the stream's owner
    options: ModelOptions | None = None  # the request's temperature, max tokens
    usage: Usage | None = None  # what the back end counted, once it said
    question_id: str = field(default_factory=lambda: uuid.uuid4().hex)
    parts: list[str] = field(default_factory=list)
    thoughts: list[str] = field(default_factory=list)  # a thinking model's reasoning
    ended: bool = False  # its last event (done or error) is in the store
    # For the metrics: when it was asked, when its first piece was in the store
    # (time.perf_counter), how it ended (set once, by whatever ended it).
    asked_at: float = field(default_factory=time.perf_counter)
    first_at: float | None = None
    outcome: Outcome | None = None

    @property
    def text(self) -> str:
        return "".join(self.parts)

    @property
    def reasoning(self) -> str | None:
        """The model's reasoning, ``None`` when it sent none."""
        return "".join(self.thoughts) if self.thoughts else None


class Generations:
    """Owns every generation task and the periodic saver; an async context manager.

    It supervises them rather than grouping them: an answer whose task fails
    is logged and counted (:attr:`failures`) and nothing else stops; no
    failure of one answer reaches another, the saver, or the instance.
    Leaving it cancels what still runs: each answer is stored ``cancelled``
    with its text so far, and its readers get an error event (503).

    The saver writes what every answer has so far each ``save_interval``
    seconds on ``clock`` (a test passes ``askstream.testing.FakeClock`` and
    advances it, or calls :meth:`save_now`).
    """

    def __init__(
        self,
        *,
        store: Store,
        history: ChatHistory,
        backend: Backend,
        save_interval: float = 1.0,
        limits: GenerationLimits | None = None,
        dependencies: Dependencies | None = None,
        metrics: Metrics | None = None,
        clock: Clock | None = None,
    ) -> None:
        self._metrics = metrics or Metrics()
        self._clock = clock or SystemClock()
        self._limits = limits or GenerationLimits(total=256, per_user=32)
        self._store = store
        self._history = history
        self._backend = backend
        self._save_interval = save_interval
        self._dependencies = dependencies
        self._tasks: dict[str, tuple[Answer, asyncio.Task[None]]] = {}
        self._dirty: dict[str, Answer] = {}
        # Ends (text, status, error) the database could not take during an outage.
        self._unsaved: dict[str, tuple[str, FinishStatus, str]] = {}
        self._running = False
        self._draining = False
        self._saver_task: asyncio.Task[None] | None = None
        #: Answers whose task failed past every handler (a bug, logged with its traceback).
        self.failures = 0

    async def __aenter__(self) -> Generations:
        # No task group: a group cancels every task when one fails, and one
        # answer's failure must stay its own (the supervisor is _watch).
        self._running = True
        self._saver_task = asyncio.get_running_loop().create_task(
            self._saver(), name="askstream saver"
        )
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._running = False
        tasks = [task for _, task in self._tasks.values()]
        for task in tasks:
            task.cancel(SHUTDOWN)
        if self._saver_task is not None:
            self._saver_task.cancel()
            tasks.append(self._saver_task)
            self._saver_task = None
        if tasks:
            await asyncio.wait(tasks)

    @property
    def running(self) -> int:
        """How many answers are being generated here now."""
        return len(self._tasks)

    def message_ids(self) -> set[str]:
        """The message ids of the answers being generated here now."""
        return set(self._tasks)

    def drain(self) -> None:
        """Refuse new answers (503) from now on; those under way go on."""
        self._draining = True

    async def wait_idle(self, within: float) -> bool:
        """Until no answer is being generated here, at most ``within`` seconds;
        whether none is."""
        tasks = [task for _, task in self._tasks.values()]
        if tasks:
            await asyncio.wait(tasks, timeout=within)
        return not self._tasks

    async def cancel_all(self, reason: str = SHUTDOWN) -> None:
        """Cancel every answer being generated here and wait until each is closed."""
        tasks = [task for _, task in self._tasks.values()]
        for task in tasks:
            task.cancel(reason)
        if tasks:
            await asyncio.wait(tasks)

    # -- starting and stopping --------------------------------------------

    async def start(
        self,
        chat_id: str | None,
        question: str,
        context: Sequence[ChatMessage],
        *,
        owner: str = "",
        options: ModelOptions | None = None,
        new_chat: bool | None = None,
    ) -> Answer:
        """Start answering ``question`` after ``context`` in chat ``chat_id`` (a new
        chat for ``None``) for ``owner`` (``""``: anonymous); return once the first
        piece is in the store. ``options`` go to the back end with the messages.
        ``new_chat=True`` creates chat ``chat_id`` under the id given (a client that
        names its chats itself, as the AI SDK's does); the id must then be
        JSON-safe, as every id this module writes unescaped.

        Raises :class:`UpstreamError` if the back end failed before its first piece,
        and :class:`ServiceError` 429 or 503 if ``owner`` or everyone has too many
        answers generating (:class:`GenerationLimits`).
        """
        if not self._running:
            raise RuntimeError("Generations is not running: use it as `async with`")
        try:
            if self._draining:
                raise Unavailable("the server is shutting down; ask again")
            if self._dependencies is not None:
                self._dependencies.check_up()  # a known outage: 503 before anything is written
            try:
                self._limits.acquire(owner)
            except ServiceError as exc:
                self._metrics.refused("user_generations" if exc.status == 429 else "generations")
                raise
        except ServiceError:
            self._metrics.asks.labels("refused").inc()
            raise
        answer = Answer(
            chat_id=chat_id or uuid.uuid4().hex,
            message_id=uuid.uuid4().hex,
            question=question,
            context=[*context, ChatMessage(role="user", content=question)],
            new_chat=chat_id is None if new_chat is None else new_chat,
            owner=owner,
            options=options,
        )
        # Named in the asker's context (the rest of its request logs them) and so
        # in the task's, which copies it: every line about this answer carries
        # its ids and the ask's request id, also after that response ended.
        bind_answer(chat_id=answer.chat_id, message_id=answer.message_id)
        started: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        try:
            task = asyncio.get_running_loop().create_task(self._guarded(answer, started))
        except BaseException:
            self._limits.release(owner)
            raise
        self._tasks[answer.message_id] = (answer, task)
        self._metrics.open_streams.inc()
        task.add_done_callback(partial(self._watch, answer.message_id))
        task.add_done_callback(lambda _: self._limits.release(owner))
        await started
        return answer

    def _watch(self, message_id: str, task: asyncio.Task[None]) -> None:
        # The supervisor: a finished task is forgotten; one that failed (which
        # _guarded does not let happen) is counted and logged, and that is all.
        self._tasks.pop(message_id, None)
        self._metrics.open_streams.dec()
        if not task.cancelled() and task.exception() is not None:
            self.failures += 1
            logger.error("answer %s failed", message_id, exc_info=task.exception())

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
        except Exception as exc:  # the last line of defence: logged, never raised on
            answer.outcome = answer.outcome or "failed"
            outage = _unavailable(exc)
            _fail(started, outage or ServiceError(500, "generating the answer failed"))
            self._outage(exc)
            if outage is None:
                self.failures += 1
                logger.exception("answer %s could not be closed", answer.message_id)
            try:
                await self._close_stream(answer.message_id)
            except Exception as again:
                # The store is away too: readers get 503 once their follow gives
                # up (lease_ttl), and another instance's reaper ends the stream.
                if self._outage(again) is None:
                    logger.exception("answer %s: ending its stream failed", answer.message_id)
        finally:
            # Whatever happened, the ask waiting for the first piece is answered.
            _fail(started, ServiceError(500, "generating the answer failed"))
            self._count(answer)

    def _count(self, answer: Answer) -> None:
        # Once per answer, never per token: the tokens are the deltas it holds.
        now = time.perf_counter()
        first = None if answer.first_at is None else answer.first_at - answer.asked_at
        self._metrics.ask_ended(
            answer.outcome or "failed",
            len(answer.parts),
            first,
            now - answer.asked_at if answer.first_at is not None else None,
        )

    async def _close_stream(self, message_id: str) -> None:
        # Its readers must not wait for ever: end the stream if it is still open.
        if await self._store.status(message_id) == "open":
            error = _json(ErrorData(code=500, message="generating the answer failed"))
            await self._store.append(message_id, error, event="error")
            await self._store.finish(message_id, "failed")

    def _outage(self, exc: BaseException) -> Unavailable | None:
        """The 503 for ``exc`` if it says a dependency is unreachable (and note that)."""
        error = _unavailable(exc)
        if isinstance(exc, StreamNotFound | StreamExpired):
            self._metrics.store_error("lost")
        if error is not None and error.dependency and self._dependencies is not None:
            self._dependencies.down(error.dependency, exc)
        return error

    async def _run(self, answer: Answer, started: asyncio.Future[None]) -> None:
        mid = answer.message_id
        stored = began = False  # rows written; first piece (so the stream) in the store
        finish_reason: str | None = None
        chat_id = answer.chat_id
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
            async with aclosing(self._backend.stream(answer.context, answer.options)) as chunks:
                async for chunk in chunks:
                    if not began:
                        await self._store.create(
                            mid, owner=answer.owner, on_cancel=partial(self._cancel_requested, mid)
                        )
                        began = True
                    if chunk.reasoning:
                        # Its own event type, so that a reader that knows only
                        # `message` never takes thoughts for the answer; sent as
                        # they come, so the first byte does not wait for the answer.
                        thought = valid_text(chunk.reasoning)
                        answer.thoughts.append(thought)
                        # The shape of a `message` event's data (DeltaData).
                        thinking: DeltaData = {
                            "chatId": chat_id,
                            "messageId": mid,
                            "delta": thought,
                        }
                        await self._store.append(mid, _json(thinking), event="reasoning")
                    if chunk.delta:
                        delta = valid_text(chunk.delta)  # no lone surrogate gets stored
                        # Before the append: one cancelled midway may have reached the
                        # log (Redis), and its readers. The parts are also the tokens
                        # the metrics count, once, when the answer ends.
                        answer.parts.append(delta)
                        # A literal: calling the TypedDict builds the same dict, slower.
                        data: DeltaData = {"chatId": chat_id, "messageId": mid, "delta": delta}
                        await self._store.append(mid, _json(data))
                        self._dirty[mid] = answer
                    if not started.done():
                        answer.first_at = time.perf_counter()
                        started.set_result(None)
                        if self._dependencies is not None:
                            self._dependencies.answered(UPSTREAM)
                    if chunk.finish_reason:
                        finish_reason = chunk.finish_reason
                    if chunk.usage is not None:
                        answer.usage = chunk.usage
            if not began:  # the back end ended without a single chunk: an empty answer
                await self._store.create(
                    mid, owner=answer.owner, on_cancel=partial(self._cancel_requested, mid)
                )
                began = True
            await self._end(answer, "complete", finish_reason or "stop")
            if not started.done():
                answer.first_at = time.perf_counter()
                started.set_result(None)
        except asyncio.CancelledError as exc:
            reason = exc.args[0] if exc.args and exc.args[0] in _CANCEL_CODES else SHUTDOWN
            if not began:
                answer.outcome = "cancelled"
                await self._discard(answer, stored)
                _fail(started, ServiceError(_CANCEL_CODES[reason], reason))
            elif not answer.ended and reason == CANCELLED:
                await self._end(answer, "cancelled", "cancelled")
            elif not answer.ended:
                await self._end_with_error(answer, "cancelled", _CANCEL_CODES[reason], reason)
            raise
        except Exception as exc:
            outage = self._outage(exc)
            if isinstance(exc, StoreFull):
                error = ServiceError(
                    503, "the stream store is full; try again soon", retry_after=RETRY_AFTER
                )
                logger.warning("answer %s refused: %s", mid, exc)
                answer.outcome = "refused"
                self._metrics.refused("store_bytes")
            elif isinstance(exc, ServiceError):
                error = exc
                if isinstance(exc, UpstreamError):
                    self._metrics.upstream_errors.labels(exc.kind).inc()
                if isinstance(exc, UpstreamError) and self._dependencies is not None:
                    # The model's API failing is one line while it lasts (the
                    # tracker's), not one per ask; each ask's own is for debugging.
                    self._dependencies.failed(UPSTREAM, exc)
                    logger.debug("answer %s failed: %s", mid, exc.message)
                else:
                    logger.warning("answer %s failed: %s", mid, exc.message)
            elif outage is not None:
                error = outage  # logged once by the dependency tracker
                if not began:  # answered 503 before a stream existed: refused, not failed
                    answer.outcome = "refused"
            else:
                error = ServiceError(500, "generating the answer failed")
                logger.exception("answer %s failed", mid)
            answer.outcome = answer.outcome or "failed"
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
        except Exception as exc:
            if self._outage(exc) is None:
                logger.exception("removing the rows of failed ask %s failed", answer.message_id)

    async def _end(self, answer: Answer, status: FinishStatus, finish_reason: str) -> None:
        mid = answer.message_id
        text = answer.text
        # Stored before `done` goes out: a reader that got `done` finds it saved.
        self._dirty.pop(mid, None)
        await self._history.finish_answer(
            mid, text, status, finish_reason, usage=answer.usage, reasoning=answer.reasoning
        )
        done = DoneData(
            chatId=answer.chat_id, messageId=mid, answer=text, finishReason=finish_reason
        )
        if answer.usage is not None:
            done["usage"] = {
                "promptTokens": answer.usage.prompt_tokens,
                "completionTokens": answer.usage.completion_tokens,
                "totalTokens": answer.usage.total_tokens,
            }
        answer.ended = True
        answer.outcome = status
        await self._store.append(mid, _json(done), event="done")
        await self._store.finish(mid, status)
        logger.info(
            "answer %s ended %s (%s), %d characters",
            mid,
            status,
            finish_reason,
            len(text),
            extra={"outcome": status, "finish_reason": finish_reason},
        )

    async def _end_with_error(
        self, answer: Answer, status: FinishStatus, code: int, message: str
    ) -> None:
        mid = answer.message_id
        message = valid_text(message)  # it may quote the model (_text.py)
        self._dirty.pop(mid, None)
        try:
            await self._history.finish_answer(
                mid, answer.text, status, error=message, reasoning=answer.reasoning
            )
        except Exception as exc:
            # The readers must still hear how it ended. The row stays
            # "streaming" until the saver writes its end, once the database is back.
            if self._outage(exc) is None:
                logger.exception("saving answer %s as %s failed", mid, status)
            else:
                self._unsaved[mid] = (answer.text, status, message)
        answer.ended = True
        answer.outcome = status
        await self._store.append(mid, _json(ErrorData(code=code, message=message)), event="error")
        await self._store.finish(mid, status)
        logger.info(
            "answer %s ended %s (error %d: %s)",
            mid,
            status,
            code,
            message,
            extra={"outcome": status, "code": code},
        )

    # -- saving while streaming ---------------------------------------------

    async def _saver(self) -> None:
        # One transaction a tick for every answer in flight, instead of one per
        # answer: with hundreds of answers streaming, the database sees one write.
        while True:
            await self._clock.sleep(self._save_interval)
            try:
                await self.save_now()
            except Exception:  # a bug in saving must not end the saving
                logger.exception("saving answers in progress failed")

    async def save_now(self) -> None:
        """Write the text so far of every answer that grew since the last save,
        and the ends that could not be written during an outage."""
        for mid, (text, status, message) in list(self._unsaved.items()):
            try:
                await self._history.finish_answer(mid, text, status, error=message)
            except Exception as exc:
                if self._outage(exc) is None:
                    # The saver is about no answer: this line names its own.
                    logger.exception(
                        "saving answer %s as %s failed", mid, status, extra={"message_id": mid}
                    )
                    del self._unsaved[mid]  # a bug, not an outage: trying again will not help
                break  # still away: the next tick tries again
            del self._unsaved[mid]
        dirty, self._dirty = self._dirty, {}
        if not dirty:
            return
        started = time.perf_counter()
        try:
            await self._history.save_progress({mid: a.text for mid, a in dirty.items()})
        except Exception as exc:
            if self._outage(exc) is None:
                logger.exception("saving %d answers in progress failed", len(dirty))
            for mid, answer in dirty.items():
                self._dirty.setdefault(mid, answer)
            return
        logger.debug(
            "saved %d answers in %.1f ms", len(dirty), (time.perf_counter() - started) * 1e3
        )


def _unavailable(exc: BaseException) -> Unavailable | None:
    # The stream gone from under its producer: the store restarted empty (or
    # was flushed). An outage of the store, not a bug: no traceback.
    if isinstance(exc, StreamNotFound | StreamExpired):
        return Unavailable("the stream store lost this answer's stream")
    return unavailable(exc)


def _fail(started: asyncio.Future[None], error: BaseException) -> None:
    if not started.done():
        started.set_exception(error)
