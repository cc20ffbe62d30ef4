"""Three real rs3gw nodes on loopback, driven with boto3: placement, replication of every
replicated operation, reads through every node, graceful leave with hand-off."""
from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from botocore.exceptions import ClientError
from cluster_helpers import ClusterPKI
from cluster_procs import ClusterProcs, wait

# Real node processes: run once per suite, not again for each core/backend variant (make matrix).
pytestmark = [pytest.mark.slow, pytest.mark.cluster_procs]

MIB = 1 << 20


def _bodies() -> dict[str, bytes]:
    return {"empty": b"", "small": b"hello cluster", "k/64k": os.urandom(64 << 10),
            "k/inline-edge": os.urandom((64 << 10) + 1), "k/5m": os.urandom(5 * MIB)}


@pytest.fixture(params=[3, 2], ids=["factor3", "factor2"])
def cluster(request: pytest.FixtureRequest, tmp_path: Path):  # type: ignore[no-untyped-def]
    c = ClusterProcs(tmp_path, 3, mode="quorum", factor=request.param)
    try:
        yield c.start()
    finally:
        c.stop_all()


def test_write_through_one_node_read_same_bytes_through_every_node(cluster: ClusterProcs) -> None:
    s3 = cluster.client(0)
    s3.create_bucket(Bucket="repl")
    assert "Status" not in s3.get_bucket_versioning(Bucket="repl")
    versions = s3.list_object_versions(Bucket="repl")
    assert "Versions" not in versions and not versions["IsTruncated"]
    bodies = _bodies()
    for k, v in bodies.items():
        s3.put_object(Bucket="repl", Key=k, Body=v, ContentType="application/x-test",
                      Metadata={"who": "node0"})
    # Multipart upload completed on node 1; a copy and a tag change on node 2.
    s1 = cluster.client(1)
    up = s1.create_multipart_upload(Bucket="repl", Key="mp")
    parts = [os.urandom(5 * MIB), os.urandom(MIB)]
    etags = [s1.upload_part(Bucket="repl", Key="mp", UploadId=up["UploadId"], PartNumber=i + 1,
                            Body=p)["ETag"] for i, p in enumerate(parts)]
    s1.complete_multipart_upload(Bucket="repl", Key="mp", UploadId=up["UploadId"], MultipartUpload={
        "Parts": [{"PartNumber": i + 1, "ETag": e} for i, e in enumerate(etags)]})
    bodies["mp"] = b"".join(parts)
    s2 = cluster.client(2)
    s2.copy_object(Bucket="repl", Key="copy-of-5m", CopySource={"Bucket": "repl", "Key": "k/5m"})
    bodies["copy-of-5m"] = bodies["k/5m"]
    s2.put_object_tagging(Bucket="repl", Key="small", Tagging={"TagSet": [{"Key": "t", "Value": "1"}]})

    for i in range(3):
        c = cluster.client(i)
        for k, v in bodies.items():
            got = c.get_object(Bucket="repl", Key=k)
            assert got["Body"].read() == v, (i, k)
            if k in ("small", "k/5m"):
                assert got["ContentType"] == "application/x-test"
                assert got["Metadata"] == {"who": "node0"}
        assert c.get_object_tagging(Bucket="repl", Key="small")["TagSet"] == [{"Key": "t", "Value": "1"}]
        rng = c.get_object(Bucket="repl", Key="mp", Range="bytes=5242870-5242889")["Body"].read()
        assert rng == bodies["mp"][5242870:5242890]
        listed = [o["Key"] for o in c.list_objects_v2(Bucket="repl")["Contents"]]
        assert listed == sorted(bodies), i
        pages = c.get_paginator("list_objects_v2").paginate(Bucket="repl", PaginationConfig={"PageSize": 2})
        assert [o["Key"] for p in pages for o in p.get("Contents", [])] == sorted(bodies)
        versions = c.list_object_versions(Bucket="repl")["Versions"]
        assert [(v["Key"], v["VersionId"], v["IsLatest"]) for v in versions] == [
            (k, "null", True) for k in sorted(bodies)]

    # Data lives on exactly `factor` nodes (the coordinator keeps nothing when every replica
    # committed), and each holder has the right bytes.
    for k, v in bodies.items():
        holders = [i for i in range(3) if cluster.local_copy(i, "repl", k)[1] == v]
        assert len(holders) == cluster.factor, (k, holders)

    # Deletes reach every replica: the key is gone through every node, and from every store.
    s0 = cluster.client(0)
    s0.delete_object(Bucket="repl", Key="k/64k")
    s0.delete_objects(Bucket="repl", Delete={"Objects": [{"Key": "empty"}]})
    for i in range(3):
        with pytest.raises(ClientError) as e:
            cluster.client(i).get_object(Bucket="repl", Key="k/64k")
        assert e.value.response["Error"]["Code"] == "NoSuchKey"
        assert cluster.local_copy(i, "repl", "k/64k") == (None, None)
        assert cluster.local_copy(i, "repl", "empty") == (None, None)


