"""Helpers for the integration suite: run a real rs3gw process, sign raw requests, make clients.

Nothing here is a pytest fixture; conftest.py wires these helpers into fixtures so the durability
tests can start and kill their own servers with the same code.
"""
from __future__ import annotations

import datetime as dt
import hashlib
import http.client
import ipaddress
import os
import re
import secrets
import signal
import socket
import ssl
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from unittest import mock
from urllib.parse import urlsplit
from xml.etree import ElementTree

import boto3
import botocore.auth
import botocore.awsrequest
import botocore.credentials
from botocore import UNSIGNED
from botocore.config import Config
from botocore.exceptions import ClientError

REPO_ROOT = Path(__file__).resolve().parents[2]
# RS3GW_IT_SRC points the suite at another checkout of the package (e.g. a build tree).
SRC_DIR = Path(os.environ.get("RS3GW_IT_SRC", REPO_ROOT / "src"))
LISTEN_RE = re.compile(r"listening on (https?)://(\[[^\]]+\]|[^\s:/]+):(\d+)")
REGION = "us-east-1"
START_TIMEOUT_S = 60.0
STOP_TIMEOUT_S = 30.0
MIB = 1024 * 1024

# Servers started by the suite, so a failing test's report can show their stderr.
LIVE_SERVERS: list[ServerProcess] = []

# Every server runs with the loop guard (rs3gw.observability.loopguard); what it reports, from any
# server, collects here (with the stack lines that follow) until the suite takes it.
LOOP_GUARD_LINE = "blocking call on the event loop"
LOG_RECORD_RE = re.compile(r"^\d{4}-\d\d-\d\d ")
_LOOP_GUARD_REPORTS: list[list[str]] = []


def take_loop_guard_reports() -> list[str]:
    """Loop-guard reports logged by any server since the last call, each with its stack."""
    taken = [_LOOP_GUARD_REPORTS.pop(0) for _ in range(len(_LOOP_GUARD_REPORTS))]
    return ["\n".join(r) for r in taken]


@dataclass(frozen=True)
class User:
    access_key: str
    secret_key: str
    user_id: str
    display_name: str


ROOT_ACCESS_KEY = "AKIAROOTROOTROOT0001"


def make_root_user() -> User:
    return User(ROOT_ACCESS_KEY, secrets.token_urlsafe(30), "root", "root")


def make_named_user(name: str) -> User:
    # user_id deliberately differs from the name so policies that name "user/<name>" test the
    # user-name form, not an accidental id match.
    return User(f"AKIA{name.upper():0<12}{secrets.randbelow(10**4):04d}",
                secrets.token_urlsafe(30), f"uid-{uuid.uuid4().hex[:16]}", name)


def write_users_file(path: Path, users: list[User]) -> None:
    lines: list[str] = []
    for u in users:
        lines += ["[[users]]", f'access_key = "{u.access_key}"', f'secret_key = "{u.secret_key}"',
                  f'user_id = "{u.user_id}"', f'display_name = "{u.display_name}"', ""]
    path.write_text("\n".join(lines))


@dataclass(frozen=True)
class TLSFiles:
    cert: Path
    key: Path


# OpenSSL will not match "*.localhost" (a wildcard over a single-label domain), so the cert names
# a few bucket hosts explicitly; tests that need virtual-host style over TLS use these names.
VHOST_TLS_BUCKETS = [f"vh-{uuid.uuid4().hex[:12]}-{i}" for i in range(8)]


