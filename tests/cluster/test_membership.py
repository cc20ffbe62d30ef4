"""SWIM membership, in-process: several Membership instances on 127.0.0.1 with fast intervals."""
from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import replace
from typing import Any

import pytest
from cluster_helpers import ClusterPKI, free_ports, run, wait_until

from rs3gw.cluster.config import ClusterConfig
from rs3gw.cluster.membership import Member, MemberEvent, Membership, NodeState
from rs3gw.cluster.placement import Placement
from rs3gw.cluster.topology import Topology

GOSSIP_S = 0.1
HEARTBEAT_S = 0.3
TIMEOUT_S = 1.0
DEADLINE_S = 20.0         # generous: the machine may be busy; these are deadlines, not timings


def cfg(node_id: str, port: int, seeds: list[int], **kw: Any) -> ClusterConfig:
    c = ClusterConfig(enabled=True, node_id=node_id, bind_host="127.0.0.1", bind_port=port,
                      advertise_host="127.0.0.1", advertise_port=port,
                      seed_nodes=tuple(("127.0.0.1", p) for p in seeds),
                      gossip_interval_s=GOSSIP_S, heartbeat_interval_s=HEARTBEAT_S,
                      heartbeat_timeout_s=TIMEOUT_S, request_timeout_s=2.0, connect_timeout_s=2.0)
    return replace(c, **kw)


def view(m: Membership) -> dict[str, tuple[str, bool]]:
    return {x.node_id: (x.state.value, x.suspect) for x in m.members()}


def states(m: Membership) -> dict[str, str]:
    return {x.node_id: x.state.value for x in m.members()}


def all_active(nodes: list[Membership], ids: list[str] | None = None) -> bool:
    ids = ids or [n.node_id for n in nodes]
    return all(states(n) == {i: "Active" for i in ids} for n in nodes)


@asynccontextmanager
async def cluster(*configs: ClusterConfig) -> AsyncIterator[list[Membership]]:
    nodes = [Membership(c) for c in configs]
    try:
        for n in nodes:
            await n.start()
        yield nodes
    finally:
        await asyncio.gather(*(n.close() for n in nodes))


@pytest.mark.parametrize("order", ["seed-first", "seed-last"])
def test_nodes_find_each_other_from_one_seed_in_any_start_order(order: str) -> None:
    async def main() -> None:
        ports = free_ports(4)
        seed = ports[0]
        configs = [cfg("n0", seed, [seed])] + [cfg(f"n{i}", ports[i], [seed]) for i in (1, 2, 3)]
        if order == "seed-last":
            configs = configs[1:] + configs[:1]
        async with cluster(*configs[:-1]) as first:
            if order == "seed-last":
                # Nobody can join yet: the seed is not up. They keep retrying.
                await asyncio.sleep(3 * GOSSIP_S)
                assert all(n.local.state is NodeState.JOINING for n in first)
            async with cluster(configs[-1]) as last:
                nodes = first + last
                await wait_until(lambda: all_active(nodes), DEADLINE_S, "four Active members everywhere")
                for n in nodes:
                    assert n.local.version and n.local.address[1] in ports
                # Round-robin probing reaches every member directly sooner or later.
                await wait_until(lambda: all(m.last_seen > 0 for n in nodes for m in n.members()),
                                 DEADLINE_S, "direct contact with every member")
    run(main())


def test_dead_node_is_suspected_then_failed_and_a_restart_rejoins() -> None:
    async def main() -> None:
        ports = free_ports(3)
        configs = [cfg(f"n{i}", p, [ports[0]]) for i, p in enumerate(ports)]
        async with cluster(*configs[:2]) as nodes:
            dead = Membership(configs[2])
            await dead.start()
            everyone = [*nodes, dead]
            await wait_until(lambda: all_active(everyone), DEADLINE_S, "three Active")
            seen: list[MemberEvent] = []
            nodes[0].on_change(lambda ev: seen.append(ev) if ev.member.node_id == "n2" else None)
            old_inc = nodes[0].get("n2").incarnation  # type: ignore[union-attr]
            await dead.close()                         # no goodbye: the others must find out
            await wait_until(lambda: all(states(n).get("n2") == "Failed" for n in nodes), DEADLINE_S,
                             "n2 Failed on both survivors")
            kinds = [(e.member.state.value, e.member.suspect) for e in seen]
            assert ("Active", True) in kinds                        # suspected first...
            assert kinds.index(("Active", True)) < kinds.index(("Failed", False))   # ...then Failed
            # Placement ignores it now.
            assert sorted(Placement(2, [m.node_id for m in nodes[0].active_members()]).nodes) == ["n0", "n1"]

            back = Membership(configs[2])                # same id, same address, fresh process state
            await back.start()
            try:
                everyone = [*nodes, back]
                await wait_until(lambda: all_active(everyone), DEADLINE_S, "n2 Active again everywhere")
                assert nodes[0].get("n2").incarnation > old_inc  # type: ignore[union-attr]
            finally:
                await back.close()
    run(main())


