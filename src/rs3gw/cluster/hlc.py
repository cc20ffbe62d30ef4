"""Hybrid logical clock (Kulkarni et al., "Logical Physical Clocks", 2014).

A timestamp is (physical_ms, logical, node_id). physical_ms follows the wall clock but never goes
backwards; logical orders events inside one millisecond (and while the wall clock lags behind a
timestamp already seen); node_id makes the order total, so two nodes never issue equal timestamps
and every node sorts any set of timestamps the same way.

Properties the replication layer relies on:

- ``now()`` on one clock is strictly increasing, whatever the wall clock does (it may step back).
- ``update(remote)`` returns a timestamp above both ``remote`` and everything this clock issued
  before: if event B saw event A (directly or through a chain of messages), ts(B) > ts(A). LWW
  therefore never lets an older write beat a newer one that saw it.
- physical_ms stays within max_drift_ms of the local wall clock: a remote timestamp further in the
  future than that is refused (ClockDriftError) and leaves the clock untouched, so one node with a
  broken clock cannot drag every clock in the cluster into the future. The refusal is not final: an
  event refused now is accepted on a retry once it is within the bound (the sender retries with
  backoff), but a node whose clock runs ahead by more than the bound cannot replicate until its
  clock is fixed, which is the point.
"""
from __future__ import annotations

import struct
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

# Logical counter: 32 bits. Reaching the maximum (a wall clock stuck for 4 billion events) moves
# physical_ms forward by one instead of overflowing; the drift bound still applies to everyone else.
LOGICAL_MAX = (1 << 32) - 1
PHYSICAL_MS_MAX = (1 << 63) - 1
NODE_ID_BYTES_MAX = 128             # as cluster.config
DEFAULT_MAX_DRIFT_MS = 5_000

_SORT_KEY = struct.Struct(">QI")


class ClockDriftError(ValueError):
    """A remote timestamp is further ahead of the local wall clock than the configured bound."""

    def __init__(self, remote: HLCTimestamp, wall_ms: int, max_drift_ms: int) -> None:
        self.remote = remote
        self.ahead_ms = remote.physical_ms - wall_ms
        self.max_drift_ms = max_drift_ms
        super().__init__(
            f"timestamp from node {remote.node_id!r} is {self.ahead_ms} ms ahead of this node's clock "
            f"(the limit is {max_drift_ms} ms): check time synchronisation (NTP/PTP) on both nodes")


@dataclass(frozen=True, order=True, slots=True)
class HLCTimestamp:
    """Totally ordered by (physical_ms, logical, node_id)."""
    physical_ms: int
    logical: int
    node_id: str

    def __post_init__(self) -> None:
        if type(self.physical_ms) is not int or not 0 <= self.physical_ms <= PHYSICAL_MS_MAX:
            raise ValueError(f"HLC physical_ms out of range: {self.physical_ms!r}")
        if type(self.logical) is not int or not 0 <= self.logical <= LOGICAL_MAX:
            raise ValueError(f"HLC logical counter out of range: {self.logical!r}")
        if not isinstance(self.node_id, str) or not self.node_id \
                or len(self.node_id.encode("utf-8", "surrogatepass")) > NODE_ID_BYTES_MAX:
            raise ValueError(f"HLC node id must be 1..{NODE_ID_BYTES_MAX} bytes: {self.node_id!r}")

    @property
    def wall_time_s(self) -> float:
        """The physical part as epoch seconds (for lag metrics and logs)."""
        return self.physical_ms / 1000.0

    def encode(self) -> list[Any]:
        """msgpack-ready compact form: [physical_ms, logical, node_id]."""
        return [self.physical_ms, self.logical, self.node_id]

    @classmethod
    def decode(cls, obj: Any) -> HLCTimestamp:
        """The inverse of encode(); ValueError on anything else."""
        if not isinstance(obj, (list, tuple)) or len(obj) != 3:
            raise ValueError(f"HLC timestamp must be [physical_ms, logical, node_id], got {obj!r}")
        return cls(obj[0], obj[1], obj[2])

    def sort_key(self) -> bytes:
        """Bytes that sort (memcmp, e.g. a SQLite BLOB column) exactly as the timestamps do.

        UTF-8 byte order equals code point order, which is how str compares.
        """
        return _SORT_KEY.pack(self.physical_ms, self.logical) + self.node_id.encode("utf-8", "surrogatepass")

    @classmethod
    def from_sort_key(cls, key: bytes) -> HLCTimestamp:
        if len(key) <= _SORT_KEY.size:
            raise ValueError("HLC sort key too short")
        physical_ms, logical = _SORT_KEY.unpack_from(key)
        return cls(physical_ms, logical, key[_SORT_KEY.size:].decode("utf-8", "surrogatepass"))

    def __str__(self) -> str:
        return f"{self.physical_ms}.{self.logical}@{self.node_id}"


