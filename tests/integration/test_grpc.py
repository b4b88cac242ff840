"""gRPC: the example server (``hello-mtls-grpc-server``, on `server_credentials`) and clients on
`ReloadingChannel` (``hello-mtls-grpc-client`` among them), as real processes.

The server's TLS is probed with a plain ``ssl`` client offering ALPN h2 (what a gRPC client
sends), so the refusals and the served certificate are seen independently of grpcio.
"""

from __future__ import annotations

import json
import socket
import ssl
import subprocess
import time
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest
import trustme

from harness.processes import BIN, free_port, running
from harness.waiting import elapsed_until, wait_until
from mtls_context.groups import set_groups
from mtls_context.grpc_credentials import ReloadingChannel
from support.certdirs import Issuer, plain_client, publish, serial_of

CHECK_INTERVAL = 0.3
BOUND = 60  # seconds for a server or client to take a new version, on a loaded machine too
POLL = 0.05
LOAD_PER_STEP = CHECK_INTERVAL * 4  # calls on each rotation step, however soon it is taken
METHOD = "/hello.Hello/Say"


@dataclass
class Server:
    port: int
    directory: Path
    client_dir: Path
    issuer: Issuer
    leaf: trustme.LeafCert


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    work = tmp_path_factory.mktemp("grpc")
    issuer = Issuer()
    leaf = issuer.issue("localhost")
    publish(work / "server", leaf, [issuer])
    publish(work / "client", issuer.issue("client.test"), [issuer])
    port = free_port()
    argv = [
        str(BIN / "hello-mtls-grpc-server"),
        f"--bind=127.0.0.1:{port}",
        f"--cert-dir={work / 'server'}",
        f"--check-interval={CHECK_INTERVAL}",
        "--allow=client.test",
    ]
    with running(argv, work / "server.log"):
        result = Server(port, work / "server", work / "client", issuer, leaf)
        context = client(issuer, issuer.issue("client.test"))
        wait_until(
            "the server to complete a handshake",
            lambda: probe(result, context),
            60,
            interval=0.2,
            retry_on=(OSError,),
        )
        yield result


def client(issuer: Issuer, leaf: trustme.LeafCert | None) -> ssl.SSLContext:
    context = plain_client(issuer, leaf)
    context.set_alpn_protocols(["h2"])  # as a gRPC client
    return context


def probe(server: Server, context: ssl.SSLContext) -> str:
    """A TLS handshake with the server; the serial of its certificate. A refused client
    certificate shows on the first read (TLS 1.3)."""
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as raw:
        with context.wrap_socket(raw, server_hostname="localhost") as tls:
            tls.sendall(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + bytes(9))  # preface + empty frame
            if not tls.recv(9):
                raise ConnectionError("the server closed the connection")
            peer = tls.getpeercert() or {}
            return format(int(str(peer["serialNumber"]), 16), "x")


def served_serial(server: Server, context: ssl.SSLContext) -> str | None:
    """``probe``, or None while the server refuses ``context`` or is not trusted by it (it still
    runs an earlier version)."""
    try:
        return probe(server, context)
    except OSError:
        return None


def say(channel: grpc.Channel) -> str:
    call: grpc.UnaryUnaryMultiCallable[bytes, bytes] = channel.unary_unary(METHOD)
    return call(b"", timeout=10).decode()


@pytest.fixture
def channel(server: Server) -> Iterator[ReloadingChannel]:
    target = f"localhost:{server.port}"
    with ReloadingChannel(target, server.client_dir, check_interval=CHECK_INTERVAL) as ch:
        yield ch


def test_hello_names_the_client_from_auth_context(
    server: Server, channel: ReloadingChannel
) -> None:
    assert say(channel).startswith("Hello, client.test! (serial ")


