"""ReplicationStats: counters of what this node shipped and received, for the operator surface."""
from __future__ import annotations

import collections
import time
from typing import Any

LAG_SAMPLES = 1024
BANDWIDTH_WINDOW_S = 10.0


class ReplicationStats:
    def __init__(self) -> None:
        self.replicated = 0
        self.failed = 0
        self.bytes_in = 0
        self.bytes_out = 0
        self.bytes_replicated = 0
        self.lags: collections.deque[float] = collections.deque(maxlen=LAG_SAMPLES)
        self._sent: collections.deque[tuple[float, int]] = collections.deque()
        self.per_dest: dict[str, dict[str, Any]] = {}

    def dest(self, node_id: str) -> dict[str, Any]:
        return self.per_dest.setdefault(node_id, {"replicated": 0, "failed": 0, "last_error": None})

    def delivered(self, node_id: str, n: int, nbytes: int, lags: list[float]) -> None:
        self.replicated += n
        self.dest(node_id)["replicated"] += n
        self.lags.extend(lags)
        self.sent(nbytes)

    def delivery_failed(self, node_id: str, n: int, error: str | None) -> None:
        self.failed += n
        d = self.dest(node_id)
        d["failed"] += n
        d["last_error"] = error

    def sent(self, nbytes: int) -> None:
        now = time.monotonic()
        self.bytes_replicated += nbytes
        self._sent.append((now, nbytes))
        while self._sent and self._sent[0][0] < now - BANDWIDTH_WINDOW_S:
            self._sent.popleft()

    def bandwidth(self) -> float:
        now = time.monotonic()
        while self._sent and self._sent[0][0] < now - BANDWIDTH_WINDOW_S:
            self._sent.popleft()
        return sum(n for _, n in self._sent) / BANDWIDTH_WINDOW_S

    def lag_summary(self) -> dict[str, float]:
        if not self.lags:
            return {"avg": 0.0, "max": 0.0, "p95": 0.0}
        s = sorted(self.lags)
        return {"avg": sum(s) / len(s), "max": s[-1], "p95": s[min(len(s) - 1, int(0.95 * len(s)))]}
