"""Topology: who is live, who holds what, and how many copies a write needs; the one read-only
view of membership + placement + the replication mode that the other components are given.
"""
from __future__ import annotations

from collections.abc import Callable

from .membership import Member, Membership, NodeState
from .placement import Placement
from .transport import Address


class Topology:
    def __init__(self, membership: Membership, placement: Placement, mode: str) -> None:
        self._membership = membership
        self._placement = placement
        self.node_id = membership.node_id
        self.mode = mode
        self.factor = placement.replication_factor
        self._unsubscribe: Callable[[], None] | None = None

    def follow(self) -> None:
        """Keep replica sets in step with membership from now on."""
        self._unsubscribe = self._membership.on_change(lambda _ev: self.refresh())
        self.refresh()

    def refresh(self) -> None:
        # Replica sets span every member that is not leaving, Failed ones included: a write whose
        # replica is down waits for it (sync fails, quorum counts it missing, async queues for it)
        # instead of quietly choosing another home it would have to be moved from later.
        self._placement.update(m.node_id for m in self._membership.members()
                               if m.state is not NodeState.LEAVING)

    def member(self, node_id: str) -> Member | None:
        return self._membership.get(node_id)

    def address(self, node_id: str) -> Address | None:
        m = self._membership.get(node_id)
        return None if m is None else m.address

    def live(self, node_id: str) -> bool:
        if node_id == self.node_id:
            return True
        m = self._membership.get(node_id)
        return m is not None and m.state in (NodeState.ACTIVE, NodeState.JOINING)

    def replicas(self, bucket: str, key: str) -> list[str]:
        return self._placement.replicas(bucket, key)


    def acts_for(self, bucket: str, key: str) -> bool:
        """This node is the key's first live replica: the one node that runs background work
        for it (lifecycle), so exactly one acts while the membership view agrees."""
        live = [n for n in self.replicas(bucket, key) if self.live(n)]
        return bool(live) and live[0] == self.node_id
    def others(self) -> list[str]:
        """Every other member that is not leaving (bucket-level state goes to all of them)."""
        return [m.node_id for m in self._membership.members()
                if m.node_id != self.node_id and m.state is not NodeState.LEAVING]

    def required(self, n: int | None = None) -> int:
        """Commits a write needs before it is acknowledged, out of n copies (default: the
        replication factor; a replica set can be smaller while too few members exist, and then a
        sync or quorum write is refused rather than acknowledged with fewer copies than promised)."""
        n = self.factor if n is None else n
        if self.mode == "sync":
            return n
        if self.mode == "quorum":
            return n // 2 + 1
        return 1
