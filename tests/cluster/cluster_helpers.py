"""Cluster test helpers: a uvloop runner, free ports, deadlines, a CA with node certificates."""
from __future__ import annotations

import asyncio
import datetime as dt
import socket
import time
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import uvloop

T = TypeVar("T")


def run(coro: Coroutine[Any, Any, T]) -> T:
    """Run a coroutine on uvloop, the loop production uses."""
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        return runner.run(coro)


def free_ports(n: int) -> list[int]:
    """n distinct ports that were free a moment ago (for tests that must know a seed's port before
    the seed runs; everything else binds port 0)."""
    socks = []
    try:
        for _ in range(n):
            s = socket.socket()
            s.bind(("127.0.0.1", 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


async def wait_until(predicate: Callable[[], bool], timeout_s: float, what: str,
                     interval_s: float = 0.02) -> None:
    """Poll until predicate holds, or fail at the deadline (a deadline, not a timing assertion)."""
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s}s waiting for {what}")
        await asyncio.sleep(interval_s)


async def wait_for_result(aw: Awaitable[T], timeout_s: float) -> T:
    async with asyncio.timeout(timeout_s):
        return await aw


@dataclass(frozen=True)
class NodeCert:
    cert: Path
    key: Path


@dataclass(frozen=True)
class ClusterPKI:
    ca: Path
    nodes: list[NodeCert]
    rogue: NodeCert          # signed by a different CA: must be refused by mutual TLS
    rogue_ca: Path


def _write_key_and_cert(directory: Path, name: str, key: Any, cert: Any) -> NodeCert:
    from cryptography.hazmat.primitives import serialization
    c, k = directory / f"{name}.pem", directory / f"{name}.key"
    c.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    k.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                    serialization.NoEncryption()))
    return NodeCert(c, k)


def _make_ca(name: str) -> tuple[Any, Any]:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = dt.datetime.now(dt.UTC)
    cert = (x509.CertificateBuilder().subject_name(subject).issuer_name(subject)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(days=1)).not_valid_after(now + dt.timedelta(days=7))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                         content_commitment=False, key_encipherment=False,
                                         data_encipherment=False, key_agreement=False,
                                         encipher_only=False, decipher_only=False), critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
            .sign(key, hashes.SHA256()))
    return key, cert


def _make_leaf(ca_key: Any, ca_cert: Any, name: str) -> tuple[Any, Any]:
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.UTC)
    cert = (x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]))
            .issuer_name(ca_cert.subject).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(days=1)).not_valid_after(now + dt.timedelta(days=7))
            .add_extension(x509.SubjectAlternativeName([
                x509.DNSName(name), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH,
                                                  ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
                           critical=False)
            .sign(ca_key, hashes.SHA256()))
    return key, cert


def make_pki(d: Path) -> ClusterPKI:
    ca_key, ca_cert = _make_ca("rs3gw-test-cluster-ca")
    ca = _write_key_and_cert(d, "ca", ca_key, ca_cert).cert
    nodes = [_write_key_and_cert(d, f"node{i}", *_make_leaf(ca_key, ca_cert, f"node{i}")) for i in range(2)]
    rogue_ca_key, rogue_ca_cert = _make_ca("someone-else-ca")
    rogue_ca = _write_key_and_cert(d, "rogue-ca", rogue_ca_key, rogue_ca_cert).cert
    rogue = _write_key_and_cert(d, "rogue", *_make_leaf(rogue_ca_key, rogue_ca_cert, "rogue"))
    return ClusterPKI(ca, nodes, rogue, rogue_ca)
