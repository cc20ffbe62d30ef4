"""Conflict resolution between two versions of one replicated item (RS3GW_CONFLICT_RESOLUTION).

A version whose vector is dominated always loses, whatever the strategy: that is not a conflict.
Concurrent versions (and, defensively, equal vectors on two different writes) are a conflict,
resolved by a pure function of the unordered pair, so every node picks the same winner whatever
order the versions reached it in, and replicas converge:

- last_write_wins: the version later in the total order (HLC, then origin node, then etag, then
  the rest of the stamp). It is kept as written (its own vector).
- first_write_wins: the version of the older lineage (the earlier ``created``: the first writer of
  a key wins a creation race); two versions of one lineage (concurrent overwrites of an object
  both sides had) fall back to the total order, later wins. Ranking by the lineage rather than by
  the write's own HLC is what keeps it convergent: a causal overwrite inherits its lineage, so it
  still ranks above what it overwrote (ranking by the write's HLC would let an old write beat the
  overwrite of its rival and replicas could end up on different winners). Kept as written.
- vector_clock_merge: the later version in the total order is kept as the object, with the merged
  vector, so the result dominates both sides: a re-delivered loser is then dominated (skipped,
  not counted again), and the next local write dominates both histories.
- custom: RS3GW_CONFLICT_RESOLVER names a callable ``f(a, b) -> ObjectVersion`` (``pkg.mod:func``
  or ``pkg.mod.func``), imported once. It is called with (a, b) in total order, so it is symmetric
  by construction; it must be deterministic and return a stamp of the same write as a or b, with a
  vector that dominates that input's. A resolver that raises or returns anything else is counted
  (resolver_errors), logged, and last_write_wins decides instead, so replication never stalls.

Counters (ConflictStats) are plain integers the metrics layer reads: conflicts_total[strategy]
(conflicts seen), resolved_total[strategy] (settled by that strategy), resolver_errors_total.
"""
from __future__ import annotations

import enum
import importlib
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, replace
from functools import lru_cache

from .versions import ObjectVersion, Ordering

log = logging.getLogger("rs3gw.cluster.conflicts")

CustomResolverFn = Callable[[ObjectVersion, ObjectVersion], ObjectVersion]
RESOLVER_ERROR_LOG_EVERY = 1000


class Strategy(enum.StrEnum):
    LAST_WRITE_WINS = "last_write_wins"
    FIRST_WRITE_WINS = "first_write_wins"
    VECTOR_CLOCK_MERGE = "vector_clock_merge"
    CUSTOM = "custom"


class ConflictConfigError(ValueError):
    """Unknown strategy, or a custom resolver that cannot be loaded."""


@dataclass(frozen=True, slots=True)
class Resolution:
    winner: ObjectVersion
    conflict: bool                  # the two were concurrent (a dominated one is not a conflict)
    strategy: Strategy | None       # what decided a conflict (None when there was none)


