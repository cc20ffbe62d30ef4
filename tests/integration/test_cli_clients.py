"""Third-party clients: aws-cli (s3 and s3api), rclone and s3cmd against a real server."""
from __future__ import annotations

import datetime as dt
import filecmp
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from servers import REGION, ServerProcess, make_client

CLI_TIMEOUT_S = 120


def make_tree(root: Path) -> dict[str, bytes]:
    files = {
        "top.txt": b"top level\n",
        "empty.bin": b"",
        "a/one.bin": os.urandom(50_000),
        "a/b/two.txt": b"two\n" * 100,
        "a/b/c/three.bin": os.urandom(9 * 1024 * 1024),  # above the CLI's 8 MiB multipart threshold
        "with space/f i l e.txt": b"spaces\n",
        "unicodé/ß.txt": b"unicode\n",
    }
    for rel, data in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    return files


def assert_same_tree(left: Path, right: Path) -> None:
    lfiles = sorted(p.relative_to(left).as_posix() for p in left.rglob("*") if p.is_file())
    rfiles = sorted(p.relative_to(right).as_posix() for p in right.rglob("*") if p.is_file())
    assert lfiles == rfiles
    for rel in lfiles:
        assert filecmp.cmp(left / rel, right / rel, shallow=False), rel


def clean_env() -> dict[str, str]:
    """The inherited environment without AWS_* (a host AWS_CA_BUNDLE or profile would leak in)."""
    return {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}