def wall_clock_ms() -> int:
    return time.time_ns() // 1_000_000


class HybridClock:
    """The clock of one node. Thread-safe: the event loop and the metadata writer may both stamp."""

    def __init__(self, node_id: str, *, max_drift_ms: int = DEFAULT_MAX_DRIFT_MS,
                 wall_ms: Callable[[], int] = wall_clock_ms) -> None:
        if max_drift_ms <= 0:
            raise ValueError("max_drift_ms must be > 0")
        HLCTimestamp(0, 0, node_id)     # validates the node id
        self.node_id = node_id
        self.max_drift_ms = max_drift_ms
        self._wall_ms = wall_ms
        self._physical_ms = 0
        self._logical = 0
        self._lock = threading.Lock()

    def last(self) -> HLCTimestamp:
        """The latest timestamp issued (or restored); (0, 0) before the first."""
        with self._lock:
            return HLCTimestamp(self._physical_ms, self._logical, self.node_id)

    def now(self) -> HLCTimestamp:
        """A timestamp for a local event (a write, or a message about to be sent)."""
        with self._lock:
            wall = self._wall_ms()
            if wall > self._physical_ms:
                self._physical_ms, self._logical = wall, 0
            else:
                self._tick()
            return HLCTimestamp(self._physical_ms, self._logical, self.node_id)

    def update(self, remote: HLCTimestamp) -> HLCTimestamp:
        """Take in a timestamp from another node (a received event); returns this event's timestamp,
        greater than ``remote`` and than every timestamp this clock issued before.

        Raises ClockDriftError (and changes nothing) when remote is more than max_drift_ms ahead.
        """
        with self._lock:
            wall = self._wall_ms()
            if remote.physical_ms - wall > self.max_drift_ms:
                raise ClockDriftError(remote, wall, self.max_drift_ms)
            old = self._physical_ms
            top = max(old, remote.physical_ms, wall)
            if top == old and top == remote.physical_ms:
                logical = max(self._logical, remote.logical)
            elif top == old:
                logical = self._logical
            elif top == remote.physical_ms:
                logical = remote.logical
            else:
                self._physical_ms, self._logical = top, 0
                return HLCTimestamp(top, 0, self.node_id)
            self._physical_ms, self._logical = top, logical
            self._tick()
            return HLCTimestamp(self._physical_ms, self._logical, self.node_id)

    def restore(self, ts: HLCTimestamp) -> None:
        """Never issue a timestamp at or below ts again. For start-up, with the highest timestamp
        found in local metadata: a restarted node whose wall clock stepped back must not stamp new
        writes older than the ones it made before. No drift check: these are our own past stamps.
        """
        with self._lock:
            self._physical_ms, self._logical = max((self._physical_ms, self._logical),
                                                   (ts.physical_ms, ts.logical))

    def _tick(self) -> None:
        if self._logical < LOGICAL_MAX:
            self._logical += 1
        else:
            self._physical_ms, self._logical = self._physical_ms + 1, 0