def make_self_signed_cert(directory: Path) -> TLSFiles:
    """A self-signed cert for localhost, 127.0.0.1 and VHOST_TLS_BUCKETS, its own CA bundle."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name).issuer_name(name).public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1)).not_valid_after(now + dt.timedelta(days=30))
        .add_extension(x509.SubjectAlternativeName([
            x509.DNSName("localhost"), x509.DNSName("*.localhost"),
            *[x509.DNSName(f"{b}.localhost") for b in VHOST_TLS_BUCKETS],
            x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    directory.mkdir(parents=True, exist_ok=True)
    files = TLSFiles(directory / "cert.pem", directory / "key.pem")
    files.cert.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    files.key.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                            serialization.PrivateFormat.PKCS8,
                                            serialization.NoEncryption()))
    return files


@dataclass
class ServerProcess:
    """One rs3gw process. ``start`` waits for the listening line; ``stop`` sends SIGTERM."""

    storage_root: Path
    root_user: User
    users: list[User] = field(default_factory=list)
    tls: TLSFiles | None = None
    fsync: bool = False
    extra_env: dict[str, str] = field(default_factory=dict)
    # Its own process group (and session), as a shell runs a foreground job: killpg reaches it.
    start_new_session: bool = False
    proc: subprocess.Popen[bytes] | None = None
    port: int = 0
    scheme: str = "http"
    _stderr_lines: list[str] = field(default_factory=list)
    _listening: threading.Event = field(default_factory=threading.Event)
    _reader: threading.Thread | None = None

    def env(self) -> dict[str, str]:
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(
            [str(SRC_DIR)] + [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p])
        env.update({
            "RS3GW_BIND_ADDR": "127.0.0.1:0",
            "RS3GW_STORAGE_ROOT": str(self.storage_root),
            "RS3GW_ACCESS_KEY": self.root_user.access_key,
            "RS3GW_SECRET_KEY": self.root_user.secret_key,
            "RS3GW_REGION": REGION,
            "RS3GW_FSYNC": "true" if self.fsync else "false",
            "RS3GW_DOMAIN": "localhost",
            "RS3GW_LOOP_GUARD": "1",
        })
        if self.users:
            users_file = self.storage_root.parent / f"{self.storage_root.name}-users.toml"
            write_users_file(users_file, self.users)
            env["RS3GW_USERS_FILE"] = str(users_file)
        if self.tls is not None:
            env["RS3GW_TLS_CERT"] = str(self.tls.cert)
            env["RS3GW_TLS_KEY"] = str(self.tls.key)
        env.update(self.extra_env)
        return env

    def start(self, timeout_s: float = START_TIMEOUT_S) -> ServerProcess:
        self.storage_root.mkdir(parents=True, exist_ok=True)
        self._stderr_lines.clear()
        self._listening.clear()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "rs3gw"], env=self.env(), cwd=str(self.storage_root.parent),
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
            start_new_session=self.start_new_session)
        self._reader = threading.Thread(target=self._read_stderr, args=(self.proc,), daemon=True)
        self._reader.start()
        deadline = time.monotonic() + timeout_s
        while not self._listening.wait(0.05):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                rc = self.proc.poll()
                if rc is None:
                    self.kill()
                raise RuntimeError(f"rs3gw did not start (exit code {rc}); stderr:\n"
                                   + self.stderr_text())
        self.wait_ready(min(deadline, time.monotonic() + 20))
        return self

    def _read_stderr(self, proc: subprocess.Popen[bytes]) -> None:
        assert proc.stderr is not None
        report: list[str] | None = None
        for raw in proc.stderr:
            line = raw.decode("utf-8", "replace").rstrip("\n")
            self._stderr_lines.append(line)
            if LOOP_GUARD_LINE in line:
                report = [f"[rs3gw {self.storage_root}] {line}"]
                _LOOP_GUARD_REPORTS.append(report)
            elif report is not None and not LOG_RECORD_RE.match(line):
                report.append(line)
            else:
                report = None
            m = LISTEN_RE.search(line)
            if m and not self._listening.is_set():
                self.scheme, self.port = m.group(1), int(m.group(3))
                self._listening.set()

    def wait_ready(self, deadline: float) -> None:
        """The listening line may precede accept(); poll /health until it answers."""
        last: Exception | None = None
        while time.monotonic() < deadline:
            try:
                status, _, _ = self.raw("GET", "/health", timeout=2)
                if status == 200:
                    return
            except OSError as exc:
                last = exc
            time.sleep(0.05)
        raise RuntimeError(f"rs3gw /health never returned 200 ({last}); stderr:\n"
                           + self.stderr_text())

    def stderr_text(self) -> str:
        return "\n".join(self._stderr_lines[-200:])

    @property
    def endpoint(self) -> str:
        return f"{self.scheme}://127.0.0.1:{self.port}"

    @property
    def vhost_endpoint(self) -> str:
        return f"{self.scheme}://localhost:{self.port}"

    @property
    def verify(self) -> str | bool:
        return str(self.tls.cert) if self.tls else False

    def ssl_context(self) -> ssl.SSLContext | None:
        if self.tls is None:
            return None
        return ssl.create_default_context(cafile=str(self.tls.cert))

    def connection(self, timeout: float = 30) -> http.client.HTTPConnection:
        if self.scheme == "https":
            return http.client.HTTPSConnection("127.0.0.1", self.port, timeout=timeout,
                                               context=self.ssl_context())
        return http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)

    def raw(self, method: str, path: str, body: bytes | None = None,
            headers: dict[str, str] | None = None,
            timeout: float = 30) -> tuple[int, dict[str, str], bytes]:
        """One unsigned request; returns (status, lower-cased headers, body)."""
        conn = self.connection(timeout)
        try:
            conn.request(method, path, body=body, headers=headers or {})
            resp = conn.getresponse()
            data = resp.read()
            return resp.status, {k.lower(): v for k, v in resp.getheaders()}, data
        finally:
            conn.close()

    def signed(self, method: str, path: str, body: bytes = b"", *, user: User | None = None,
               headers: dict[str, str] | None = None, now: dt.datetime | None = None,
               secret_override: str | None = None) -> tuple[int, dict[str, str], bytes]:
        hdrs = sign_headers(self, method, path, body, user=user or self.root_user,
                            headers=headers, now=now, secret_override=secret_override)
        return self.raw(method, path, body=body, headers=hdrs)

    def stop(self, sig: int = signal.SIGTERM, timeout_s: float = STOP_TIMEOUT_S) -> int:
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            rc = self.proc.wait(timeout_s)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)
            raise RuntimeError("rs3gw did not exit after signal; stderr:\n" + self.stderr_text())
        if self._reader is not None:
            self._reader.join(5)
        return rc

    def kill(self) -> int:
        return self.stop(signal.SIGKILL)


def sign_headers(server: ServerProcess, method: str, path: str, body: bytes = b"", *,
                 user: User, headers: dict[str, str] | None = None,
                 now: dt.datetime | None = None,
                 secret_override: str | None = None) -> dict[str, str]:
    """SigV4 headers for a raw request, signed by botocore, optionally at a chosen clock time."""
    url = f"{server.endpoint}{path}"
    req = botocore.awsrequest.AWSRequest(method=method, url=url, data=body,
                                         headers=dict(headers or {}))
    creds = botocore.credentials.Credentials(user.access_key, secret_override or user.secret_key)
    signer = botocore.auth.S3SigV4Auth(creds, "s3", REGION)
    # Always sign the payload hash so the request is valid over http and https alike.
    req.headers["X-Amz-Content-SHA256"] = hashlib.sha256(body).hexdigest()
    if now is None:
        signer.add_auth(req)
    else:
        naive = now.astimezone(dt.UTC).replace(tzinfo=None)
        with mock.patch.object(botocore.auth, "get_current_datetime", return_value=naive):
            signer.add_auth(req)
    out = {k: v for k, v in req.headers.items()}
    out["Host"] = urlsplit(url).netloc
    return out


def client_config(*, addressing: str = "path", checksums: str = "default",
                  signed: bool = True, **extra: Any) -> Config:
    kwargs: dict[str, Any] = {
        "region_name": REGION,
        "s3": {"addressing_style": addressing},
        "retries": {"total_max_attempts": 1, "mode": "standard"},
        "connect_timeout": 10,
        "read_timeout": 60,
    }
    if checksums == "when_required":
        kwargs["request_checksum_calculation"] = "when_required"
        kwargs["response_checksum_validation"] = "when_required"
    # SigV4 everywhere: without it botocore presigns S3 URLs with SigV2 for custom endpoints.
    kwargs["signature_version"] = "s3v4" if signed else UNSIGNED
    kwargs.update(extra)
    return Config(**kwargs)


def make_client(server: ServerProcess, *, user: User | None = None, addressing: str = "path",
                checksums: str = "default", signed: bool = True, **extra: Any) -> Any:
    user = user or server.root_user
    endpoint = server.vhost_endpoint if addressing == "virtual" else server.endpoint
    return boto3.session.Session().client(
        "s3", endpoint_url=endpoint, aws_access_key_id=user.access_key,
        aws_secret_access_key=user.secret_key, verify=server.verify,
        config=client_config(addressing=addressing, checksums=checksums, signed=signed, **extra))


def unique_bucket_name(prefix: str = "t") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:24]}"


def empty_and_delete_bucket(client: Any, bucket: str) -> None:
    try:
        for page in client.get_paginator("list_multipart_uploads").paginate(Bucket=bucket):
            for up in page.get("Uploads", []):
                client.abort_multipart_upload(Bucket=bucket, Key=up["Key"], UploadId=up["UploadId"])
        for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket):
            keys = [{"Key": o["Key"]} for o in page.get("Contents", [])]
            if keys:
                client.delete_objects(Bucket=bucket, Delete={"Objects": keys, "Quiet": True})
        # A versioned bucket keeps its versions and delete markers: each goes by its id.
        for page in client.get_paginator("list_object_versions").paginate(Bucket=bucket):
            items = [{"Key": v["Key"], "VersionId": v["VersionId"]}
                     for v in page.get("Versions", []) + page.get("DeleteMarkers", [])]
            if items:
                client.delete_objects(Bucket=bucket, Delete={"Objects": items, "Quiet": True})
        client.delete_bucket(Bucket=bucket)
    except ClientError as exc:
        if exc.response["Error"]["Code"] != "NoSuchBucket":
            raise


def error_code(exc: ClientError) -> str:
    return str(exc.response["Error"]["Code"])


def http_status(exc_or_resp: ClientError | dict[str, Any]) -> int:
    resp = exc_or_resp.response if isinstance(exc_or_resp, ClientError) else exc_or_resp
    return int(resp["ResponseMetadata"]["HTTPStatusCode"])


@contextmanager
def s3_error(code: str, status: int | None = None) -> Iterator[list[ClientError]]:
    """``with s3_error("NoSuchKey", 404): client.get_object(...)`` asserts the S3 error."""
    caught: list[ClientError] = []
    try:
        yield caught
    except ClientError as exc:
        caught.append(exc)
        assert error_code(exc) == code, exc.response
        if status is not None:
            assert http_status(exc) == status, exc.response
    else:
        raise AssertionError(f"expected S3 error {code}, but the call succeeded")


def parse_error_xml(body: bytes) -> dict[str, str]:
    root = ElementTree.fromstring(body)
    assert root.tag == "Error", body
    return {child.tag: (child.text or "") for child in root}


def wait_for(predicate: Callable[[], bool], timeout_s: float, what: str,
             interval_s: float = 0.05) -> None:
    """Poll until ``predicate`` holds, or fail at the deadline."""
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(interval_s)


def server_started(server: ServerProcess) -> bool:
    """True once something accepts TCP connections on the server's port."""
    try:
        with socket.create_connection(("127.0.0.1", server.port), timeout=1):
            return True
    except OSError:
        return False