def test_suspected_live_node_refutes_with_a_higher_incarnation() -> None:
    async def main() -> None:
        ports = free_ports(3)
        async with cluster(*(cfg(f"n{i}", p, [ports[0]]) for i, p in enumerate(ports))) as nodes:
            await wait_until(lambda: all_active(nodes), DEADLINE_S, "three Active")
            a, b = nodes[0], nodes[1]
            inc = b.local.incarnation
            # As if a's ping to b and every indirect ping had been lost.
            a._apply(replace(a.get("n1"), suspect=True))  # type: ignore[arg-type]
            assert a.get("n1").suspect  # type: ignore[union-attr]
            await wait_until(lambda: b.local.incarnation > inc, DEADLINE_S, "b to refute")
            await wait_until(lambda: all(not n.get("n1").suspect for n in nodes)  # type: ignore[union-attr]
                             and all_active(nodes), DEADLINE_S, "the refutation everywhere")
            # A stale Failed rumor (old incarnation) no longer moves anyone.
            a._apply(replace(a.get("n1"), state=NodeState.FAILED, incarnation=inc))  # type: ignore[arg-type]
            assert a.get("n1").state is NodeState.ACTIVE  # type: ignore[union-attr]
    run(main())


def test_indirect_ping_saves_a_node_behind_a_broken_direct_link() -> None:
    async def main() -> None:
        ports = free_ports(3)
        async with cluster(*(cfg(f"n{i}", p, [ports[0]]) for i, p in enumerate(ports))) as nodes:
            await wait_until(lambda: all_active(nodes), DEADLINE_S, "three Active")
            a = nodes[0]
            real_ping = a._ping
            direct_to_n1 = 0

            async def cut_ping(target: Member, timeout_s: float) -> bool:
                nonlocal direct_to_n1
                if target.node_id == "n1":
                    direct_to_n1 += 1
                    return False                     # a's direct link to n1 is cut
                return await real_ping(target, timeout_s)

            a._ping = cut_ping  # type: ignore[method-assign]
            suspected: list[MemberEvent] = []
            a.on_change(lambda ev: suspected.append(ev) if ev.member.suspect else None)
            # Probe n1 directly several times: n2 answers for it each time.
            for _ in range(3):
                await a._probe(a.get("n1"))  # type: ignore[arg-type]
            assert direct_to_n1 == 3
            assert [e for e in suspected if e.member.node_id == "n1"] == []
            assert a.get("n1").state is NodeState.ACTIVE  # type: ignore[union-attr]
    run(main())


def test_graceful_leave_is_leaving_then_gone() -> None:
    async def main() -> None:
        ports = free_ports(3)
        async with cluster(*(cfg(f"n{i}", p, [ports[0]]) for i, p in enumerate(ports[:2]))) as nodes:
            leaver = Membership(cfg("n2", ports[2], [ports[0]]))
            await leaver.start()
            await wait_until(lambda: all_active([*nodes, leaver]), DEADLINE_S, "three Active")
            histories: list[list[MemberEvent]] = [[], []]
            for n, h in zip(nodes, histories, strict=True):
                n.on_change(lambda ev, h=h: h.append(ev) if ev.member.node_id == "n2" else None)
            placement = Placement(3)
            Topology(nodes[0], placement, "quorum").follow()
            assert placement.nodes == ["n0", "n1", "n2"]
            await leaver.leave()
            await wait_until(lambda: all("n2" not in states(n) for n in nodes), DEADLINE_S, "n2 gone")
            for h in histories:
                steps = [("removed" if e.removed else e.member.state.value) for e in h]
                assert "Leaving" in steps and steps[-1] == "removed", steps
                assert "Failed" not in steps
            assert placement.nodes == ["n0", "n1"]
            # A late rumor of its old life does not bring it back.
            old = replace(histories[0][-1].member, state=NodeState.ACTIVE)
            nodes[0]._apply(old)
            assert "n2" not in states(nodes[0])
    run(main())


def test_metadata_and_version_spread_and_listeners_see_them() -> None:
    async def main() -> None:
        ports = free_ports(3)
        configs = [cfg(f"n{i}", p, [ports[0]]) for i, p in enumerate(ports)]
        nodes = [Membership(c, metadata={"zone": f"z{i}"}, version=f"v{i}") for i, c in enumerate(configs)]
        try:
            for n in nodes:
                await n.start()
            await wait_until(lambda: all_active(nodes), DEADLINE_S, "three Active")
            assert nodes[1].get("n2").metadata == {"zone": "z2"}  # type: ignore[union-attr]
            assert nodes[1].get("n2").version == "v2"  # type: ignore[union-attr]
            nodes[2].update_metadata({"zone": "z2", "disks": 8})
            await wait_until(lambda: all(n.get("n2").metadata.get("disks") == 8  # type: ignore[union-attr]
                                         for n in nodes), DEADLINE_S, "new metadata everywhere")
        finally:
            await asyncio.gather(*(n.close() for n in nodes))
    run(main())


def test_membership_over_mutual_tls(pki: ClusterPKI) -> None:
    async def main() -> None:
        ports = free_ports(2)
        tls = {"tls_cert": pki.nodes[0].cert, "tls_key": pki.nodes[0].key, "tls_ca": pki.ca}
        async with cluster(*(cfg(f"n{i}", p, [ports[0]], **tls) for i, p in enumerate(ports))) as nodes:
            await wait_until(lambda: all_active(nodes), DEADLINE_S, "two Active over mTLS")
            rogue_cfg = cfg("rogue", free_ports(1)[0], [ports[0]], tls_cert=pki.rogue.cert,
                            tls_key=pki.rogue.key, tls_ca=pki.rogue_ca)
            async with cluster(rogue_cfg) as (rogue,):
                await asyncio.sleep(5 * GOSSIP_S)
                assert rogue.local.state is NodeState.JOINING      # refused by every seed
                assert all("rogue" not in states(n) for n in nodes)
    run(main())
