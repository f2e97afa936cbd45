"""The service's Prometheus metrics (``GET /metrics``), counted where things happen.

One :class:`Metrics` per app, made by :func:`create_app` and passed down to
what counts (the generations, the fan-out, the edge's refusals); nothing is a
module global. Every count is made once per ask, reader or refusal, never per
token: an answer's tokens are added when it ends.

Under several worker processes (``askstream serve --workers N``) each worker
counts in its own files under ``PROMETHEUS_MULTIPROC_DIR`` (prometheus-client's
multiprocess mode), and a scrape, whichever worker answers it, adds up every
worker's files. That mode is the one place where state outlives the app:
prometheus-client picks it from the environment variable when it is imported,
and writes each process's values to one file per metric type, named by the
process id. So in that mode one process holds one app; a second app in the
same process would write the same file (tests make apps in-process only
without the variable).
"""

from __future__ import annotations

import glob
import os
from collections.abc import Iterable
from typing import Literal

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.exposition import choose_encoder
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.multiprocess import mark_process_dead as _mark_process_dead
from prometheus_client.process_collector import ProcessCollector

__all__ = [
    "MULTIPROC_ENV",
    "OUTCOMES",
    "REFUSALS",
    "Metrics",
    "Outcome",
    "dead_workers",
    "mark_process_dead",
]

#: prometheus-client's own variable: the folder of every worker's metric files.
MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"

Outcome = Literal["complete", "cancelled", "failed", "refused"]
#: How an ask ended: as its stream finished (``complete``, ``cancelled``,
#: ``failed``: after its first token or before it, 502 included), or
#: ``refused`` with no stream at all (a limit, an outage, a shutdown).
OUTCOMES: tuple[Outcome, ...] = ("complete", "cancelled", "failed", "refused")
#: The limits a request or an ask can be refused by (docs/deploy.md, Limits).
REFUSALS = (
    "connections",
    "head_size",
    "head_timeout",
    "body_size",
    "body_timeout",
    "generations",
    "user_generations",
    "store_bytes",
)
_STORE_ERRORS = ("unreachable", "lost")
_CANCELS = ("cancelled", "passed_on", "already_ended")

# Seconds; a model's first token takes from a few tens of ms (a local model) to
# tens of seconds (a long context); an answer from a second to minutes.
_FIRST_TOKEN_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0)
_ANSWER_BUCKETS = (0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0)


