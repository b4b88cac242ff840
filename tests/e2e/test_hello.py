"""Scenarios 1 and 2: the example server and client talk mTLS with certificates from our CA;
a pod without a client certificate is refused."""

from __future__ import annotations

import base64
import json
import subprocess
import tempfile
from pathlib import Path

from harness.waiting import wait_until
from support.cluster_api import apply, kubectl, kubectl_json, log
from support.pods import CERT_DIR, pod

# The probe a pod runs against the example server: one HTTPS GET, printing ACCEPTED or REFUSED.
# It trusts the server without verification when it has no bundle: what is tested is whether the
# *server* accepts the client.
PROBE = f"""
import os, ssl, socket, sys
host = sys.argv[1]
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
ctx.check_hostname = False
ctx.verify_mode = ssl.CERT_NONE
if os.path.exists("{CERT_DIR}/tls.crt"):
    ctx.load_cert_chain("{CERT_DIR}/tls.crt", "{CERT_DIR}/tls.key")
try:
    with socket.create_connection((host, 8443), timeout=10) as raw:
        with ctx.wrap_socket(raw, server_hostname=host) as tls:
            request = "GET / HTTP/1.1\\r\\nHost: %s\\r\\nConnection: close\\r\\n\\r\\n" % host
            tls.sendall(request.encode())
            data = b""
            while chunk := tls.recv(4096):
                data += chunk
    answer = data.decode(errors="replace")
    status = answer.splitlines()[0] if answer else "(empty)"
    print("ACCEPTED", status, answer.rsplit("\\r\\n", 1)[-1])
except (ssl.SSLError, OSError) as error:
    print("REFUSED", type(error).__name__, error)
"""


def _verify_chain(secret: dict[str, str]) -> None:
    """The Secret's chain verifies against its own bundle with openssl (an independent oracle)."""
    files = {key: base64.b64decode(value).decode() for key, value in secret.items()}
    end = "-----END CERTIFICATE-----\n"
    blocks = [block.strip() + "\n" + end for block in files["tls.crt"].split(end) if block.strip()]
    with tempfile.TemporaryDirectory() as tmp:
        Path(tmp, "leaf.pem").write_text(blocks[0])
        Path(tmp, "chain.pem").write_text("".join(blocks[1:]))
        Path(tmp, "ca.pem").write_text(files["ca.crt"])
        verified = subprocess.run(
            [
                "openssl",
                "verify",
                "-CAfile",
                f"{tmp}/ca.pem",
                "-untrusted",
                f"{tmp}/chain.pem",
                f"{tmp}/leaf.pem",
            ],
            capture_output=True,
            text=True,
            check=False,
        )
    assert verified.returncode == 0, verified.stderr


def test_example_client_says_hello_through_the_service_name(installed: str) -> None:
    log("waiting for the example client to log a hello from the server")

    def hello() -> dict[str, object] | None:
        logs = kubectl("logs", "-n", installed, "deployment/hello-client", "--tail=50")
        for line in reversed(logs.splitlines()):
            try:
                entry: dict[str, object] = json.loads(line)
            except ValueError:
                continue
            if entry.get("status") == 200:
                return entry
        return None

    entry = wait_until("a 200 in the hello-client log", hello, timeout=240, interval=3)
    assert entry["body"] == f"Hello, hello-client.{installed}.svc!"
    assert str(entry["url"]).startswith(f"https://hello-server.{installed}.svc:8443")
    for name in ("hello-client-tls", "hello-server-tls"):
        secret = kubectl_json("get", "secret", name, "-n", installed)
        assert secret["type"] == "kubernetes.io/tls"
        _verify_chain(secret["data"])


def _probe_output(
    namespace: str,
    name: str,
    host: str,
    *,
    secret: str | None,
    annotations: dict[str, str] | None = None,
) -> str:
    apply(
        pod(name, annotations=annotations, secret=secret, command=["python3", "-c", PROBE, host]),
        namespace,
    )

    def finished() -> str | None:
        phase = kubectl("get", "pod", name, "-n", namespace, "-o", "jsonpath={.status.phase}")
        if phase in ("Succeeded", "Failed"):
            return kubectl("logs", name, "-n", namespace)
        return None

    return wait_until(f"pod {name} to finish", finished, timeout=180, interval=2)


def test_a_pod_without_a_client_certificate_is_refused(installed: str, namespace: str) -> None:
    host = f"hello-server.{installed}.svc"
    kubectl(
        "rollout",
        "status",
        "deployment/hello-server",
        "-n",
        installed,
        "--timeout=180s",
        timeout=200,
    )

    refused = _probe_output(namespace, "no-cert", host, secret=None)
    assert refused.startswith("REFUSED"), refused

    # The twin: the same probe with a certificate from our CA is accepted.
    accepted = _probe_output(
        namespace,
        "with-cert",
        host,
        secret="with-cert-tls",
        annotations={"hello-mtls.dev/name": f"with-cert.{namespace}.svc"},
    )
    assert accepted.startswith("ACCEPTED HTTP/1.1 200"), accepted
    assert f"Hello, with-cert.{namespace}.svc!" in accepted
