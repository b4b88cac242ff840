"""The audit trail of the real ``hello-mtls-ca serve``: issuances, refusals and a rotation step
over HTTPS, each on disk and on stdout, the log verified by ``hello-mtls-ca audit verify``."""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import requests
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from harness import ca_cli
from harness.ca_service import Service, credential_session, init_with_provisioner
from harness.processes import free_port
from harness.token_review_api import Token, TokenReviewAPI
from harness.waiting import wait_until
from mtls_ca.authority import public_key_sha256
from mtls_context import layout
from support.csrs import csr_pem

OPERATOR = "spiffe://cluster.local/hello-mtls/provisioner/operator"
SIGNER_TOKEN = Token(
    "hello-mtls-ca-signer",
    "system:serviceaccount:hello-mtls:hello-mtls-ca-signer",
    pod_name="hello-mtls-ca-signer-1",
)


def _records(state: Path, *filters: str) -> list[dict[str, object]]:
    done = ca_cli.run("audit", "show", "--state", str(state), "--json", *filters)
    assert done.returncode == 0, done.stderr
    return [json.loads(line) for line in done.stdout.splitlines()]


def _sign(
    session: requests.Session, url: str, key: ec.EllipticCurvePrivateKey
) -> requests.Response:
    body = {
        "csr": csr_pem(key),
        "names": ["web.demo"],
        "namespace": "demo",
    }
    return session.post(f"{url}/sign", json=body, timeout=30)


def test_every_signature_refusal_and_rotation_step_is_recorded_and_verifies(
    tmp_path: Path,
) -> None:
    init_with_provisioner(tmp_path, admin="alice")
    state = tmp_path / "state"
    keys = [ec.generate_private_key(ec.SECP256R1()) for _ in range(12)]
    service = Service(state, tmp_path / "serve.log", "--audit-head-interval", "1")
    try:
        operator = credential_session(tmp_path, "prov")

        def sign(key: ec.EllipticCurvePrivateKey) -> requests.Response:
            return _sign(operator, service.url, key)

        with ThreadPoolExecutor(4) as pool:
            answers = list(pool.map(sign, keys))
        assert [a.status_code for a in answers] == [200] * len(keys)
        refused = operator.post(
            f"{service.url}/sign",
            json={
                "public_key": keys[0]
                .public_key()
                .public_bytes(
                    serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
                )
                .decode(),
                "names": ["web.shop"],
                "namespace": "demo",
            },
            timeout=30,
        )
        assert refused.status_code == 403
        anonymous = credential_session(tmp_path, None)
        assert anonymous.post(f"{service.url}/sign", json={}, timeout=30).status_code == 401
        admin = credential_session(tmp_path, "alice")
        step = admin.post(f"{service.url}/rotate-root", json={"from": "idle"}, timeout=30)
        assert step.status_code == 200, step.text

        def last_is_head() -> bool:
            return _records(state)[-1]["kind"] == "head"

        wait_until("a signed head after the last record", last_is_head, 30, 0.2)
    finally:
        service.stop()

    done = ca_cli.run("audit", "verify", "--state", str(state))
    assert done.returncode == 0, done.stdout + done.stderr
    assert "intact" in done.stdout

    serial = answers[3].json()["serial"]
    (issued,) = _records(state, "--serial", serial)
    assert issued["kind"] == "issuance" and issued["by"] == OPERATOR
    what = issued["what"]
    assert isinstance(what, dict)
    assert what["public_key_sha256"] == public_key_sha256(keys[3].public_key())
    assert what["spiffe_id"] == "spiffe://cluster.local/ns/demo/sa/default"
    assert what["names"] == ["web.demo"] and what["namespace"] == "demo"
    # --identity: what the operator asked for, and the operator's own credential.
    about_operator = _records(state, "--identity", OPERATOR, "--kind", "issuance")
    assert [r["by"] == OPERATOR for r in about_operator] == [False] + [True] * len(keys)
    assert about_operator[0]["what"]["spiffe_id"] == OPERATOR  # type: ignore[index]

    refusals = _records(state, "--kind", "refusal")
    assert [r["what"]["reason"] for r in refusals] == ["policy", "unauthenticated"]  # type: ignore[index]
    assert refusals[0]["by"] == OPERATOR
    assert refusals[0]["what"]["names"] == ["web.shop"]  # type: ignore[index]
    assert refusals[0]["what"]["public_key_sha256"] == public_key_sha256(keys[0].public_key())  # type: ignore[index]
    assert str(refusals[1]["by"]).startswith("(no client certificate, from 127.0.0.1")
    created, rotation = _records(state, "--kind", "rotation", "--since", "1h")
    assert created["what"]["step"] == "created"  # type: ignore[index]
    assert rotation["what"]["step"] == "both-trusted"  # type: ignore[index]
    assert rotation["by"] == "spiffe://cluster.local/hello-mtls/admin/alice"
    assert len(rotation["what"]["roots"]) == 2  # type: ignore[index]

    # The service's stdout holds every record it wrote, byte for byte.
    logged = set((tmp_path / "serve.log").read_text().splitlines())
    on_disk = (state / "audit" / "000001.jsonl").read_text().splitlines()
    last_cli = max(i for i, line in enumerate(on_disk) if '"by":"hello-mtls-ca CLI' in line)
    served = on_disk[last_cli + 1 :]
    assert served and all(line in logged for line in served)

    # One changed byte in an issuance record: verify names the record after it.
    segment = state / "audit" / "000001.jsonl"
    lines = segment.read_bytes().splitlines(keepends=True)
    index = next(i for i, line in enumerate(lines) if serial.encode() in line)
    lines[index] = lines[index].replace(b"web.demo", b"web.deme")
    segment.write_bytes(b"".join(lines))
    done = ca_cli.run("audit", "verify", "--state", str(state))
    assert done.returncode == 2
    assert f"line {index + 2} (seq {index + 2}): its prev is not the hash" in done.stdout


