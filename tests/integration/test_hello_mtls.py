"""The example server and client as real processes on 127.0.0.1."""

import json
import ssl
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import certifi
import pytest
import requests
from requests.adapters import HTTPAdapter

import mtls_client
from certdirs import Issuer, publish
from mtls_context import client_context, server_context
from processes import BIN, hello_server


@pytest.fixture(scope="module")
def issuer() -> Issuer:
    return Issuer()


@pytest.fixture(scope="module")
def server_dir(tmp_path_factory: pytest.TempPathFactory, issuer: Issuer) -> Path:
    directory = tmp_path_factory.mktemp("server")
    publish(directory, issuer.issue("localhost"), [issuer])
    return directory


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, server_dir: Path) -> Iterator[int]:
    log = tmp_path_factory.mktemp("logs") / "server.log"
    with hello_server(server_dir, log, "--allow=client.test", "--allow=also.test") as port:
        yield port


def client_dir(tmp_path: Path, issuer: Issuer, *names: str, expired: bool = False) -> Path:
    directory = tmp_path / "client"
    publish(directory, issuer.issue(*names, expired=expired), [issuer])
    return directory


def run_client(url: str, cert_dir: Path, count: int = 1) -> tuple[int, list[dict[str, object]]]:
    done = subprocess.run(
        [
            str(BIN / "hello-mtls-client"),
            f"--url={url}",
            f"--cert-dir={cert_dir}",
            f"--count={count}",
            "--interval=0.05",
        ],
        capture_output=True,
        timeout=60,
        check=False,
    )
    lines = [json.loads(line) for line in done.stdout.decode().splitlines()]
    assert len(lines) == count, done.stderr.decode()
    return done.returncode, lines


def test_hello(server: int, server_dir: Path, tmp_path: Path, issuer: Issuer) -> None:
    cert_dir = client_dir(tmp_path, issuer, "client.test")

    code, lines = run_client(f"https://localhost:{server}/", cert_dir, count=3)

    assert code == 0
    assert {line["body"] for line in lines} == {"Hello, client.test!"}
    assert {line["server_serial"] for line in lines} == {
        server_context(server_dir).certificate.serial
    }
    assert {line["client_serial"] for line in lines} == {
        client_context(cert_dir).certificate.serial
    }
    assert set(lines[0]) == {
        "time",
        "url",
        "status",
        "body",
        "error",
        "server_serial",
        "client_serial",
    }


def test_client_certificate_from_another_ca_is_refused(
    server: int, tmp_path: Path, issuer: Issuer
) -> None:
    stranger = Issuer()
    cert_dir = tmp_path / "client"
    publish(cert_dir, stranger.issue("client.test"), [stranger, issuer])

    code, [line] = run_client(f"https://localhost:{server}/", cert_dir)

    assert code == 1
    assert line["status"] is None
    assert "UNKNOWN_CA" in str(line["error"]) or "unknown ca" in str(line["error"])


def test_wrong_server_name_is_refused_by_the_client(
    server: int, tmp_path: Path, issuer: Issuer
) -> None:
    cert_dir = client_dir(tmp_path, issuer, "client.test")

    code, [line] = run_client(f"https://127.0.0.1:{server}/", cert_dir)

    assert code == 1
    assert "Hostname mismatch" in str(line["error"]) or "IP address mismatch" in str(line["error"])


def test_allow_list_gives_403_with_a_one_line_reason(
    server: int, tmp_path: Path, issuer: Issuer
) -> None:
    cert_dir = client_dir(tmp_path, issuer, "intruder.test")

    code, [line] = run_client(f"https://localhost:{server}/", cert_dir)

    assert code == 1
    assert (line["status"], line["body"]) == (
        403,
        "intruder.test is not on this server's allow-list",
    )


class InjectedContextAdapter(HTTPAdapter):
    """The obvious way to use a custom context with requests; it leaks other roots into it."""

    def __init__(self, context: ssl.SSLContext) -> None:
        self.context = context
        super().__init__()

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        super().init_poolmanager(*args, ssl_context=self.context, **kwargs)


def roots_after_requests(session: requests.Session, context: ssl.SSLContext, url: str) -> int:
    for _ in range(2):
        session.get(url, timeout=10).close()
    return int(context.cert_store_stats()["x509_ca"])


def test_certifi_and_requests_ca_bundle_never_enter_the_context(
    server: int, tmp_path: Path, issuer: Issuer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", certifi.where())
    cert_dir = client_dir(tmp_path, issuer, "client.test")
    url = f"https://localhost:{server}/"
    ours = mtls_client.session(cert_dir)
    adapter = ours.get_adapter(url)
    assert isinstance(adapter, mtls_client.ReloadingAdapter)
    naive_context = client_context(cert_dir)
    naive = requests.Session()
    naive.mount("https://", InjectedContextAdapter(naive_context))

    assert roots_after_requests(ours, adapter._context, url) == 1
    assert roots_after_requests(naive, naive_context, url) > 100
