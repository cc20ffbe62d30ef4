"""Versioned buckets across real rs3gw nodes: every version reaches every replica under one id,
concurrent writers through different nodes all keep their versions, listings merge every
node's versions, and deleting one version (or adding a marker) on one node holds everywhere,
also for a node that was down when it happened."""
from __future__ import annotations

import concurrent.futures
import datetime as dt
import os
import sqlite3
import time
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError
from cluster_helpers import run
from cluster_procs import ClusterProcs, wait

from rs3gw.cluster.messages import ListVersions, VersionsPage
from rs3gw.cluster.rpc import Rpc
from rs3gw.cluster.transport import Transport

pytestmark = [pytest.mark.slow, pytest.mark.cluster_procs]

MIB = 1 << 20


def _own_versions(c: ClusterProcs, i: int, bucket: str) -> list[tuple[str, str, bool, bool]]:
    """(key, version id, is latest, delete marker) of what node i itself holds, newest first
    within a key, asked over the node-to-node protocol so no other node's copy stands in."""
    async def ask() -> list[tuple[str, str, bool, bool]]:
        t = Transport()
        try:
            out: list[tuple[str, str, bool, bool]] = []
            marker, order = "", None
            while True:
                page = (await Rpc(t).request(
                    ("127.0.0.1", c.ports[i]),
                    ListVersions(bucket=bucket, key_marker=marker, marker_order=order,
                                 max_keys=500), timeout_s=30)).reply
                assert isinstance(page, VersionsPage)
                out += [(e.key, e.version_id, e.is_latest, e.delete_marker) for e in page.entries]
                if not page.truncated or not page.entries:
                    return out
                marker, order = page.entries[-1].key, page.entries[-1].order
        finally:
            await t.close()
    return run(ask())


def _all_versions(s3: Any, bucket: str, page_size: int = 1000) -> list[dict[str, Any]]:
    out = []
    for page in s3.get_paginator("list_object_versions").paginate(
            Bucket=bucket, PaginationConfig={"PageSize": page_size}):
        out += [dict(v, Marker=False) for v in page.get("Versions", [])]
        out += [dict(m, Marker=True) for m in page.get("DeleteMarkers", [])]
    # boto3 splits versions and markers: order them as S3 does (key, then newest first).
    return sorted(out, key=lambda v: (v["Key"], v["VersionId"] == "null", v["VersionId"]),
                  reverse=False)


def _ids(c: ClusterProcs, i: int, bucket: str, key: str) -> list[str]:
    return [vid for k, vid, _, _ in _own_versions(c, i, bucket) if k == key]


def _drained(c: ClusterProcs, nodes: list[int]) -> bool:
    return all(c.api(i, "replication")["events_pending"] == 0 for i in nodes)


def _enable(c: ClusterProcs, bucket: str, status: str = "Enabled") -> None:
    c.client(0).put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": status})
    for i in range(c.n):
        wait(lambda i=i: c.client(i).get_bucket_versioning(Bucket=bucket).get("Status") == status,  # type: ignore[misc]
             30, f"node {i} to see versioning {status}")