def test_bucket_state_is_on_every_node(cluster: ClusterProcs) -> None:
    s0 = cluster.client(0)
    s0.create_bucket(Bucket="cfg")
    policy = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Principal": "*",
                                                      "Action": "s3:GetObject",
                                                      "Resource": "arn:aws:s3:::cfg/*"}]}
    s0.put_bucket_policy(Bucket="cfg", Policy=json.dumps(policy))
    s0.put_bucket_tagging(Bucket="cfg", Tagging={"TagSet": [{"Key": "team", "Value": "hpc"}]})
    for i in range(3):
        c = cluster.client(i)
        assert "cfg" in [b["Name"] for b in c.list_buckets()["Buckets"]]
        assert json.loads(c.get_bucket_policy(Bucket="cfg")["Policy"]) == policy
        assert c.get_bucket_tagging(Bucket="cfg")["TagSet"] == [{"Key": "team", "Value": "hpc"}]
    cluster.client(1).delete_bucket_policy(Bucket="cfg")
    cluster.client(1).delete_bucket_tagging(Bucket="cfg")
    s0.put_object(Bucket="cfg", Key="x", Body=b"x")
    with pytest.raises(ClientError) as e:
        cluster.client(2).delete_bucket(Bucket="cfg")
    assert e.value.response["Error"]["Code"] == "BucketNotEmpty"
    s0.delete_object(Bucket="cfg", Key="x")
    cluster.client(2).delete_bucket(Bucket="cfg")
    for i in range(3):
        c = cluster.client(i)
        assert "cfg" not in [b["Name"] for b in c.list_buckets()["Buckets"]]
        with pytest.raises(ClientError) as e:
            c.head_bucket(Bucket="cfg")
        assert e.value.response["Error"]["Code"] in ("404", "NoSuchBucket")


def test_cluster_surface_and_rs3ctl(tmp_path: Path) -> None:
    c = ClusterProcs(tmp_path, 3, mode="sync", factor=2)
    try:
        c.start(order=[2, 0, 1])        # any start order
        s3 = c.client(0)
        s3.create_bucket(Bucket="surf")
        s3.put_object(Bucket="surf", Key="a", Body=b"a" * 1000)
        st = c.api(1, "status")
        assert st["node_id"] == "node-1" and st["replication_mode"] == "sync"
        assert st["replication_factor"] == 2 and st["members"]["Active"] == 3
        nodes = c.api(1, "nodes")["nodes"]
        assert sorted(n["node_id"] for n in nodes) == ["node-0", "node-1", "node-2"]
        assert all(n["state"] == "Active" and n["address"].startswith("127.0.0.1:") for n in nodes)
        rep = c.api(0, "replication")
        assert rep["events_replicated"] >= 1 and rep["events_pending"] == 0
        _, _, metrics = c.nodes[0].raw("GET", "/metrics")
        text = metrics.decode()
        assert 'rs3gw_cluster_nodes_total{state="Active"} 3.0' in text
        assert "rs3gw_replication_events_total" in text
        env = dict(os.environ, RS3GW_ENDPOINT=c.nodes[2].endpoint,
                   PYTHONPATH=str(Path(__file__).resolve().parents[2] / "src"))
        out = subprocess.run([sys.executable, "-m", "rs3gw.cli.rs3ctl", "cluster", "nodes", "--json"],
                             env=env, capture_output=True, text=True, timeout=30, check=True)
        assert sorted(n["node_id"] for n in json.loads(out.stdout)["nodes"]) == \
            ["node-0", "node-1", "node-2"]
        out = subprocess.run([sys.executable, "-m", "rs3gw.cli.rs3ctl", "cluster", "status"],
                             env=env, capture_output=True, text=True, timeout=30, check=True)
        assert "node-2" in out.stdout and "sync" in out.stdout
    finally:
        c.stop_all()


