"""``--metrics-port``: the example apps, as real processes, report what each process serves or
presents (`mtls_context.prometheus`), and the report follows a reload."""

from __future__ import annotations

import os
import signal
import socket
import ssl
from pathlib import Path

import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families

from harness import ca_cli
from harness.processes import BIN, free_port, hello_server, running
from harness.waiting import wait_until
from mtls_context.identity import serial
from mtls_context.layout import write_version

NOT_AFTER = "hello_mtls_tls_certificate_not_after_timestamp_seconds"
Series = dict[str, dict[str, float]]  # pid -> metric name -> value (one context per process)

_http = requests.Session()
_http.trust_env = False  # loopback only: no proxy from the environment


def scrape(port: int, side: str) -> tuple[Series, dict[str, dict[str, str]]]:
    """Each process's values and labels for ``side``, from a real GET /metrics."""
    text = _http.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
    values: Series = {}
    labels: dict[str, dict[str, str]] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name.startswith("hello_mtls_tls_") and sample.labels["side"] == side:
                values.setdefault(sample.labels["pid"], {})[sample.name] = sample.value
                labels[sample.labels["pid"]] = sample.labels
    return values, labels


def served_serial(port: int, state: Path, client_dir: Path) -> str:
    """The serial a real handshake with the server gets."""
    context = ssl.create_default_context(cafile=str(client_dir / "ca.crt"))
    context.check_hostname = False
    context.load_cert_chain(client_dir / "tls.crt", client_dir / "tls.key")
    with socket.create_connection(("127.0.0.1", port), timeout=5) as raw:
        with context.wrap_socket(raw) as tls:
            return serial(tls.getpeercert() or {})


def every_process(port: int, side: str, wanted: str, generation: float, count: int) -> Series:
    """Wait until ``count`` processes report serial ``wanted`` at ``generation``."""

    def check() -> Series | None:
        values, labels = scrape(port, side)
        good = {
            pid: v
            for pid, v in values.items()
            if labels[pid]["serial"] == wanted and v["hello_mtls_tls_generation"] == generation
        }
        return values if len(good) == len(values) == count else None

    return wait_until(f"{count} processes to report serial {wanted}", check, 30, 0.2)


@pytest.mark.parametrize("stack", ["flask", "fastapi"])
def test_each_worker_reports_the_reload_it_serves(
    stack: str, ca_state: Path, tmp_path: Path
) -> None:
    server_dir, client_dir = tmp_path / "server", tmp_path / "client"
    first = ca_cli.issue(ca_state, server_dir, "localhost")
    ca_cli.issue(ca_state, client_dir, "client.test")
    metrics = free_port()
    args = (f"--stack={stack}", f"--metrics-port={metrics}")
    with hello_server(server_dir, tmp_path / "server.log", *args, workers=2) as port:
        before = every_process(metrics, "server", first, 1, count=2)
        _, labels = scrape(metrics, "server")
        assert {label["identity"] for label in labels.values()} == {"localhost"}
        assert all(v["hello_mtls_tls_reload_error"] == 0 for v in before.values())

        second = ca_cli.issue(ca_state, server_dir, "localhost")
        after = every_process(metrics, "server", second, 2, count=2)
        assert served_serial(port, ca_state, client_dir) == second
        for pid, values in after.items():
            assert values[NOT_AFTER] > before[pid][NOT_AFTER]
            assert (
                values["hello_mtls_tls_loaded_timestamp_seconds"]
                > before[pid]["hello_mtls_tls_loaded_timestamp_seconds"]
            )

        write_version(server_dir, {"tls.crt": b"garbage", "tls.key": b"", "ca.crt": b""})
        wait_until(
            "every process to report the refused files",
            lambda: all(
                v["hello_mtls_tls_reload_error"] == 1 for v in scrape(metrics, "server")[0].values()
            ),
            30,
            0.2,
        )
        assert set(scrape(metrics, "server")[1]) == set(after)
        assert {label["serial"] for label in scrape(metrics, "server")[1].values()} == {second}


def test_a_dead_worker_leaves_the_report(ca_state: Path, tmp_path: Path) -> None:
    server_dir = tmp_path / "server"
    first = ca_cli.issue(ca_state, server_dir, "localhost")
    metrics = free_port()
    with hello_server(server_dir, tmp_path / "server.log", f"--metrics-port={metrics}", workers=2):
        workers = every_process(metrics, "server", first, 1, count=2)
        gone = next(iter(workers))
        os.kill(int(gone), signal.SIGKILL)  # gunicorn starts another

        def replaced() -> bool:
            pids = set(scrape(metrics, "server")[0])
            return len(pids) == 2 and gone not in pids

        wait_until(
            "the killed worker's report to go and its successor's to come", replaced, 30, 0.2
        )


def test_the_client_reports_the_certificate_it_presents(ca_state: Path, tmp_path: Path) -> None:
    server_dir, client_dir = tmp_path / "server", tmp_path / "client"
    ca_cli.issue(ca_state, server_dir, "localhost")
    ca_cli.issue(ca_state, client_dir, "client.test")
    metrics = free_port()
    with hello_server(server_dir, tmp_path / "server.log") as port:
        argv = [
            str(BIN / "hello-mtls-client"),
            f"--url=https://localhost:{port}/",
            f"--cert-dir={client_dir}",
            "--interval=0.2",
            f"--metrics-port={metrics}",
        ]
        follows_a_reload(argv, tmp_path / "client.log", metrics, "client", ca_state, client_dir)


def test_the_grpc_server_reports_what_it_serves(ca_state: Path, tmp_path: Path) -> None:
    server_dir = tmp_path / "server"
    ca_cli.issue(ca_state, server_dir, "localhost")
    metrics = free_port()
    argv = [
        str(BIN / "hello-mtls-grpc-server"),
        f"--bind=127.0.0.1:{free_port()}",
        f"--cert-dir={server_dir}",
        "--check-interval=0.2",
        f"--metrics-port={metrics}",
    ]
    follows_a_reload(argv, tmp_path / "server.log", metrics, "server", ca_state, server_dir)


def follows_a_reload(
    argv: list[str], log: Path, metrics: int, side: str, state: Path, cert_dir: Path
) -> None:
    """Run a one-process app; its report shows the certificate in ``cert_dir``, then the one
    issued into it next."""
    with running(argv, log):
        wait_until("the metrics port", lambda: scrape(metrics, side)[0], 30, 0.2, (OSError,))
        every_process(metrics, side, ca_cli.serial(cert_dir), 1, count=1)
        name = scrape(metrics, side)[1].popitem()[1]["identity"]
        every_process(metrics, side, ca_cli.issue(state, cert_dir, name), 2, count=1)
