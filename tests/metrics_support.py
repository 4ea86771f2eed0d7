"""Scraping a service's Prometheus endpoint over HTTP, as Prometheus does, for the metrics tests."""

from __future__ import annotations

import time
import urllib.request
from collections.abc import Callable

from prometheus_client.parser import text_string_to_metric_families
from support import RunningService

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def metrics_port(service: RunningService) -> int:
    """The port the service logged for /metrics (`serving` line)."""
    for record in service.log_records():
        if record.get("event") == "serving":
            return int(record["metrics_port"])
    raise AssertionError(f"{service.name} logged no 'serving' line:\n{service.log_path.read_text()}")


def scrape(port: int) -> Samples:
    """Every sample at http://127.0.0.1:PORT/metrics, keyed by its name and labels."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as response:
        text = response.read().decode()
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float:
    """The sum of the samples of `name` whose labels include `labels` (0 when there is none yet)."""
    wanted = set(labels.items())
    return sum(v for (n, have), v in samples.items() if n == name and wanted <= have)


def moved(before: Samples, after: Samples, name: str, **labels: str) -> float:
    return value(after, name, **labels) - value(before, name, **labels)


def scrape_until(port: int, done: Callable[[Samples], bool], within: float = 10) -> Samples:
    """Scrape until `done` holds (or `within` seconds pass; the caller's assertions then say what is missing).

    A handler that fails aborts the call, and gRPC sends the status before the interceptor's `finally`
    counts it: the client can see the error a moment before the counter moves.
    """
    deadline = time.monotonic() + within
    while not done(samples := scrape(port)) and time.monotonic() < deadline:
        time.sleep(0.05)
    return samples
