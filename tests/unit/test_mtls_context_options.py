"""`mtls_context.options`, `mtls_server.settings` and `mtls_client.loop`: the options the four
example programs share, one default and one syntax for each ``HELLO_MTLS_*`` variable."""

from __future__ import annotations

import argparse

import pytest

from mtls_client import cli as client_cli
from mtls_client import grpc_hello as grpc_client
from mtls_context import Side, options
from mtls_context.reloading import DEFAULT_CHECK_INTERVAL
from mtls_server import cli as server_cli
from mtls_server import grpc_hello as grpc_server
from mtls_server import settings

PARSERS = [server_cli._parser, grpc_server._parser, client_cli._parser, grpc_client._parser]
SERVERS = [server_cli._parser, grpc_server._parser]
CLIENTS = [client_cli._parser, grpc_client._parser]


def parser(side: Side) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser()
    options.add_common(p, side=side)
    return p


def test_defaults_without_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("CERT_DIR", "CHECK_INTERVAL", "METRICS_PORT", "ALLOW"):
        monkeypatch.delenv(f"HELLO_MTLS_{name}", raising=False)
    args = parser(Side.SERVER).parse_args([])
    assert (args.cert_dir, args.check_interval, args.metrics_port, args.allow) == (
        "/var/run/hello-mtls",
        DEFAULT_CHECK_INTERVAL,
        0,
        [],
    )
    assert not hasattr(parser(Side.CLIENT).parse_args([]), "allow")


@pytest.mark.parametrize("make", PARSERS)
def test_every_program_reads_the_same_variables(
    make: object, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HELLO_MTLS_CERT_DIR", "/certs")
    monkeypatch.setenv("HELLO_MTLS_CHECK_INTERVAL", "0.25")
    monkeypatch.setenv("HELLO_MTLS_METRICS_PORT", "9102")
    args = make().parse_args([])  # type: ignore[operator]
    assert (args.cert_dir, args.check_interval, args.metrics_port) == ("/certs", 0.25, 9102)


@pytest.mark.parametrize("make", SERVERS)
def test_every_server_parses_the_allow_list_alike(
    make: object, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HELLO_MTLS_ALLOW", " a.test, ,spiffe://cluster.local/ns/b/sa/c ")
    assert make().parse_args([]).allow == ["a.test", "spiffe://cluster.local/ns/b/sa/c"]  # type: ignore[operator]


@pytest.mark.parametrize("make", SERVERS)
def test_every_server_listens_where_the_workers_do(
    make: object, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HELLO_MTLS_BIND", "[::1]:9443")
    assert make().parse_args([]).bind == options.bind() == ("::1", 9443)  # type: ignore[operator]
    assert str(options.bind()) == "[::1]:9443"  # as gunicorn and gRPC take it
    args = make().parse_args(["--bind", "127.0.0.1:8443"])  # type: ignore[operator]
    assert str(args.bind) == "127.0.0.1:8443"


@pytest.mark.parametrize("make", SERVERS)
def test_every_server_refuses_a_bad_bind_naming_the_option(
    make: object, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("HELLO_MTLS_BIND", "8443")
    with pytest.raises(SystemExit):
        make().parse_args([])  # type: ignore[operator]
    assert "argument --bind: '8443' is not HOST:PORT" in capsys.readouterr().err


@pytest.mark.parametrize("make", CLIENTS)
def test_both_clients_loop_alike(make: object) -> None:
    args = make().parse_args(["--interval", "0.5", "--count", "3", "--timeout", "2"])  # type: ignore[operator]
    assert (args.interval, args.count, args.timeout) == (0.5, 3, 2.0)
    assert (make().parse_args([]).interval, make().parse_args([]).count) == (1.0, 0)  # type: ignore[operator]


def test_the_client_calls_the_url_the_recipes_call(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("HELLO_MTLS_URL", raising=False)
    assert client_cli._parser().parse_args([]).url == options.url() == "https://localhost:8443/"
    monkeypatch.setenv("HELLO_MTLS_URL", "https://web.demo:8443/")
    assert client_cli._parser().parse_args([]).url == options.url() == "https://web.demo:8443/"


def test_the_server_and_its_gunicorn_settings_read_the_worker_counts_alike(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for name in ("STACK", "WORKERS", "THREADS"):
        monkeypatch.delenv(f"HELLO_MTLS_{name}", raising=False)
    args = server_cli._parser().parse_args([])
    assert (args.stack, args.workers, args.threads) == ("flask", 2, 4)
    assert (settings.workers(), settings.threads()) == (2, 4)
    monkeypatch.setenv("HELLO_MTLS_WORKERS", "3")
    monkeypatch.setenv("HELLO_MTLS_THREADS", "8")
    assert server_cli._parser().parse_args([]).workers == settings.workers() == 3
    assert server_cli._parser().parse_args([]).threads == settings.threads() == 8


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("STACK", "django", "argument --stack: 'django' is not one of flask, fastapi"),
        ("WORKERS", "many", "argument --workers: invalid int value: 'many'"),
    ],
)
def test_a_bad_server_variable_is_refused_naming_the_option(
    name: str,
    value: str,
    message: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv(f"HELLO_MTLS_{name}", value)
    with pytest.raises(SystemExit):
        server_cli._parser().parse_args([])
    assert message in capsys.readouterr().err


def test_the_command_line_replaces_the_environments_allow_list(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("HELLO_MTLS_ALLOW", "a.test")
    args = parser(Side.SERVER).parse_args(["--allow", "b.test", "--allow", "c.test"])
    assert args.allow == ["b.test", "c.test"]
    assert parser(Side.SERVER).parse_args([]).allow == ["a.test"]


def test_the_workers_read_what_the_command_line_wrote(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HELLO_MTLS_ALLOW", "a.test,b.test")
    monkeypatch.setenv("HELLO_MTLS_CHECK_INTERVAL", "0.5")
    monkeypatch.delenv("HELLO_MTLS_CERT_DIR", raising=False)
    assert (options.allow(), options.check_interval(), options.cert_dir()) == (
        ["a.test", "b.test"],
        0.5,
        "/var/run/hello-mtls",
    )


def test_a_bad_variable_is_refused_naming_the_option(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("HELLO_MTLS_CHECK_INTERVAL", "soon")
    with pytest.raises(SystemExit):
        parser(Side.CLIENT).parse_args([])
    assert "argument --check-interval: invalid float value: 'soon'" in capsys.readouterr().err


def test_bind_reads_host_and_port(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("HELLO_MTLS_BIND", raising=False)
    assert options.bind() == ("0.0.0.0", 8443)
    for text, want in (("127.0.0.1:9443", ("127.0.0.1", 9443)), ("[::]:8443", ("::", 8443))):
        monkeypatch.setenv("HELLO_MTLS_BIND", text)
        assert options.bind() == want


@pytest.mark.parametrize("text", ["8443", "localhost", "localhost:https", ":8443"])
def test_a_bad_bind_is_refused(monkeypatch: pytest.MonkeyPatch, text: str) -> None:
    monkeypatch.setenv("HELLO_MTLS_BIND", text)
    with pytest.raises(ValueError, match="is not HOST:PORT"):
        options.bind()