@pytest.mark.parametrize("factor", [3, 2], ids=["factor3", "factor2"])
def test_versions_through_every_node(tmp_path: Path, factor: int) -> None:
    c = ClusterProcs(tmp_path, 3, mode="quorum", factor=factor)
    try:
        c.start()
        s = [c.client(i) for i in range(3)]
        s[0].create_bucket(Bucket="vbk")
        s[0].put_object(Bucket="vbk", Key="old", Body=b"before versioning")
        _enable(c, "vbk")
        bodies = {}
        for i in range(3):       # one version of "k" written through each node, in turn
            body = os.urandom(1000 + i) if i != 1 else os.urandom(3 * MIB)
            vid = s[i].put_object(Bucket="vbk", Key="k", Body=body)["VersionId"]
            bodies[vid] = body
        ids = list(bodies)
        assert len(set(ids)) == 3 and all(len(v) == 32 for v in ids)
        assert ids == sorted(ids), "version ids order as the writes did"
        for i in range(3):
            listed = [v for v in _all_versions(s[i], "vbk") if v["Key"] == "k"]
            assert [v["VersionId"] for v in sorted(listed, key=lambda v: v["VersionId"],
                                                    reverse=True)] == ids[::-1]
            assert [v["VersionId"] for v in listed if v["IsLatest"]] == [ids[2]]
            for vid, body in bodies.items():
                assert s[i].get_object(Bucket="vbk", Key="k", VersionId=vid)["Body"].read() == body
            assert s[i].get_object(Bucket="vbk", Key="k")["VersionId"] == ids[2]
            old = [v for v in _all_versions(s[i], "vbk") if v["Key"] == "old"]
            assert [(v["VersionId"], v["IsLatest"]) for v in old] == [("null", True)]

        # Tags of one version, set through node 0, read through node 2.
        s[0].put_object_tagging(Bucket="vbk", Key="k", VersionId=ids[0],
                                Tagging={"TagSet": [{"Key": "t", "Value": "v0"}]})
        for i in range(3):
            assert s[i].get_object_tagging(Bucket="vbk", Key="k", VersionId=ids[0])["TagSet"] == \
                [{"Key": "t", "Value": "v0"}]
            assert s[i].get_object_tagging(Bucket="vbk", Key="k")["TagSet"] == []

        # A delete marker through node 1: 404 with its headers everywhere; the versions stay.
        d = s[1].delete_object(Bucket="vbk", Key="k")
        assert d["DeleteMarker"] is True
        marker = d["VersionId"]
        assert marker > ids[2]
        for i in range(3):
            with pytest.raises(ClientError) as ei:
                s[i].get_object(Bucket="vbk", Key="k")
            assert ei.value.response["Error"]["Code"] == "NoSuchKey"
            h = ei.value.response["ResponseMetadata"]["HTTPHeaders"]
            assert h.get("x-amz-delete-marker") == "true" and h.get("x-amz-version-id") == marker
            assert "k" not in [o["Key"] for o in s[i].list_objects_v2(Bucket="vbk").get("Contents", [])]
            markers = s[i].list_object_versions(Bucket="vbk").get("DeleteMarkers", [])
            assert [(m["VersionId"], m["IsLatest"]) for m in markers] == [(marker, True)]

        # One version deleted through node 2: gone from every node's own store.
        s[2].delete_object(Bucket="vbk", Key="k", VersionId=ids[1])
        for i in range(3):
            with pytest.raises(ClientError) as ei:
                s[i].get_object(Bucket="vbk", Key="k", VersionId=ids[1])
            assert ei.value.response["Error"]["Code"] == "NoSuchVersion"
            assert ids[1] not in _ids(c, i, "vbk", "k")
        # Removing the marker by id brings the newest remaining version back, on every node.
        s[0].delete_object(Bucket="vbk", Key="k", VersionId=marker)
        for i in range(3):
            got = s[i].get_object(Bucket="vbk", Key="k")
            assert got["VersionId"] == ids[2] and got["Body"].read() == bodies[ids[2]]

        # Multipart completion and copies make versions too.
        up = s[1].create_multipart_upload(Bucket="vbk", Key="mp")
        parts = [os.urandom(5 * MIB), os.urandom(1000)]
        etags = [s[1].upload_part(Bucket="vbk", Key="mp", UploadId=up["UploadId"], PartNumber=n + 1,
                                  Body=p)["ETag"] for n, p in enumerate(parts)]
        done = s[1].complete_multipart_upload(
            Bucket="vbk", Key="mp", UploadId=up["UploadId"],
            MultipartUpload={"Parts": [{"PartNumber": n + 1, "ETag": e} for n, e in enumerate(etags)]})
        copied = s[2].copy_object(Bucket="vbk", Key="mp", CopySource={"Bucket": "vbk", "Key": "k",
                                                                     "VersionId": ids[0]})
        for i in range(3):
            assert s[i].get_object(Bucket="vbk", Key="mp", VersionId=done["VersionId"])["Body"].read() \
                == b"".join(parts)
            got = s[i].get_object(Bucket="vbk", Key="mp")
            assert got["VersionId"] == copied["VersionId"] and got["Body"].read() == bodies[ids[0]]

        # Suspended: PUTs replace the null version; the others stay.
        _enable(c, "vbk", "Suspended")
        s[0].put_object(Bucket="vbk", Key="k", Body=b"null one")
        s[2].put_object(Bucket="vbk", Key="k", Body=b"null two")
        for i in range(3):
            ks = [v for v in _all_versions(s[i], "vbk") if v["Key"] == "k"]
            assert sorted(v["VersionId"] for v in ks) == sorted([ids[0], ids[2], "null"])
            got = s[i].get_object(Bucket="vbk", Key="k")
            assert got["VersionId"] == "null" and got["Body"].read() == b"null two"
        # Nothing current but versions left: the bucket is not empty, on any node.
        for key in ("k", "mp", "old"):
            s[1].delete_object(Bucket="vbk", Key=key)
        with pytest.raises(ClientError) as ei:
            s[2].delete_bucket(Bucket="vbk")
        assert ei.value.response["Error"]["Code"] == "BucketNotEmpty"
    finally:
        c.stop_all()