class AwsCli:
    def __init__(self, srv: ServerProcess, home: Path) -> None:
        self.srv = srv
        home.mkdir(parents=True, exist_ok=True)
        (home / "config").write_text("")
        (home / "credentials").write_text("")
        self.env = clean_env()
        self.env.update({
            "AWS_ACCESS_KEY_ID": srv.root_user.access_key,
            "AWS_SECRET_ACCESS_KEY": srv.root_user.secret_key,
            "AWS_DEFAULT_REGION": REGION,
            "AWS_CONFIG_FILE": str(home / "config"),
            "AWS_SHARED_CREDENTIALS_FILE": str(home / "credentials"),
            "AWS_EC2_METADATA_DISABLED": "true",
            "AWS_MAX_ATTEMPTS": "1",
        })

    def __call__(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        cmd = [sys.executable, "-m", "awscli", "--endpoint-url", self.srv.endpoint, *args]
        if self.srv.tls is not None:
            cmd += ["--ca-bundle", str(self.srv.tls.cert)]
        proc = subprocess.run(cmd, check=False, env=self.env, capture_output=True, text=True, timeout=CLI_TIMEOUT_S)
        if check:
            assert proc.returncode == 0, f"{cmd}\nstdout:\n{proc.stdout}\nstderr:\n{proc.stderr}"
        return proc


@pytest.fixture
def awscli_env(any_server: ServerProcess, make_bucket: Any, tmp_path: Path) -> tuple[AwsCli, str, Any]:
    return AwsCli(any_server, tmp_path / "awshome"), make_bucket(any_server), make_client(any_server)


@pytest.mark.slow
def test_awscli_s3_cp_sync_ls_rm(awscli_env: tuple[AwsCli, str, Any], tmp_path: Path) -> None:
    aws, bucket, client = awscli_env
    src = tmp_path / "src"
    files = make_tree(src)

    aws("s3", "cp", "--recursive", str(src), f"s3://{bucket}/tree/")
    listed = sorted(o["Key"] for o in client.list_objects_v2(Bucket=bucket, Prefix="tree/")["Contents"])
    assert listed == sorted(f"tree/{k}" for k in files)
    for rel, data in files.items():
        assert client.get_object(Bucket=bucket, Key=f"tree/{rel}")["Body"].read() == data

    back = tmp_path / "back"
    aws("s3", "cp", "--recursive", f"s3://{bucket}/tree/", str(back))
    assert_same_tree(src, back)

    ls = aws("s3", "ls", f"s3://{bucket}/tree/").stdout
    assert "PRE a/" in ls and "PRE with space/" in ls and "top.txt" in ls
    recursive = aws("s3", "ls", "--recursive", f"s3://{bucket}/tree/").stdout
    assert "tree/a/b/c/three.bin" in recursive and str(9 * 1024 * 1024) in recursive
    buckets = aws("s3", "ls").stdout
    assert bucket in buckets

    first = aws("s3", "sync", str(src), f"s3://{bucket}/sync/").stdout
    assert first.count("upload:") == len(files)
    second = aws("s3", "sync", str(src), f"s3://{bucket}/sync/").stdout
    assert "upload:" not in second, second
    down = tmp_path / "down"
    aws("s3", "sync", f"s3://{bucket}/sync/", str(down))
    assert_same_tree(src, down)

    aws("s3", "rm", "--recursive", f"s3://{bucket}/tree/")
    aws("s3", "rm", "--recursive", f"s3://{bucket}/sync/")
    assert client.list_objects_v2(Bucket=bucket)["KeyCount"] == 0


def test_awscli_s3api(awscli_env: tuple[AwsCli, str, Any], tmp_path: Path) -> None:
    aws, bucket, _client = awscli_env
    body = tmp_path / "body.bin"
    body.write_bytes(os.urandom(100_000))
    put = json.loads(aws("s3api", "put-object", "--bucket", bucket, "--key", "api/obj",
                         "--body", str(body), "--content-type", "application/x-cli",
                         "--metadata", "origin=cli").stdout)
    import hashlib
    md5 = hashlib.md5(body.read_bytes()).hexdigest()
    assert put["ETag"] == f'"{md5}"'
    head = json.loads(aws("s3api", "head-object", "--bucket", bucket, "--key", "api/obj").stdout)
    assert head["ContentLength"] == 100_000
    assert head["ContentType"] == "application/x-cli"
    assert head["Metadata"] == {"origin": "cli"}
    out = tmp_path / "out.bin"
    got = json.loads(aws("s3api", "get-object", "--bucket", bucket, "--key", "api/obj", str(out)).stdout)
    assert got["ETag"] == f'"{md5}"'
    assert out.read_bytes() == body.read_bytes()
    missing = aws("s3api", "head-object", "--bucket", bucket, "--key", "nope", check=False)
    assert missing.returncode != 0
    assert "404" in missing.stderr


def _need(binary: str) -> str:
    path = shutil.which(binary)
    if path is None:
        pytest.skip(f"{binary} is not installed")
    return path


@pytest.mark.clients
@pytest.mark.slow
def test_rclone_copy_check_ls(http_server: ServerProcess, bucket: str, tmp_path: Path, s3: Any) -> None:
    rclone = _need("rclone")
    env = clean_env()
    env.update({
        "RCLONE_CONFIG": str(tmp_path / "rclone.conf"),
        "RCLONE_CONFIG_RS3_TYPE": "s3",
        "RCLONE_CONFIG_RS3_PROVIDER": "Other",
        "RCLONE_CONFIG_RS3_ENDPOINT": http_server.endpoint,
        "RCLONE_CONFIG_RS3_ACCESS_KEY_ID": http_server.root_user.access_key,
        "RCLONE_CONFIG_RS3_SECRET_ACCESS_KEY": http_server.root_user.secret_key,
        "RCLONE_CONFIG_RS3_REGION": REGION,
        "RCLONE_CONFIG_RS3_FORCE_PATH_STYLE": "true",
    })
    (tmp_path / "rclone.conf").write_text("")
    src = tmp_path / "src"
    files = make_tree(src)

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run([rclone, *args, "--retries", "1", "--low-level-retries", "1"],
                              check=False, env=env, capture_output=True, text=True, timeout=CLI_TIMEOUT_S)
        assert proc.returncode == 0, f"rclone {args}\n{proc.stdout}\n{proc.stderr}"
        return proc

    run("copy", str(src), f"rs3:{bucket}/r")
    run("check", str(src), f"rs3:{bucket}/r")
    listing = run("ls", f"rs3:{bucket}/r").stdout
    entries = {}
    for line in listing.splitlines():
        size, name = line.strip().split(" ", 1)
        entries[name] = int(size)
    assert entries == {k: len(v) for k, v in files.items()}
    back = tmp_path / "back"
    run("copy", f"rs3:{bucket}/r", str(back))
    assert_same_tree(src, back)
    got = s3.get_object(Bucket=bucket, Key="r/a/b/two.txt")["Body"].read()
    assert got == files["a/b/two.txt"]


@pytest.mark.clients
def test_s3cmd_put_get_ls_del(http_server: ServerProcess, bucket: str, tmp_path: Path, s3: Any) -> None:
    s3cmd = _need("s3cmd")
    cfg = tmp_path / "s3cfg"
    cfg.write_text("")
    host = f"127.0.0.1:{http_server.port}"
    base = [s3cmd, "-c", str(cfg), f"--host={host}", f"--host-bucket={host}", "--no-ssl",
            f"--access_key={http_server.root_user.access_key}",
            f"--secret_key={http_server.root_user.secret_key}", f"--region={REGION}"]

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run([*base, *args], check=False, capture_output=True, text=True, timeout=CLI_TIMEOUT_S,
                              env={**clean_env(), "HOME": str(tmp_path)})
        assert proc.returncode == 0, f"s3cmd {args}\n{proc.stdout}\n{proc.stderr}"
        return proc

    src = tmp_path / "hello.txt"
    src.write_bytes(b"hello from s3cmd\n" * 1000)
    run("put", str(src), f"s3://{bucket}/s3cmd/hello.txt")
    assert s3.get_object(Bucket=bucket, Key="s3cmd/hello.txt")["Body"].read() == src.read_bytes()
    out = tmp_path / "out.txt"
    run("get", f"s3://{bucket}/s3cmd/hello.txt", str(out))
    assert out.read_bytes() == src.read_bytes()
    listing = run("ls", f"s3://{bucket}/s3cmd/").stdout
    assert f"s3://{bucket}/s3cmd/hello.txt" in listing
    run("del", f"s3://{bucket}/s3cmd/hello.txt")
    assert s3.list_objects_v2(Bucket=bucket)["KeyCount"] == 0


def test_awscli_s3api_versions(awscli_env: tuple[AwsCli, str, Any], tmp_path: Path) -> None:
    aws, bucket, _client = awscli_env
    aws("s3api", "put-bucket-versioning", "--bucket", bucket,
        "--versioning-configuration", "Status=Enabled")
    status = json.loads(aws("s3api", "get-bucket-versioning", "--bucket", bucket).stdout)
    assert status["Status"] == "Enabled"
    ids = []
    for i in range(3):
        f = tmp_path / f"v{i}"
        f.write_bytes(f"version {i}".encode())
        ids.append(json.loads(aws("s3api", "put-object", "--bucket", bucket, "--key", "doc",
                                  "--body", str(f)).stdout)["VersionId"])
    gone = json.loads(aws("s3api", "delete-object", "--bucket", bucket, "--key", "doc").stdout)
    assert gone["DeleteMarker"] is True
    listed = json.loads(aws("s3api", "list-object-versions", "--bucket", bucket).stdout)
    assert [v["VersionId"] for v in listed["Versions"]] == ids[::-1]
    assert [m["VersionId"] for m in listed["DeleteMarkers"]] == [gone["VersionId"]]
    assert listed["DeleteMarkers"][0]["IsLatest"] is True
    out = tmp_path / "out"
    aws("s3api", "get-object", "--bucket", bucket, "--key", "doc", "--version-id", ids[1], str(out))
    assert out.read_bytes() == b"version 1"
    # Paginated by the CLI itself, one entry a page.
    paged = json.loads(aws("s3api", "list-object-versions", "--bucket", bucket,
                           "--page-size", "1").stdout)
    assert len(paged["Versions"]) == 3 and len(paged["DeleteMarkers"]) == 1
    missing = aws("s3api", "get-object", "--bucket", bucket, "--key", "doc", str(out), check=False)
    assert missing.returncode != 0 and "NoSuchKey" in missing.stderr



def test_awscli_s3api_object_retention(awscli_env: tuple[AwsCli, str, Any], tmp_path: Path) -> None:
    aws, bucket, _client = awscli_env
    aws("s3api", "put-bucket-versioning", "--bucket", bucket,
        "--versioning-configuration", "Status=Enabled")
    aws("s3api", "put-object-lock-configuration", "--bucket", bucket,
        "--object-lock-configuration", '{"ObjectLockEnabled": "Enabled"}')
    f = tmp_path / "doc"
    f.write_bytes(b"retained")
    vid = json.loads(aws("s3api", "put-object", "--bucket", bucket, "--key", "doc",
                         "--body", str(f)).stdout)["VersionId"]
    until = (dt.datetime.now(dt.UTC) + dt.timedelta(hours=1)).replace(microsecond=0)
    aws("s3api", "put-object-retention", "--bucket", bucket, "--key", "doc", "--version-id", vid,
        "--retention", json.dumps({"Mode": "GOVERNANCE",
                                   "RetainUntilDate": until.strftime("%Y-%m-%dT%H:%M:%SZ")}))
    got = json.loads(aws("s3api", "get-object-retention", "--bucket", bucket, "--key", "doc",
                         "--version-id", vid).stdout)["Retention"]
    assert got["Mode"] == "GOVERNANCE"
    assert dt.datetime.fromisoformat(got["RetainUntilDate"]) == until
    refused = aws("s3api", "delete-object", "--bucket", bucket, "--key", "doc", "--version-id", vid,
                  check=False)
    assert refused.returncode != 0 and "AccessDenied" in refused.stderr
    aws("s3api", "delete-object", "--bucket", bucket, "--key", "doc", "--version-id", vid,
        "--bypass-governance-retention")

@pytest.mark.clients
def test_rclone_lists_and_reads_old_versions(http_server: ServerProcess, make_bucket: Any,
                                             tmp_path: Path, s3: Any) -> None:
    rclone = _need("rclone")
    bucket = make_bucket(http_server)
    s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})
    for body in (b"one", b"two", b"three"):
        s3.put_object(Bucket=bucket, Key="file.txt", Body=body)
    env = clean_env()
    env.update({
        "RCLONE_CONFIG": str(tmp_path / "rclone.conf"),
        "RCLONE_CONFIG_RS3_TYPE": "s3", "RCLONE_CONFIG_RS3_PROVIDER": "Other",
        "RCLONE_CONFIG_RS3_ENDPOINT": http_server.endpoint,
        "RCLONE_CONFIG_RS3_ACCESS_KEY_ID": http_server.root_user.access_key,
        "RCLONE_CONFIG_RS3_SECRET_ACCESS_KEY": http_server.root_user.secret_key,
        "RCLONE_CONFIG_RS3_REGION": REGION, "RCLONE_CONFIG_RS3_FORCE_PATH_STYLE": "true",
    })
    (tmp_path / "rclone.conf").write_text("")

    def run(*args: str) -> str:
        proc = subprocess.run([rclone, *args, "--retries", "1", "--low-level-retries", "1"],
                              check=False, env=env, capture_output=True, text=True,
                              timeout=CLI_TIMEOUT_S)
        assert proc.returncode == 0, f"rclone {args}\n{proc.stdout}\n{proc.stderr}"
        return proc.stdout

    names = sorted(line.split()[-1] for line in
                   run("ls", "--s3-versions", f"rs3:{bucket}").strip().splitlines())
    assert len(names) == 3 and "file.txt" in names     # the current one, and two with a stamp
    old = [n for n in names if n != "file.txt"]
    bodies = {run("cat", "--s3-versions", f"rs3:{bucket}/{n}") for n in old}
    assert bodies == {"one", "two"}
    assert run("cat", f"rs3:{bucket}/file.txt") == "three"