def test_a_signer_keeps_its_own_chain_on_stdout_and_it_verifies(tmp_path: Path) -> None:
    """The signer path of docs/ca.md: its stdout lines are a log that verifies against ca.crt."""
    init_with_provisioner(tmp_path)
    (tmp_path / "token").write_text("signer-token\n")
    api = TokenReviewAPI({"signer-token": SIGNER_TOKEN})
    material_port = free_port()
    env = {
        "KUBECONFIG": str(api.kubeconfig(tmp_path / "kubeconfig")),
        "KUBERNETES_SERVICE_HOST": "",
    }
    holder = Service(
        tmp_path / "state",
        tmp_path / "holder.log",
        f"--material-bind=127.0.0.1:{material_port}",
        "--signer-service-account=hello-mtls/hello-mtls-ca-signer",
        env=env,
    )
    try:
        signer = Service(
            None,
            tmp_path / "signer.log",
            f"--root-holder=https://127.0.0.1:{material_port}",
            f"--root-ca={tmp_path / 'prov' / layout.CA}",
            f"--token-file={tmp_path / 'token'}",
            "--audit-head-interval=1",
        )
        try:
            operator = credential_session(tmp_path, "prov")
            keys = [ec.generate_private_key(ec.SECP256R1()) for _ in range(3)]
            assert [_sign(operator, signer.url, k).status_code for k in keys] == [200] * 3

            def records() -> list[str]:
                lines = (tmp_path / "signer.log").read_text().splitlines()
                return [line for line in lines if line.startswith('{"by":')]

            wait_until(
                "the signer's head on its stdout",
                lambda: '"kind":"head"' in records()[-1],
                30,
                0.2,
            )
        finally:
            signer.stop()
    finally:
        holder.stop()
        api.stop()
    trail = tmp_path / "signer-copy" / "audit"
    trail.mkdir(parents=True)
    (trail / "000001.jsonl").write_text("".join(line + "\n" for line in records()))
    last_head = [line for line in records() if '"kind":"head"' in line][-1]
    (trail / "head.json").write_text(last_head + "\n")
    done = ca_cli.run(
        "audit", "verify", "--state", str(trail.parent), "--ca", str(tmp_path / "prov" / layout.CA)
    )
    assert done.returncode == 0, done.stdout + done.stderr
    signed = _records(trail.parent, "--identity", OPERATOR, "--kind", "issuance")
    assert [r["what"]["public_key_sha256"] for r in signed] == [  # type: ignore[index]
        public_key_sha256(k.public_key()) for k in keys
    ]
    # Nothing the signers signed entered the root holder's log.
    assert not _records(tmp_path / "state", "--identity", OPERATOR, "--kind", "issuance")[1:]