def test_concurrent_writers_through_three_nodes_keep_every_version(tmp_path: Path) -> None:
    c = ClusterProcs(tmp_path, 3, mode="async", factor=3, conflict="vector_clock_merge")
    try:
        c.start()
        c.client(0).create_bucket(Bucket="race")
        for i in range(3):
            wait(lambda i=i: _has_bucket(c, i, "race"), 30, f"the bucket on node {i}")  # type: ignore[misc]
        _enable(c, "race")
        clients = [c.client(i) for i in range(3)]
        n = 15

        def put(args: tuple[int, int]) -> tuple[str, bytes]:
            i, j = args
            body = f"node {i} write {j} ".encode() * (10 + j)
            return clients[i].put_object(Bucket="race", Key="hot", Body=body)["VersionId"], body

        with concurrent.futures.ThreadPoolExecutor(6) as pool:
            acked = dict(pool.map(put, [(i, j) for j in range(n) for i in range(3)]))
        assert len(acked) == 3 * n, "every acknowledged write has a version id of its own"
        wait(lambda: _drained(c, [0, 1, 2]), 60, "replication to drain")
        wait(lambda: all(sorted(_ids(c, i, "race", "hot")) == sorted(acked) for i in range(3)),
             60, "every version on every node")
        newest = max(acked)
        for i in range(3):
            latest = [vid for k, vid, is_latest, _ in _own_versions(c, i, "race") if is_latest]
            assert latest == [newest], i
            got = clients[i].get_object(Bucket="race", Key="hot")
            assert got["VersionId"] == newest and got["Body"].read() == acked[newest]
            # Listing pages of 7 through this node: every version once, newest first.
            listed = [v["VersionId"] for v in _all_versions(clients[i], "race", page_size=7)]
            assert sorted(listed) == sorted(acked) and len(listed) == len(acked)
    finally:
        c.stop_all()


def _has_bucket(c: ClusterProcs, i: int, bucket: str) -> bool:
    try:
        c.client(i).head_bucket(Bucket=bucket)
        return True
    except ClientError:
        return False


def _version_tombstones(c: ClusterProcs, i: int, bucket: str) -> int:
    db = c.nodes[i].storage_root / ".rs3gw" / "meta.db"
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        return int(conn.execute("SELECT COUNT(*) FROM item_versions WHERE kind = 'version' AND "
                                "bucket = ? AND tombstone = 1", (bucket,)).fetchone()[0])
    finally:
        conn.close()


