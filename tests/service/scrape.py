"""Reading a service's ``GET /metrics`` as Prometheus does: the text format, parsed
with prometheus-client's own parser."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping

import httpx
from prometheus_client.parser import text_string_to_metric_families

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def scrape(url: str, headers: Mapping[str, str] | None = None) -> Samples:
    """Every sample of ``url``/metrics: (name, labels) to value."""
    response = httpx.get(url + "/metrics", headers=dict(headers or {}), timeout=20)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/plain"), response.headers
    samples: Samples = {}
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            samples[sample.name, frozenset(sample.labels.items())] = sample.value
    return samples


def value(samples: Samples, name: str, **labels: str) -> float:
    """One sample's value; a missing one fails with the names there are."""
    key = (name, frozenset(labels.items()))
    assert key in samples, f"no {name}{labels}; have {sorted({n for n, _ in samples})}"
    return samples[key]


def settled(
    url: str, check: Callable[[Samples], bool], headers: Mapping[str, str] | None = None
) -> Samples:
    """Scrape until ``check`` holds (a gauge that follows a connection's end a
    moment after the client saw it); the last scrape, checked or not, at 20 s."""
    deadline = time.monotonic() + 20
    while True:
        samples = scrape(url, headers)
        if check(samples) or time.monotonic() > deadline:
            return samples
        time.sleep(0.05)