def test_graceful_leave_hands_off_its_objects(tmp_path: Path) -> None:
    c = ClusterProcs(tmp_path, 3, mode="quorum", factor=2)
    try:
        c.start()
        s3 = c.client(0)
        s3.create_bucket(Bucket="leave")
        bodies = {f"obj-{i}": hashlib.sha256(str(i).encode()).digest() * (i * 100 + 1)
                  for i in range(30)}
        for k, v in bodies.items():
            s3.put_object(Bucket="leave", Key=k, Body=v)
        assert c.nodes[2].stop() == 0           # SIGTERM: Leaving, hand-off, exit 0
        wait(lambda: "node-2" not in c.states(0) or c.states(0)["node-2"] != "Active", 20,
             "node-2 to be gone")
        for k, v in bodies.items():
            # Both remaining nodes hold every object: factor 2 over the two members left.
            assert c.local_copy(0, "leave", k)[1] == v, k
            assert c.local_copy(1, "leave", k)[1] == v, k
            assert c.client(1).get_object(Bucket="leave", Key=k)["Body"].read() == v
    finally:
        c.stop_all()


def test_tombstones_are_collected_once_every_replica_has_them(tmp_path: Path) -> None:
    c = ClusterProcs(tmp_path, 3, mode="quorum", factor=3,
                     extra_env={"RS3GW_TOMBSTONE_GC_INTERVAL": "1"})
    try:
        c.start()
        s3 = c.client(0)
        s3.create_bucket(Bucket="tomb")
        for k in ("keep", "gone"):
            s3.put_object(Bucket="tomb", Key=k, Body=k.encode())
        s3.delete_object(Bucket="tomb", Key="gone")
        # Every replica first holds the tombstone (it is what stops a late older write) ...
        assert all(("gone", 1) in c.stamp_rows(i, "tomb") or c.stamp_rows(i, "tomb") == [("keep", 0)]
                   for i in range(3))
        # ... and once all three have it, it is garbage-collected everywhere.
        wait(lambda: all(c.stamp_rows(i, "tomb") == [("keep", 0)] for i in range(3)), 20,
             "the tombstone to be collected on every node")
        for i in range(3):
            with pytest.raises(ClientError):
                c.client(i).head_object(Bucket="tomb", Key="gone")
            assert c.client(i).get_object(Bucket="tomb", Key="keep")["Body"].read() == b"keep"
    finally:
        c.stop_all()


def test_replication_over_mutual_tls(tmp_path: Path, pki: ClusterPKI) -> None:
    tls = {"RS3GW_CLUSTER_TLS_CERT": str(pki.nodes[0].cert),
           "RS3GW_CLUSTER_TLS_KEY": str(pki.nodes[0].key), "RS3GW_CLUSTER_TLS_CA": str(pki.ca)}
    c = ClusterProcs(tmp_path, 3, mode="quorum", factor=2, extra_env=tls)
    try:
        c.start()
        body = os.urandom(3 * MIB + 5)
        s3 = c.client(1)
        s3.create_bucket(Bucket="tls")
        s3.put_object(Bucket="tls", Key="blob", Body=body)
        for i in range(3):
            assert c.client(i).get_object(Bucket="tls", Key="blob")["Body"].read() == body
    finally:
        c.stop_all()