def test_node_down_gets_versions_and_version_deletes_when_back(tmp_path: Path) -> None:
    c = ClusterProcs(tmp_path, 3, mode="quorum", factor=3,
                     extra_env={"RS3GW_TOMBSTONE_GC_INTERVAL": "1"})
    try:
        c.start()
        s0 = c.client(0)
        s0.create_bucket(Bucket="vdk")
        _enable(c, "vdk")
        first = s0.put_object(Bucket="vdk", Key="k", Body=b"one")["VersionId"]
        second = s0.put_object(Bucket="vdk", Key="k", Body=b"two")["VersionId"]
        wait(lambda: _ids(c, 2, "vdk", "k") == [second, first], 30, "node 2 to hold both")
        c.kill(2)
        c.wait_state(0, "node-2", "Failed", 30)
        third = s0.put_object(Bucket="vdk", Key="k", Body=b"three")["VersionId"]
        s0.delete_object(Bucket="vdk", Key="k", VersionId=first)
        marker = c.client(1).delete_object(Bucket="vdk", Key="k")["VersionId"]
        c.start_node(2)
        c.wait_members(3)
        wait(lambda: _ids(c, 2, "vdk", "k") == [marker, third, second], 60,
             "node 2 to catch up: the new version and marker, and the deleted version gone")
        with pytest.raises(ClientError) as ei:
            c.client(2).get_object(Bucket="vdk", Key="k")
        assert ei.value.response["ResponseMetadata"]["HTTPHeaders"].get("x-amz-delete-marker") == "true"
        got = c.client(2).get_object(Bucket="vdk", Key="k", VersionId=third)
        assert got["Body"].read() == b"three"
        # The deleted version's tombstone goes once every replica holds it.
        wait(lambda: all(_version_tombstones(c, i, "vdk") == 0 for i in range(3)), 60,
             "the version's tombstone to be collected on every node")
        assert _ids(c, 0, "vdk", "k") == [marker, third, second]
    finally:
        c.stop_all()


def test_anti_entropy_repairs_versions_a_lost_queue_never_delivered(tmp_path: Path) -> None:
    c = ClusterProcs(tmp_path, 3, mode="async", factor=3,
                     extra_env={"RS3GW_ANTI_ENTROPY_INTERVAL": "1"})
    try:
        c.start()
        s0 = c.client(0)
        s0.create_bucket(Bucket="aev")
        _enable(c, "aev")
        kept = s0.put_object(Bucket="aev", Key="k", Body=b"kept")["VersionId"]
        doomed = s0.put_object(Bucket="aev", Key="k", Body=b"doomed")["VersionId"]
        wait(lambda: _ids(c, 2, "aev", "k") == [doomed, kept], 30, "node 2 to hold both")
        c.kill(2)
        c.wait_state(0, "node-2", "Failed", 30)
        new = {s0.put_object(Bucket="aev", Key=f"k{j}", Body=os.urandom(100 + j))["VersionId"]
               for j in range(5)}
        s0.delete_object(Bucket="aev", Key="k", VersionId=doomed)
        wait(lambda: _drained(c, [1]), 30, "node 1 to have everything")
        c.kill(0)
        # node-0's outbound queue (what node-2 was waiting for) is lost with it.
        for f in (c.nodes[0].storage_root / ".rs3gw").glob("replication.db*"):
            f.unlink()
        c.start_node(0)
        c.start_node(2)
        c.wait_members(3)
        want = sorted([(k, vid) for k, vid, _, _ in _own_versions(c, 1, "aev")])
        assert len(want) == 6 and ("k", doomed) not in want and new <= {v for _, v in want}
        wait(lambda: sorted((k, vid) for k, vid, _, _ in _own_versions(c, 2, "aev")) == want,
             60, "anti-entropy to bring node 2 every version and the version's delete")
    finally:
        c.stop_all()


def _lifecycle_count(c: ClusterProcs, i: int, event: str) -> float:
    text = c.nodes[i].raw("GET", "/metrics")[2].decode()
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
               if line.startswith("rs3gw_lifecycle_events_total{") and f'event="{event}"' in line)


