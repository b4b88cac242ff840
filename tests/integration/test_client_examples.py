"""The client recipes of ``examples/`` (requests, httpx sync and async, aiohttp) run as a user
runs them, against the asyncio recipe on 127.0.0.1: each says the server's hello, and a client
of a foreign CA gets none."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from harness import example_servers
from harness.processes import free_port, running
from harness.waiting import wait_until
from mtls_context import client_context
from support.certdirs import Issuer, publish
from support.https_get import get

CLIENTS = {
    "requests_client.py": "hello from asyncio\nTLSInfo(",
    "httpx_client.py": "hello from asyncio\nhello from asyncio\n",
    "aiohttp_client.py": "hello from asyncio\n",
}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    """The asyncio recipe's URL and a client directory of its CA."""
    work = tmp_path_factory.mktemp("client-examples")
    issuer = Issuer()
    publish(work / "server", issuer.issue("localhost"), [issuer])
    publish(work / "client", issuer.issue("client.test"), [issuer])
    port = free_port()
    variables = example_servers.env(port, work / "server", check_interval=1.0)
    with running(example_servers.argv("asyncio", port), work / "server.log", env=variables):
        wait_until(
            "the asyncio recipe to serve",
            lambda: get(port, client_context(work / "client")),
            60,
            interval=0.2,
            retry_on=(OSError,),
        )
        yield f"https://localhost:{port}/", work / "client"


def run(recipe: str, url: str, cert_dir: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(example_servers.EXAMPLES / recipe)],
        env={**os.environ, "HELLO_MTLS_URL": url, "HELLO_MTLS_CERT_DIR": str(cert_dir)},
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.mark.parametrize("recipe", CLIENTS)
def test_a_client_recipe_gets_the_hello(server: tuple[str, Path], recipe: str) -> None:
    address, cert_dir = server

    done = run(recipe, address, cert_dir)

    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith(CLIENTS[recipe])


@pytest.mark.parametrize("recipe", CLIENTS)
def test_a_client_recipe_of_a_foreign_ca_gets_no_hello(
    server: tuple[str, Path], recipe: str, tmp_path: Path
) -> None:
    address, _ = server
    foreign = Issuer()
    publish(tmp_path / "client", foreign.issue("client.test"), [foreign])

    done = run(recipe, address, tmp_path / "client")

    assert done.returncode != 0
    assert "hello from" not in done.stdout
    assert "CERTIFICATE_VERIFY_FAILED" in done.stderr