def test_awscli_s3api_lifecycle(awscli_env: tuple[AwsCli, str, Any], tmp_path: Path) -> None:
    """put-bucket-lifecycle-configuration sends the integrity header S3 requires; what get
    returns is what was put."""
    aws, bucket, _client = awscli_env
    cfg = {"Rules": [
        {"ID": "logs", "Status": "Enabled", "Filter": {"Prefix": "logs/"},
         "Expiration": {"Days": 30},
         "NoncurrentVersionExpiration": {"NoncurrentDays": 7, "NewerNoncurrentVersions": 3}},
        {"ID": "mpu", "Status": "Disabled", "Filter": {},
         "AbortIncompleteMultipartUpload": {"DaysAfterInitiation": 2}}]}
    aws("s3api", "put-bucket-lifecycle-configuration", "--bucket", bucket,
        "--lifecycle-configuration", json.dumps(cfg))
    got = json.loads(aws("s3api", "get-bucket-lifecycle-configuration", "--bucket", bucket).stdout)
    assert got["Rules"] == cfg["Rules"]
    aws("s3api", "delete-bucket-lifecycle", "--bucket", bucket)
    missing = aws("s3api", "get-bucket-lifecycle-configuration", "--bucket", bucket, check=False)
    assert missing.returncode != 0 and "NoSuchLifecycleConfiguration" in missing.stderr