def test_lifecycle_acts_once_per_key_across_the_cluster(tmp_path: Path) -> None:
    # Factor 2 of 3: every node lists every key (merged listings), one node acts for each.
    c = ClusterProcs(tmp_path, 3, mode="quorum", factor=2,
                     extra_env={"RS3GW_LIFECYCLE_DAY_SECONDS": "1"})
    try:
        c.start()
        s0 = c.client(0)
        s0.create_bucket(Bucket="lcv")
        _enable(c, "lcv")
        keys = [f"obj-{j}" for j in range(24)]
        for j, k in enumerate(keys):
            c.client(j % 3).put_object(Bucket="lcv", Key=k, Body=os.urandom(200))
        s0.put_bucket_lifecycle_configuration(Bucket="lcv", LifecycleConfiguration={"Rules": [
            {"ID": "expire", "Filter": {"Prefix": "obj-"}, "Status": "Enabled",
             "Expiration": {"Days": 1}}]})

        def expired() -> bool:
            listed = c.client(1).list_object_versions(Bucket="lcv")
            return len(listed.get("DeleteMarkers", [])) >= len(keys)
        wait(expired, 60, "every key to expire")
        wait(lambda: _drained(c, [0, 1, 2]), 30, "replication to drain")
        for i in range(3):
            listed = c.client(i).list_object_versions(Bucket="lcv")
            markers = listed.get("DeleteMarkers", [])
            # Exactly one marker per key: one node acted for each, and acting twice adds none.
            assert sorted(m["Key"] for m in markers) == sorted(keys), i
            assert all(m["IsLatest"] for m in markers)
            assert sorted(v["Key"] for v in listed["Versions"]) == sorted(keys)
            assert "Contents" not in c.client(i).list_objects_v2(Bucket="lcv")
        assert sum(_lifecycle_count(c, i, "expired") for i in range(3)) == len(keys)
    finally:
        c.stop_all()


def _code(e: pytest.ExceptionInfo[ClientError]) -> str:
    return str(e.value.response["Error"]["Code"])


def test_object_lock_holds_on_every_node(tmp_path: Path) -> None:
    c = ClusterProcs(tmp_path, 3, mode="quorum", factor=3)
    try:
        c.start()
        s = [c.client(i) for i in range(3)]
        s[0].create_bucket(Bucket="lck", ObjectLockEnabledForBucket=True)
        for i in range(3):
            wait(lambda i=i: _lock_enabled(s[i], "lck"), 30, f"node {i} to see the lock")  # type: ignore[misc]
            assert s[i].get_bucket_versioning(Bucket="lck")["Status"] == "Enabled"
        s[1].put_object_lock_configuration(Bucket="lck", ObjectLockConfiguration={
            "ObjectLockEnabled": "Enabled",
            "Rule": {"DefaultRetention": {"Mode": "GOVERNANCE", "Days": 1}}})
        for i in range(3):
            wait(lambda i=i: "Rule" in s[i].get_object_lock_configuration(  # type: ignore[misc]
                Bucket="lck")["ObjectLockConfiguration"], 30, f"node {i} to see the default")

        # COMPLIANCE for a few seconds, set through node 2: no node deletes it, bypass or not.
        until = dt.datetime.now(dt.UTC).replace(microsecond=0) + dt.timedelta(seconds=6)
        v1 = s[2].put_object(Bucket="lck", Key="k", Body=b"one", ObjectLockMode="COMPLIANCE",
                             ObjectLockRetainUntilDate=until)["VersionId"]
        for i in range(3):
            head = s[i].head_object(Bucket="lck", Key="k", VersionId=v1)
            assert (head["ObjectLockMode"], head["ObjectLockRetainUntilDate"]) == ("COMPLIANCE", until)
            with pytest.raises(ClientError) as ei:
                s[i].delete_object(Bucket="lck", Key="k", VersionId=v1,
                                   BypassGovernanceRetention=True)
            assert _code(ei) == "AccessDenied"
        with pytest.raises(ClientError) as ei:       # nor shortened, through any node
            s[0].put_object_retention(Bucket="lck", Key="k", VersionId=v1, Retention={
                "Mode": "COMPLIANCE", "RetainUntilDate": until - dt.timedelta(seconds=3)})
        assert _code(ei) == "AccessDenied"

        # The bucket's default (GOVERNANCE) plus a legal hold set through node 0.
        v2 = s[1].put_object(Bucket="lck", Key="k", Body=b"two")["VersionId"]
        s[0].put_object_legal_hold(Bucket="lck", Key="k", VersionId=v2, LegalHold={"Status": "ON"})
        for i in range(3):
            head = s[i].head_object(Bucket="lck", Key="k", VersionId=v2)
            assert head["ObjectLockMode"] == "GOVERNANCE" and head["ObjectLockLegalHoldStatus"] == "ON"
        with pytest.raises(ClientError) as ei:
            s[2].delete_object(Bucket="lck", Key="k", VersionId=v2, BypassGovernanceRetention=True)
        assert _code(ei) == "AccessDenied"
        gone = s[1].delete_objects(Bucket="lck", BypassGovernanceRetention=True, Delete={
            "Objects": [{"Key": "k", "VersionId": v2}]})
        assert [e["Code"] for e in gone.get("Errors", [])] == ["AccessDenied"]
        s[2].put_object_legal_hold(Bucket="lck", Key="k", VersionId=v2, LegalHold={"Status": "OFF"})
        with pytest.raises(ClientError) as ei:       # GOVERNANCE still holds without the bypass
            s[0].delete_object(Bucket="lck", Key="k", VersionId=v2)
        assert _code(ei) == "AccessDenied"
        s[0].delete_object(Bucket="lck", Key="k", VersionId=v2, BypassGovernanceRetention=True)

        # Past its date the COMPLIANCE version goes like any other, and from every node.
        time.sleep(max(0.0, (until - dt.datetime.now(dt.UTC)).total_seconds()) + 1.5)
        s[1].delete_object(Bucket="lck", Key="k", VersionId=v1)
        for i in range(3):
            assert _ids(c, i, "lck", "k") == []
    finally:
        c.stop_all()