class Metrics:
    """The service's counters, gauges and histograms, in a registry of their own.

    ``multiprocess_dir``: the folder of prometheus-client's multiprocess mode
    (``None``: one process, the values live in this registry). Read it from
    the environment with :meth:`from_env`, as prometheus-client itself does.

    >>> metrics = Metrics()
    >>> metrics.refused("generations")
    >>> body, content_type = metrics.exposition(None)
    >>> b'askstream_refusals_total{limit="generations"} 1.0' in body
    True
    """

    def __init__(self, *, multiprocess_dir: str | None = None, process: bool = False) -> None:
        self.multiprocess_dir = multiprocess_dir
        self.registry = registry = CollectorRegistry(auto_describe=True)
        if process and multiprocess_dir is None:
            # CPU, memory and open files of this process (one process only: in
            # multiprocess mode they would be the scraped worker's alone).
            ProcessCollector(registry=registry)
        self.open_streams = Gauge(
            "askstream_open_streams",
            "Answers being generated now (their streams are open).",
            registry=registry,
            multiprocess_mode="livesum",
        )
        self.readers = Gauge(
            "askstream_readers",
            "Responses following an answer's stream now (asks, resumes, second readers, "
            "/v1/ and /api/chat streams).",
            registry=registry,
            multiprocess_mode="livesum",
        )
        self.asks = Counter(
            "askstream_asks",
            "Asks by how they ended: complete, cancelled, failed (before or after the "
            "first token), refused (no stream: a limit, an outage, a shutdown).",
            ["outcome"],
            registry=registry,
        )
        self.tokens = Counter(
            "askstream_tokens",
            "Model tokens (deltas) relayed into answer streams; added when an answer ends.",
            registry=registry,
        )
        self.first_token = Histogram(
            "askstream_first_token_seconds",
            "Seconds from an ask to its answer's first piece in the stream.",
            registry=registry,
            buckets=_FIRST_TOKEN_BUCKETS,
        )
        self.answer_duration = Histogram(
            "askstream_answer_seconds",
            "Seconds from an ask to the end of its answer's stream (every outcome).",
            registry=registry,
            buckets=_ANSWER_BUCKETS,
        )
        self.resumes = Counter(
            "askstream_resumes",
            "Stream reads that resumed: after an event id (Last-Event-ID), or the AI "
            "SDK's GET /api/chat/{id}/stream of an answer in progress.",
            registry=registry,
        )
        self.cancels = Counter(
            "askstream_cancels",
            "Cancel requests by result: cancelled, passed_on (another instance has not "
            "confirmed yet, 202), already_ended (409).",
            ["result"],
            registry=registry,
        )
        self.store_errors = Counter(
            "askstream_store_errors",
            "Failures of the stream store by kind: unreachable, lost (a stream vanished).",
            ["kind"],
            registry=registry,
        )
        self.upstream_errors = Counter(
            "askstream_upstream_errors",
            "Failures of the LLM back end by kind (UpstreamError.kind).",
            ["kind"],
            registry=registry,
        )
        self.evictions = Counter(
            "askstream_store_evictions",
            "Finished streams the memory store dropped before their retention, for room.",
            registry=registry,
        )
        self.refusals = Counter(
            "askstream_refusals",
            "Requests and asks refused by a limit, by limit.",
            ["limit"],
            registry=registry,
        )
        # Every known label at 0 from the start: a rate() needs the series to exist.
        _touch(self.asks, OUTCOMES)
        _touch(self.refusals, REFUSALS)
        _touch(self.store_errors, _STORE_ERRORS)
        _touch(self.cancels, _CANCELS)

    @classmethod
    def from_env(cls, environ: dict[str, str] | None = None, *, process: bool = True) -> Metrics:
        """Metrics in multiprocess mode when ``PROMETHEUS_MULTIPROC_DIR`` is set."""
        env = os.environ if environ is None else environ
        return cls(multiprocess_dir=env.get(MULTIPROC_ENV) or None, process=process)

    # -- counting (each once per ask, reader or refusal) -----------------------------

    def refused(self, limit: str) -> None:
        """A request or an ask was refused by ``limit`` (one of :data:`REFUSALS`)."""
        self.refusals.labels(limit).inc()

    def store_error(self, kind: str) -> None:
        """The stream store failed: ``unreachable`` or ``lost``."""
        self.store_errors.labels(kind).inc()

    def ask_ended(
        self, outcome: Outcome, tokens: int, first_token: float | None, duration: float | None
    ) -> None:
        """One ask is over: its outcome, the tokens it relayed, and its times
        (``None``: it never had a first token, or never a stream)."""
        self.asks.labels(outcome).inc()
        if tokens:
            self.tokens.inc(tokens)
        if first_token is not None:
            self.first_token.observe(first_token)
        if duration is not None:
            self.answer_duration.observe(duration)

    # -- scraping --------------------------------------------------------------------

    def exposition(self, accept: str | None) -> tuple[bytes, str]:
        """The body and content type of ``GET /metrics`` (OpenMetrics if ``accept`` asks)."""
        encoder, content_type = choose_encoder(accept or "")
        if self.multiprocess_dir is None:
            return encoder(self.registry), content_type
        # Every worker's files, those of workers that died included (their
        # counts stay counted); the live gauges of a dead worker are removed first.
        for pid in dead_workers(self.multiprocess_dir):
            mark_process_dead(pid, self.multiprocess_dir)
        registry = CollectorRegistry()
        # (prometheus-client leaves its multiprocess helpers untyped.)
        MultiProcessCollector(registry, path=self.multiprocess_dir)  # type: ignore[no-untyped-call]
        return encoder(registry), content_type

    def close(self) -> None:
        """This process stops: in multiprocess mode its live gauges go (its counts stay)."""
        if self.multiprocess_dir is not None:
            mark_process_dead(os.getpid(), self.multiprocess_dir)


def mark_process_dead(pid: int, path: str) -> None:
    """Remove the live gauges of process ``pid`` from the multiprocess folder ``path``."""
    # (prometheus-client leaves its multiprocess helpers untyped.)
    _mark_process_dead(pid, path)  # type: ignore[no-untyped-call]


def _touch(metric: Counter, labels: Iterable[str]) -> None:
    for label in labels:
        metric.labels(label)


def dead_workers(path: str) -> list[int]:
    """The process ids that left live gauges in ``path`` and no longer run.

    A worker killed outright (SIGKILL, the OOM killer) cannot remove its own;
    any scrape does it for it. A pid reused meanwhile by another process keeps
    its files until that one ends too.
    """
    dead = []
    for name in glob.glob(os.path.join(path, "gauge_live*_*.db")):
        pid_text = os.path.basename(name).rsplit("_", 1)[-1][: -len(".db")]
        if not pid_text.isdigit():
            continue
        pid = int(pid_text)
        try:
            os.kill(pid, 0)  # signal 0: only whether the process exists
        except ProcessLookupError:
            dead.append(pid)
        except PermissionError:  # it runs, as another user
            continue
    return sorted(set(dead))
