"""The example server and client as real processes on 127.0.0.1."""

import ssl
import subprocess
from pathlib import Path
from typing import Any

import certifi
import pytest
import requests
from requests.adapters import HTTPAdapter

from harness import ca_cli
from harness.processes import BIN, HelloServers, free_port, hello_client
from mtls_context import client_context, requests_adapter, server_context
from mtls_context.layout import CA, CERT, KEY, POLICY, write_version


@pytest.fixture(scope="module")
def server(hello_servers: HelloServers) -> int:
    """The port of the shared example server of the default stack (flask)."""
    return hello_servers.port("flask")


def client_dir(tmp_path: Path, state: Path, name: str, *args: str) -> Path:
    directory = tmp_path / "client"
    ca_cli.ca("issue", f"--state={state}", f"--name={name}", f"--out={directory}", *args)
    return directory


def test_hello(server: int, server_dir: Path, tmp_path: Path, ca_state: Path) -> None:
    cert_dir = client_dir(tmp_path, ca_state, "client.test")

    code, lines = hello_client(f"https://localhost:{server}/", cert_dir, count=3)

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
    server: int, server_dir: Path, tmp_path: Path
) -> None:
    stranger = tmp_path / "stranger"
    ca_cli.init(stranger)
    cert_dir = client_dir(tmp_path, stranger, "client.test")
    # It trusts our root too, so the refusal is the server's.
    files = {name: (cert_dir / name).read_bytes() for name in (CERT, KEY, CA, POLICY)}
    files[CA] += (server_dir / CA).read_bytes()
    write_version(cert_dir, files)

    code, [line] = hello_client(f"https://localhost:{server}/", cert_dir)

    assert code == 1
    assert line["status"] is None
    assert "UNKNOWN_CA" in str(line["error"])


def test_wrong_server_name_is_refused_by_the_client(
    server: int, tmp_path: Path, ca_state: Path
) -> None:
    cert_dir = client_dir(tmp_path, ca_state, "client.test")

    code, [line] = hello_client(f"https://127.0.0.1:{server}/", cert_dir)

    assert code == 1
    assert "Hostname mismatch" in str(line["error"]) or "IP address mismatch" in str(line["error"])


def test_allow_list_admits_a_spiffe_id(server: int, tmp_path: Path, ca_state: Path) -> None:
    cert_dir = client_dir(
        tmp_path, ca_state, "web.shop.svc", "--namespace=shop", "--service-account=web"
    )

    code, [line] = hello_client(f"https://localhost:{server}/", cert_dir)

    assert (code, line["body"]) == (0, "Hello, web.shop.svc!")


def test_allow_list_gives_403_with_a_one_line_reason(
    server: int, tmp_path: Path, ca_state: Path
) -> None:
    cert_dir = client_dir(tmp_path, ca_state, "intruder.test")

    code, [line] = hello_client(f"https://localhost:{server}/", cert_dir)

    assert code == 1
    assert line["status"] == 403
    assert line["body"] == "intruder.test is not on this server's allow-list"


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
    server: int, tmp_path: Path, ca_state: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", certifi.where())
    cert_dir = client_dir(tmp_path, ca_state, "client.test")
    url = f"https://localhost:{server}/"
    ours = requests_adapter.session(cert_dir)
    adapter = ours.get_adapter(url)
    assert isinstance(adapter, requests_adapter.ReloadingAdapter)
    naive_context = client_context(cert_dir)
    naive = requests.Session()
    naive.mount("https://", InjectedContextAdapter(naive_context))

    assert roots_after_requests(ours, adapter._context, url) == 1
    assert roots_after_requests(naive, naive_context, url) > 100


def probe(port: int, cert_dir: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            str(BIN / "hello-mtls-server"),
            "--probe",
            f"--bind=127.0.0.1:{port}",
            f"--cert-dir={cert_dir}",
        ],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )


def test_probe_passes_against_a_serving_server(server: int, server_dir: Path) -> None:
    done = probe(server, server_dir)

    assert (done.returncode, done.stdout.split(",")[0]) == (0, "healthy: HTTP/1.1 200 OK")


def test_probe_fails_when_nothing_serves(server_dir: Path) -> None:
    done = probe(free_port(), server_dir)

    assert done.returncode == 1
    assert done.stderr.startswith("unhealthy: [Errno 111] Connection refused")


@pytest.mark.parametrize("command", ["hello-mtls-server", "hello-mtls-client"])
def test_commands_refuse_a_directory_without_a_key(
    command: str, tmp_path: Path, server_dir: Path
) -> None:
    for name in (CERT, CA):
        (tmp_path / name).write_bytes((server_dir / name).read_bytes())

    done = subprocess.run(
        [str(BIN / command), f"--cert-dir={tmp_path}"],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )

    assert done.returncode == 2
    assert done.stderr.strip() == f"{command}: {tmp_path}: missing or empty: tls.key"


def test_a_reload_moves_new_connections_while_a_request_in_flight_finishes(
    server: int, tmp_path: Path, ca_state: Path
) -> None:
    cert_dir = client_dir(tmp_path, ca_state, "client.test")
    s = requests_adapter.session(cert_dir, check_interval=0)
    url = f"https://localhost:{server}/"
    in_flight = s.get(url, stream=True)  # its connection stays checked out until read
    first = requests_adapter.tls_info(in_flight)

    ca_cli.issue(ca_state, cert_dir, "client.test")
    after = s.get(url)

    assert first is not None and (info := requests_adapter.tls_info(after)) is not None
    assert info.client_serial == ca_cli.serial(cert_dir) != first.client_serial
    assert in_flight.text == "Hello, client.test!\n"
    s.close()