def _lock_enabled(s3: Any, bucket: str) -> bool:
    try:
        got = s3.get_object_lock_configuration(Bucket=bucket)["ObjectLockConfiguration"]
    except ClientError:
        return False
    return bool(got.get("ObjectLockEnabled") == "Enabled")


def test_merged_listing_pages_through_hundreds_of_versions(tmp_path: Path) -> None:
    # Factor 2 of 3: each node holds a part of the keys; every page is merged from all three.
    c = ClusterProcs(tmp_path, 3, mode="quorum", factor=2)
    try:
        c.start()
        clients = [c.client(i) for i in range(3)]
        clients[0].create_bucket(Bucket="many")
        _enable(c, "many")
        keys = [f"k{i:02d}" for i in range(24)]

        def put(key: str) -> list[str]:
            s3 = clients[keys.index(key) % 3]
            return [s3.put_object(Bucket="many", Key=key, Body=b"x" * n)["VersionId"]
                    for n in range(25)]
        with concurrent.futures.ThreadPoolExecutor(6) as pool:
            written = dict(zip(keys, pool.map(put, keys), strict=True))
        for i, page_size in ((0, 1000), (1, 60), (2, 7)):
            got: dict[str, list[str]] = {k: [] for k in keys}
            for page in clients[i].get_paginator("list_object_versions").paginate(
                    Bucket="many", PaginationConfig={"PageSize": page_size}):
                for v in page.get("Versions", []):
                    got[v["Key"]].append(v["VersionId"])
                    assert v["IsLatest"] == (v["VersionId"] == written[v["Key"]][-1])
            for k in keys:
                # Each version once, newest first, whatever node listed it.
                assert got[k] == written[k][::-1], (i, page_size, k)
    finally:
        c.stop_all()


def test_graceful_leave_hands_off_every_version(tmp_path: Path) -> None:
    c = ClusterProcs(tmp_path, 3, mode="quorum", factor=2)
    try:
        c.start()
        s3 = c.client(0)
        s3.create_bucket(Bucket="bye-v")
        _enable(c, "bye-v")
        written = {f"obj-{i}": [s3.put_object(Bucket="bye-v", Key=f"obj-{i}",
                                              Body=f"{i}/{n}".encode())["VersionId"]
                                for n in range(3)] for i in range(12)}
        markers = {k: s3.delete_object(Bucket="bye-v", Key=k)["VersionId"]
                   for k in list(written)[::3]}
        assert c.nodes[2].stop() == 0           # SIGTERM: Leaving, hand-off, exit 0
        wait(lambda: c.states(0).get("node-2") != "Active", 20, "node-2 to be gone")
        for k, ids in written.items():
            want = ([markers[k]] if k in markers else []) + ids[::-1]
            # Both remaining nodes hold every version: factor 2 over the two members left.
            assert _ids(c, 0, "bye-v", k) == want, k
            assert _ids(c, 1, "bye-v", k) == want, k
            for n, vid in enumerate(ids):
                got = c.client(1).get_object(Bucket="bye-v", Key=k, VersionId=vid)
                assert got["Body"].read() == f"{k[4:]}/{n}".encode()
    finally:
        c.stop_all()
