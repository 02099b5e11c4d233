"""Hardening tests: a CLI on a fresh SQLite file whose secret keys live in the test's
own directory (XDG_DATA_HOME), never in the user's."""

from __future__ import annotations

import ipaddress
import os
import socket
import ssl
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID


@pytest.fixture(autouse=True)
def own_data_dir(tmp_path, monkeypatch) -> None:
    """The default key file (and any embedded database) under the test's directory."""
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg"))
    monkeypatch.delenv("METALNET_SECRET_KEY", raising=False)


@pytest.fixture
def run(cli, sqlite_url):
    """`metalnet --db <fresh file> ...` after `db upgrade`."""

    def invoke(*args: str, input: str | None = None):
        return cli("--db", sqlite_url, *args, input=input)

    assert invoke("db", "upgrade").exit_code == 0
    return invoke


@dataclass
class HttpsServer:
    """A real `metalnet serve --tls-cert --tls-key` process, its CA file and a token."""

    url: str
    ca_file: Path
    token: str
    run: Callable[..., Any]

    def client(self) -> httpx.Client:
        return httpx.Client(
            base_url=self.url,
            headers={"Authorization": f"Bearer {self.token}"},
            verify=ssl.create_default_context(cafile=str(self.ca_file)),
            timeout=10,
        )


def self_signed(directory: Path, host: str = "127.0.0.1") -> tuple[Path, Path]:
    """A self-signed certificate for `host` (an IP SAN), made with `cryptography`."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "metalnet test")])
    now = datetime.now(UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5))
        .not_valid_after(now + timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address(host))]),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_file, key_file = directory / "tls.crt", directory / "tls.key"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_file, key_file


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def https_server(run, sqlite_url, tmp_path) -> Iterator[HttpsServer]:
    """`metalnet serve` over HTTPS on a free port, project `acme`, an admin token."""
    assert run("project", "create", "acme").exit_code == 0
    token = run("token", "create", "admin", "--admin").stdout.strip()
    cert, key = self_signed(tmp_path)
    port = _free_port()
    env = {k: v for k, v in os.environ.items() if k != "METALNET_CONFIG"}
    tls = ["--tls-cert", str(cert), "--tls-key", str(key)]
    command = [sys.executable, "-m", "metalnet", "--db", sqlite_url, "serve", *tls]
    command += ["--listen", f"127.0.0.1:{port}"]
    log = (tmp_path / "serve.log").open("w")
    process = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT)
    server = HttpsServer(f"https://127.0.0.1:{port}", cert, token, run)
    try:
        deadline = time.monotonic() + 30
        with server.client() as client:
            while True:
                assert process.poll() is None, (tmp_path / "serve.log").read_text()
                try:
                    client.get("/v1/projects")
                    break
                except httpx.TransportError:
                    assert time.monotonic() < deadline, "serve did not answer over HTTPS in 30 s"
                    time.sleep(0.1)
        yield server
    finally:
        process.terminate()
        try:
            process.wait(15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(5)
        log.close()