class ConflictStats:
    """Thread-safe counters: resolution may run on the metadata writer thread."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.conflicts_total: dict[str, int] = {s.value: 0 for s in Strategy}
        self.resolved_total: dict[str, int] = {s.value: 0 for s in Strategy}
        self.resolver_errors_total = 0

    def count(self, conflict_label: str, resolved_label: str, error: bool) -> int:
        with self._lock:
            self.conflicts_total[conflict_label] += 1
            self.resolved_total[resolved_label] += 1
            if error:
                self.resolver_errors_total += 1
            return self.resolver_errors_total

    def snapshot(self) -> dict[str, object]:
        with self._lock:
            return {"conflicts_total": dict(self.conflicts_total),
                    "resolved_total": dict(self.resolved_total),
                    "resolver_errors_total": self.resolver_errors_total}


@lru_cache(maxsize=16)
def load_resolver(path: str) -> CustomResolverFn:
    """Import ``pkg.mod:func`` or ``pkg.mod.func`` once; ConflictConfigError if that fails."""
    module_name, sep, attr = path.partition(":")
    if not sep:
        module_name, _, attr = path.rpartition(".")
    if not module_name or not attr:
        raise ConflictConfigError(f"custom conflict resolver {path!r}: expected pkg.module:function")
    try:
        obj: object = importlib.import_module(module_name)
        for part in attr.split("."):
            obj = getattr(obj, part)
    except (ImportError, AttributeError) as e:
        raise ConflictConfigError(f"custom conflict resolver {path!r} cannot be loaded: {e}") from e
    if not callable(obj):
        raise ConflictConfigError(f"custom conflict resolver {path!r} is not callable")
    fn: CustomResolverFn = obj
    return fn


def _later(a: ObjectVersion, b: ObjectVersion) -> tuple[ObjectVersion, ObjectVersion]:
    """(earlier, later) in the total order."""
    return (a, b) if a.order_key() < b.order_key() else (b, a)


class ConflictResolver:
    def __init__(self, strategy: Strategy | str = Strategy.LAST_WRITE_WINS, *,
                 custom: CustomResolverFn | str | None = None,
                 stats: ConflictStats | None = None) -> None:
        try:
            self.strategy = Strategy(strategy)
        except ValueError as e:
            raise ConflictConfigError(f"unknown conflict resolution strategy {strategy!r}; expected "
                                      f"one of {', '.join(s.value for s in Strategy)}") from e
        if (self.strategy is Strategy.CUSTOM) != (custom is not None):
            raise ConflictConfigError("a custom resolver is given with, and only with, strategy 'custom'")
        self._custom = load_resolver(custom) if isinstance(custom, str) else custom
        self.stats = stats or ConflictStats()

    def resolve(self, a: ObjectVersion, b: ObjectVersion) -> Resolution:
        """Which of two versions of the same item the item ends up as. Symmetric in (a, b)."""
        order = a.vector.compare(b.vector)
        if order is Ordering.AFTER:
            return Resolution(a, False, None)
        if order is Ordering.BEFORE:
            return Resolution(b, False, None)
        if order is Ordering.EQUAL and a.same_write(b):
            return Resolution(a, False, None)
        return self._resolve_conflict(*_later(a, b))

    def _resolve_conflict(self, lo: ObjectVersion, hi: ObjectVersion) -> Resolution:
        strategy, error = self.strategy, False
        if strategy is Strategy.CUSTOM:
            winner = self._run_custom(lo, hi)
            if winner is None:
                strategy, error = Strategy.LAST_WRITE_WINS, True
                winner = hi
        elif strategy is Strategy.LAST_WRITE_WINS:
            winner = hi
        elif strategy is Strategy.FIRST_WRITE_WINS:
            winner = hi if lo.lineage == hi.lineage else min((lo, hi), key=lambda v: v.lineage)
        else:
            winner = replace(hi, vector=lo.vector.merge(hi.vector))
        errors = self.stats.count(self.strategy.value, strategy.value, error)
        if error and (errors - 1) % RESOLVER_ERROR_LOG_EVERY == 0:
            log.error("custom conflict resolver failed %d time(s); last_write_wins decided instead",
                      errors)
        return Resolution(winner, True, strategy)

    def _run_custom(self, lo: ObjectVersion, hi: ObjectVersion) -> ObjectVersion | None:
        assert self._custom is not None
        try:
            out = self._custom(lo, hi)
        except Exception:
            log.debug("custom conflict resolver raised", exc_info=True)
            return None
        if not isinstance(out, ObjectVersion):
            log.debug("custom conflict resolver returned %r, not an ObjectVersion", out)
            return None
        for side in (lo, hi):
            if out.same_write(side) and out.vector.dominates(side.vector):
                return out
        log.debug("custom conflict resolver returned a stamp of neither input: %r", out)
        return None


def resolver_for(strategy: str, custom: str | None) -> ConflictResolver:
    """The configured resolver: a custom one (``pkg.mod:fn``) when given, else the strategy."""
    if custom:
        return ConflictResolver("custom", custom=custom)
    return ConflictResolver(strategy)