def test_the_client_command_calls_the_server_command(server: Server) -> None:
    """``hello-mtls-grpc-client`` prints one JSON line per call, with the serial the server saw;
    a client off the server's allow-list is refused by name."""
    done = subprocess.run(
        [
            str(BIN / "hello-mtls-grpc-client"),
            f"--target=localhost:{server.port}",
            f"--cert-dir={server.client_dir}",
            "--count=2",
            "--interval=0.05",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    lines = [json.loads(line) for line in done.stdout.splitlines()]

    assert done.returncode == 0, done.stderr
    assert [line["body"] for line in lines] == [
        f"Hello, client.test! (serial {line['client_serial']})" for line in lines
    ] and len(lines) == 2


def test_a_client_off_the_allow_list_is_denied(server: Server, tmp_path: Path) -> None:
    publish(tmp_path, server.issuer.issue("intruder.test"), [server.issuer])

    with ReloadingChannel(f"localhost:{server.port}", tmp_path) as channel:
        with pytest.raises(grpc.RpcError) as refused:
            say(channel)

    assert refused.value.code() == grpc.StatusCode.PERMISSION_DENIED
    assert refused.value.details() == "intruder.test is not on this server's allow-list"


def test_no_client_certificate_is_refused(server: Server) -> None:
    with pytest.raises((ssl.SSLError, ConnectionError)):
        probe(server, client(server.issuer, None))


def test_a_client_of_a_foreign_ca_is_refused(server: Server) -> None:
    with pytest.raises((ssl.SSLError, ConnectionError)):
        probe(server, client(server.issuer, Issuer().issue("client.test")))


def test_tls_11_is_refused(server: Server) -> None:
    context = client(server.issuer, server.issuer.issue("client.test"))
    context.set_ciphers("DEFAULT:@SECLEVEL=0")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        context.minimum_version = context.maximum_version = ssl.TLSVersion.TLSv1_1

    with pytest.raises(ssl.SSLError):
        probe(server, context)


def test_a_cbc_suite_is_refused(server: Server) -> None:
    context = client(server.issuer, server.issuer.issue("client.test"))
    context.maximum_version = ssl.TLSVersion.TLSv1_2
    context.set_ciphers("ECDHE-ECDSA-AES128-SHA256")

    with pytest.raises(ssl.SSLError):
        probe(server, context)
    context.set_ciphers("ECDHE-ECDSA-AES128-GCM-SHA256")
    assert probe(server, context)


def test_x448_is_refused(server: Server) -> None:
    context = client(server.issuer, server.issuer.issue("client.test"))
    set_groups(context, "X448")

    with pytest.raises(ssl.SSLError):
        probe(server, context)


def test_p521_is_accepted_the_gap_grpc_leaves_open(server: Server) -> None:
    """gRPC's BoringSSL offers no group setting to Python; its defaults include P-521."""
    context = client(server.issuer, server.issuer.issue("client.test"))
    set_groups(context, "P-521")

    assert probe(server, context)


def test_a_new_server_certificate_is_served_on_new_connections(server: Server) -> None:
    context = client(server.issuer, server.issuer.issue("client.test"))
    leaf = server.issuer.issue("localhost")
    publish(server.directory, leaf, [server.issuer])

    elapsed = elapsed_until(
        f"the server to serve serial {serial_of(leaf)}",
        lambda: probe(server, context) == serial_of(leaf),
        BOUND,
        interval=0.02,
    )
    # The target is the check interval plus reading and validating the files; a loaded machine
    # takes longer, so the figure is reported, not asserted.
    print(f"grpc: new certificate served after {elapsed:.3f} s (check interval {CHECK_INTERVAL} s)")


def test_a_channel_presents_a_renewed_client_certificate(
    server: Server, channel: ReloadingChannel
) -> None:
    assert say(channel).startswith("Hello, client.test! (serial ")
    leaf = server.issuer.issue("client.test")
    publish(server.client_dir, leaf, [server.issuer])

    wanted = f"Hello, client.test! (serial {serial_of(leaf)})"
    wait_until(repr(wanted), lambda: say(channel) == wanted, BOUND, interval=POLL, retry_on=())


def test_a_root_rotation_under_load_fails_no_call(
    server: Server, channel: ReloadingChannel
) -> None:
    new_root = Issuer()
    both = [server.issuer, new_root]
    answers: list[str] = []
    try:
        for _ in range(10):
            publish(server.directory, server.issuer.issue("localhost"), [server.issuer])
            publish(server.client_dir, server.issuer.issue("client.test"), [server.issuer])
            answers.append(say(channel))
            time.sleep(CHECK_INTERVAL / 2)
        for issuer, trusted in ((server.issuer, both), (new_root, both), (new_root, [new_root])):
            rotation_step(server, channel, issuer, trusted, answers)
        assert all(a.startswith("Hello, client.test! ") for a in answers) and len(answers) > 20
        assert probe(server, client(new_root, new_root.issue("client.test")))
    finally:
        publish(server.directory, server.leaf, [server.issuer])
        publish(server.client_dir, server.issuer.issue("client.test"), [server.issuer])
        prober = client(server.issuer, server.issuer.issue("client.test"))
        wait_until(
            f"the server to serve serial {serial_of(server.leaf)}",
            lambda: served_serial(server, prober) == serial_of(server.leaf),
            BOUND,
            interval=POLL,
            retry_on=(),
        )


def rotation_step(
    server: Server,
    channel: ReloadingChannel,
    issuer: Issuer,
    trusted: list[Issuer],
    answers: list[str],
) -> None:
    """Publish one step to both sides and make calls, for at least ``LOAD_PER_STEP``, until both
    run it: the next step is safe only then."""
    leaf, client_leaf = issuer.issue("localhost"), issuer.issue("client.test")
    publish(server.directory, leaf, trusted)
    publish(server.client_dir, client_leaf, trusted)
    prober = client(issuer, issuer.issue("client.test"))
    server_serial, client_serial = serial_of(leaf), serial_of(client_leaf)
    loaded = time.monotonic() + LOAD_PER_STEP

    def taken() -> bool:
        answers.append(say(channel))
        return (
            time.monotonic() >= loaded
            and answers[-1].endswith(f"(serial {client_serial})")
            and served_serial(server, prober) == server_serial
        )

    wait_until(
        f"both sides to run serials {server_serial} and {client_serial}",
        taken,
        BOUND,
        interval=0,
        retry_on=(),
    )