def checksum_b64(algorithm: str, data: bytes) -> str:
    """The base64 value S3 reports for ``x-amz-checksum-<algorithm>`` of ``data``."""
    import base64
    import struct
    import zlib

    from awscrt import checksums

    algo = algorithm.upper()
    if algo == "CRC32":
        raw = struct.pack(">I", zlib.crc32(data))
    elif algo == "CRC32C":
        raw = struct.pack(">I", checksums.crc32c(data))
    elif algo == "CRC64NVME":
        raw = struct.pack(">Q", checksums.crc64nvme(data))
    elif algo == "SHA1":
        raw = hashlib.sha1(data).digest()
    elif algo == "SHA256":
        raw = hashlib.sha256(data).digest()
    else:
        raise ValueError(algorithm)
    return base64.b64encode(raw).decode()


def multipart_etag(parts: list[bytes]) -> str:
    digests = b"".join(hashlib.md5(p).digest() for p in parts)
    return f'"{hashlib.md5(digests).hexdigest()}-{len(parts)}"'


def start_server(tmp_dir: Path, root_user: User, users: list[User], *,
                 tls: TLSFiles | None = None, fsync: bool = False,
                 extra_env: dict[str, str] | None = None) -> ServerProcess:
    srv = ServerProcess(storage_root=tmp_dir / "root", root_user=root_user, users=users, tls=tls,
                        fsync=fsync, extra_env=extra_env or {})
    srv.start()
    LIVE_SERVERS.append(srv)
    return srv


def stop_server(srv: ServerProcess) -> None:
    try:
        rc = srv.stop()
    finally:
        if srv in LIVE_SERVERS:
            LIVE_SERVERS.remove(srv)
    assert rc == 0, f"rs3gw exited with {rc} after SIGTERM; stderr:\n{srv.stderr_text()}"
    reports = take_loop_guard_reports()
    assert not reports, "blocking call(s) on the event loop:\n" + "\n".join(reports)
