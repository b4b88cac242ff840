"""``hello-mtls check``'s view of the CA (`mtls_cli.ca_status.read_ca`) against a real
``hello-mtls-ca serve`` on 127.0.0.1: its ``GET /status``, and the served chain checked against
the roots it publishes, for the Service name and for a name it does not serve."""

from __future__ import annotations

import datetime
import socket
from collections.abc import Callable

import pytest

from harness.ca_service import Service
from harness.processes import free_port
from mtls_cli.ca_status import read_ca

SERVICE = "hello-mtls-ca.hello-mtls.svc"


@pytest.fixture(scope="module")
def serve_args() -> tuple[str, ...]:
    return ("--serving-name", SERVICE)


def connect(ca: Service) -> Callable[[], socket.socket]:
    return lambda: socket.create_connection(("127.0.0.1", ca.port), timeout=10)


def test_the_status_and_the_served_chain_of_a_real_ca(ca_service: Service) -> None:
    report = read_ca(connect(ca_service), SERVICE)
    assert report.status["phase"] == "idle"
    assert report.status["roots"][0]["fingerprint_sha256"]
    assert report.roots_pem.startswith(b"-----BEGIN CERTIFICATE-----")
    assert report.chain_error is None
    assert report.served_not_after is not None
    left = report.served_not_after - datetime.datetime.now(datetime.UTC)
    assert datetime.timedelta(hours=23) < left <= datetime.timedelta(hours=24)  # serving 24h


def test_a_name_the_ca_does_not_serve_fails_the_chain_check(ca_service: Service) -> None:
    report = read_ca(connect(ca_service), "hello-mtls-ca.elsewhere.svc")
    assert report.status["phase"] == "idle"
    assert report.chain_error is not None and "mismatch" in report.chain_error.lower()


def test_a_ca_that_is_not_there_is_an_os_error() -> None:
    port = free_port()
    with pytest.raises(OSError):
        read_ca(lambda: socket.create_connection(("127.0.0.1", port), timeout=5), SERVICE)
