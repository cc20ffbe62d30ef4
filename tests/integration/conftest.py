"""Fixtures for the integration suite: real rs3gw processes (http and https) and real clients."""
from __future__ import annotations

import socket
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

# The helpers module sits next to this file; make it importable under any pytest import mode.
sys.path.insert(0, str(Path(__file__).resolve().parent))

from servers import (
    LIVE_SERVERS,
    ServerProcess,
    TLSFiles,
    User,
    empty_and_delete_bucket,
    make_client,
    make_named_user,
    make_root_user,
    make_self_signed_cert,
    start_server,
    stop_server,
    take_loop_guard_reports,
    unique_bucket_name,
)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    outcome = yield
    report = outcome.get_result()
    if report.failed:
        for srv in LIVE_SERVERS:
            report.sections.append((f"rs3gw stderr (port {srv.port})", srv.stderr_text()))


@pytest.fixture(autouse=True)
def _no_blocking_calls_on_the_loop() -> Iterator[None]:
    """Fails the test during which a server's loop guard reported a blocking call (servers run
    with RS3GW_LOOP_GUARD=1; stop_server checks again once a server's stderr is fully read)."""
    yield
    reports = take_loop_guard_reports()
    if reports:
        pytest.fail("blocking call(s) on the event loop:\n" + "\n".join(reports), pytrace=False)


_real_getaddrinfo = socket.getaddrinfo


def _getaddrinfo(host: Any, *args: Any, **kwargs: Any) -> Any:
    # Virtual-host style addresses <bucket>.localhost; glibc here does not resolve *.localhost.
    if isinstance(host, (str, bytes)):
        name = host.decode() if isinstance(host, bytes) else host
        if name == "localhost" or name.endswith(".localhost"):
            host = "127.0.0.1"
    return _real_getaddrinfo(host, *args, **kwargs)


@pytest.fixture(scope="session", autouse=True)
def _resolve_localhost_subdomains() -> Iterator[None]:
    socket.getaddrinfo = _getaddrinfo
    yield
    socket.getaddrinfo = _real_getaddrinfo


@pytest.fixture(scope="session")
def root_user() -> User:
    return make_root_user()


@pytest.fixture(scope="session")
def alice() -> User:
    return make_named_user("alice")


@pytest.fixture(scope="session")
def bob() -> User:
    return make_named_user("bob")


@pytest.fixture(scope="session")
def tls_files(tmp_path_factory: pytest.TempPathFactory) -> TLSFiles:
    return make_self_signed_cert(tmp_path_factory.mktemp("tls"))


@pytest.fixture(scope="session")
def http_server(tmp_path_factory: pytest.TempPathFactory, root_user: User, alice: User,
                bob: User) -> Iterator[ServerProcess]:
    srv = start_server(tmp_path_factory.mktemp("http"), root_user, [alice, bob])
    yield srv
    stop_server(srv)


@pytest.fixture(scope="session")
def https_server(tmp_path_factory: pytest.TempPathFactory, root_user: User, alice: User,
                 bob: User, tls_files: TLSFiles) -> Iterator[ServerProcess]:
    srv = start_server(tmp_path_factory.mktemp("https"), root_user, [alice, bob], tls=tls_files)
    assert srv.scheme == "https"
    yield srv
    stop_server(srv)


@pytest.fixture(params=["http", "https"])
def any_server(request: pytest.FixtureRequest) -> ServerProcess:
    """Parametrizes a test over the http and the https server."""
    srv: ServerProcess = request.getfixturevalue(f"{request.param}_server")
    return srv


@pytest.fixture
def server(http_server: ServerProcess) -> ServerProcess:
    return http_server


@pytest.fixture
def s3(http_server: ServerProcess) -> Any:
    """Root's boto3 client: path style, botocore's default checksum behaviour, http."""
    return make_client(http_server)


@pytest.fixture
def alice_s3(http_server: ServerProcess, alice: User) -> Any:
    return make_client(http_server, user=alice)


@pytest.fixture
def bob_s3(http_server: ServerProcess, bob: User) -> Any:
    return make_client(http_server, user=bob)


@pytest.fixture
def anon_s3(http_server: ServerProcess) -> Any:
    return make_client(http_server, signed=False)


BucketMaker = Callable[..., str]


@pytest.fixture
def make_bucket() -> Iterator[BucketMaker]:
    """Creates uniquely named buckets on any server; empties and deletes them afterwards."""
    created: list[tuple[Any, str]] = []

    def _make(srv: ServerProcess, *, user: User | None = None, name: str | None = None,
              **create_kwargs: Any) -> str:
        client = make_client(srv, user=user)
        name = name or unique_bucket_name()
        client.create_bucket(Bucket=name, **create_kwargs)
        created.append((client, name))
        return name

    yield _make
    for client, name in reversed(created):
        empty_and_delete_bucket(client, name)


@pytest.fixture
def bucket(make_bucket: BucketMaker, http_server: ServerProcess) -> str:
    """A fresh bucket owned by root on the http server."""
    return make_bucket(http_server)