def test_leave_through_rs3ctl(tmp_path: Path) -> None:
    c = ClusterProcs(tmp_path, 3, mode="async", factor=3)
    try:
        c.start()
        c.client(0).create_bucket(Bucket="bye")
        c.client(0).put_object(Bucket="bye", Key="k", Body=b"v" * 5000)
        env = dict(os.environ, RS3GW_ENDPOINT=c.nodes[1].endpoint,
                   RS3GW_ACCESS_KEY=c.user.access_key, RS3GW_SECRET_KEY=c.user.secret_key,
                   PYTHONPATH=str(Path(__file__).resolve().parents[2] / "src"))
        subprocess.run([sys.executable, "-m", "rs3gw.cli.rs3ctl", "cluster", "leave"], env=env,
                       capture_output=True, text=True, timeout=30, check=True)
        proc = c.nodes[1].proc
        assert proc is not None and proc.wait(60) == 0
        wait(lambda: c.states(0).get("node-1") in (None, "Leaving"), 20, "node-1 to be gone")
        for i in (0, 2):
            assert c.client(i).get_object(Bucket="bye", Key="k")["Body"].read() == b"v" * 5000
    finally:
        c.stop_all()


def test_async_coordinator_copies_go_once_the_replicas_have_them(tmp_path: Path) -> None:
    # In async mode the node that takes a write commits it first, even outside the key's replica
    # set; that copy is a hint for the queue and is dropped once both replicas hold the version.
    c = ClusterProcs(tmp_path, 3, mode="async", factor=2)
    try:
        c.start()
        s3 = c.client(0)
        s3.create_bucket(Bucket="hints")
        bodies = {f"h{i}": os.urandom(1000 + 3000 * i) for i in range(16)}
        for k, v in bodies.items():
            s3.put_object(Bucket="hints", Key=k, Body=v)
        wait(lambda: all(c.api(i, "replication")["events_pending"] == 0 for i in range(3)), 30,
             "the queues to drain")
        for k, v in bodies.items():
            wait(lambda k=k, v=v: len([i for i in range(3)  # type: ignore[misc]
                                       if c.local_copy(i, "hints", k)[1] == v]) == 2, 10,
                 f"{k} to be on exactly its two replicas")
            assert c.client(2).get_object(Bucket="hints", Key=k)["Body"].read() == v
    finally:
        c.stop_all()


def test_multipart_upload_driven_through_different_nodes(tmp_path: Path) -> None:
    # A load balancer may send each request of one upload to another node.
    c = ClusterProcs(tmp_path, 3, mode="quorum", factor=2)
    try:
        c.start()
        s0, s1, s2 = c.client(0), c.client(1), c.client(2)
        s0.create_bucket(Bucket="mpu")
        up = s0.create_multipart_upload(Bucket="mpu", Key="spread")["UploadId"]
        parts = [os.urandom(5 * MIB), os.urandom(5 * MIB), os.urandom(123)]
        etags = []
        for i, (client, body) in enumerate(zip([s1, s2, s0], parts, strict=True)):
            etags.append(client.upload_part(Bucket="mpu", Key="spread", UploadId=up, PartNumber=i + 1,
                                            Body=body)["ETag"])
        listed = s2.list_parts(Bucket="mpu", Key="spread", UploadId=up)["Parts"]
        assert [p["ETag"] for p in listed] == etags and [p["Size"] for p in listed] == [5 * MIB, 5 * MIB, 123]
        assert [u["UploadId"] for u in s1.list_multipart_uploads(Bucket="mpu")["Uploads"]] == [up]
        other = s2.create_multipart_upload(Bucket="mpu", Key="dropped")["UploadId"]
        s1.abort_multipart_upload(Bucket="mpu", Key="dropped", UploadId=other)
        s1.complete_multipart_upload(Bucket="mpu", Key="spread", UploadId=up, MultipartUpload={
            "Parts": [{"PartNumber": i + 1, "ETag": e} for i, e in enumerate(etags)]})
        for i in range(3):
            assert c.client(i).get_object(Bucket="mpu", Key="spread")["Body"].read() == b"".join(parts)
            assert c.client(i).list_multipart_uploads(Bucket="mpu").get("Uploads", []) == []
        with pytest.raises(ClientError) as e:
            s2.upload_part(Bucket="mpu", Key="spread", UploadId=up, PartNumber=4, Body=b"late")
        assert e.value.response["Error"]["Code"] == "NoSuchUpload"
    finally:
        c.stop_all()
