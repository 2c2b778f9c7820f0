"""Prometheus text-format metrics without extra dependencies: counters, gauges, histograms with labels."""

from __future__ import annotations

import bisect
import math
import threading
from collections.abc import Callable, Iterable, Sequence

LATENCY_BUCKETS_S = (0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0)


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _labels(names: Sequence[str], values: Sequence[str], extra: str = "") -> str:
    parts = [f'{n}="{_escape(str(v))}"' for n, v in zip(names, values, strict=True)]
    if extra:
        parts.append(extra)
    return "{" + ",".join(parts) + "}" if parts else ""


def _number(value: float) -> str:
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    return repr(float(value)) if not float(value).is_integer() else str(int(value))


class _Metric:
    kind = ""

    def __init__(self, name: str, help: str, labels: Sequence[str] = ()):
        self.name, self.help, self.label_names = name, help, tuple(labels)
        self._lock = threading.Lock()

    def _key(self, labels: dict[str, str]) -> tuple[str, ...]:
        if set(labels) != set(self.label_names):
            raise ValueError(f"{self.name}: labels {sorted(labels)} != {sorted(self.label_names)}")
        return tuple(str(labels[n]) for n in self.label_names)

    def render(self) -> Iterable[str]:
        yield f"# HELP {self.name} {self.help}"
        yield f"# TYPE {self.name} {self.kind}"
        yield from self._samples()

    def _samples(self) -> Iterable[str]:
        raise NotImplementedError


class Counter(_Metric):
    kind = "counter"

    def __init__(self, name: str, help: str, labels: Sequence[str] = ()):
        super().__init__(name, help, labels)
        self._values: dict[tuple[str, ...], float] = {}

    def inc(self, amount: float = 1.0, **labels: str) -> None:
        key = self._key(labels)
        with self._lock:
            self._values[key] = self._values.get(key, 0.0) + amount

    def value(self, **labels: str) -> float:
        return self._values.get(self._key(labels), 0.0)

    def _samples(self) -> Iterable[str]:
        with self._lock:
            items = sorted(self._values.items())
        for key, value in items:
            yield f"{self.name}{_labels(self.label_names, key)} {_number(value)}"


class Gauge(_Metric):
    """A value that is set, or read from a callback at scrape time."""

    kind = "gauge"

    def __init__(self, name: str, help: str, labels: Sequence[str] = (),
                 callback: Callable[[], float] | None = None):
        super().__init__(name, help, labels)
        self._values: dict[tuple[str, ...], float] = {}
        self._callback = callback

    def set(self, value: float, **labels: str) -> None:
        with self._lock:
            self._values[self._key(labels)] = float(value)

    def add(self, delta: float, **labels: str) -> None:
        key = self._key(labels)
        with self._lock:
            self._values[key] = self._values.get(key, 0.0) + delta

    def clear(self) -> None:
        with self._lock:
            self._values.clear()

    def _samples(self) -> Iterable[str]:
        if self._callback is not None:
            yield f"{self.name} {_number(self._callback())}"
            return
        with self._lock:
            items = sorted(self._values.items())
        for key, value in items:
            yield f"{self.name}{_labels(self.label_names, key)} {_number(value)}"


class Histogram(_Metric):
    kind = "histogram"

    def __init__(self, name: str, help: str, labels: Sequence[str] = (), buckets: Sequence[float] = LATENCY_BUCKETS_S):
        super().__init__(name, help, labels)
        self.buckets = tuple(sorted(buckets))
        self._series: dict[tuple[str, ...], list] = {}  # key -> [bucket counts..., sum, count]

    def observe(self, value: float, **labels: str) -> None:
        key = self._key(labels)
        index = bisect.bisect_left(self.buckets, value)
        with self._lock:
            series = self._series.setdefault(key, [0] * len(self.buckets) + [0.0, 0])
            if index < len(self.buckets):
                series[index] += 1
            series[-2] += value
            series[-1] += 1

    def count(self, **labels: str) -> int:
        series = self._series.get(self._key(labels))
        return int(series[-1]) if series else 0

    def _samples(self) -> Iterable[str]:
        with self._lock:
            items = sorted((k, list(v)) for k, v in self._series.items())
        for key, series in items:
            cumulative = 0
            for bound, n in zip(self.buckets, series, strict=False):  # series ends with sum, count
                cumulative += n
                le = _labels(self.label_names, key, 'le="' + _number(bound) + '"')
                yield f"{self.name}_bucket{le} {cumulative}"
            le = _labels(self.label_names, key, 'le="+Inf"')
            yield f"{self.name}_bucket{le} {series[-1]}"
            yield f"{self.name}_sum{_labels(self.label_names, key)} {_number(series[-2])}"
            yield f"{self.name}_count{_labels(self.label_names, key)} {series[-1]}"


class ServerMetrics:
    """Everything ``GET /metrics`` reports."""

    def __init__(self, queue_depth: Callable[[], float]):
        self.requests = Counter("wovr_requests_total", "Inference requests by transport and outcome",
                                ("transport", "outcome"))
        self.latency = Histogram("wovr_request_latency_seconds", "Server-side latency by pipeline stage",
                                 ("stage",))
        self.queue_depth = Gauge("wovr_queue_depth", "Requests waiting for the inference worker",
                                 callback=queue_depth)
        self.swaps = Counter("wovr_checkpoint_swaps_total", "Checkpoint activations and rollbacks by result",
                             ("result",))
        self.active = Gauge("wovr_active_checkpoint", "1 for the checkpoint that serves requests",
                            ("checkpoint_id",))
        self.connections = Gauge("wovr_websocket_connections", "Open WebSocket connections")
        self.connections.set(0)

    def set_active(self, checkpoint_id: str) -> None:
        self.active.clear()
        self.active.set(1, checkpoint_id=checkpoint_id)

    def render(self) -> str:
        metrics = (self.requests, self.latency, self.queue_depth, self.swaps, self.active, self.connections)
        return "\n".join(line for m in metrics for line in m.render()) + "\n"
