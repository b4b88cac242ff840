"""``hello-mtls revoke`` and ``rotate-root`` on a fake API: the ``hello-mtls-ca`` command they run
in the root holder's pod, what they print, their errors and exit status."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest

from mtls_cli.cli import main
from mtls_cli.cluster import ApiError, Executed
from support.api_paths import NS, Paths, deployment

CA_POD = "hello-mtls-ca-5d8c-x2x7q"
STATE = "/var/lib/hello-mtls-ca/state"
REVOKED = {
    "revoked": [{"serial": "5f0c1e", "reason": "keyCompromise", "identity": "web.shop.svc"}],
    "crl_number": 7,
}


def installed(ready: bool = True) -> Paths:
    api = Paths()
    ca = deployment("hello-mtls-ca", 1)
    ca["spec"]["template"]["spec"]["containers"][0]["args"] = [
        "hello-mtls-ca",
        "serve",
        f"--state={STATE}",
    ]
    api.put(f"/apis/apps/v1/namespaces/{NS}/deployments/hello-mtls-ca", ca)
    api.put(
        f"/api/v1/namespaces/{NS}/pods/{CA_POD}",
        {
            "metadata": {
                "name": CA_POD,
                "namespace": NS,
                "labels": {"app.kubernetes.io/name": "hello-mtls-ca"},
            },
            "status": {"conditions": [{"type": "Ready", "status": str(ready)}]},
        },
    )
    return api


def run(api: Paths, *argv: str) -> tuple[int, str]:
    out = io.StringIO()
    code = main(list(argv), api=lambda _: api, read=lambda *_: pytest.fail("no CA read"), out=out)
    return code, out.getvalue()


@pytest.mark.parametrize(
    ("selector", "passed"),
    [
        (["--serial", "5f0c1e"], ["--serial", "5f0c1e"]),
        (["--identity", "web.shop.svc"], ["--identity", "web.shop.svc"]),
        (["--namespace", "shop"], ["--namespace", "shop"]),
    ],
)
def test_revoke_runs_the_ca_command_in_the_root_holder(
    selector: list[str], passed: list[str]
) -> None:
    api = installed()
    api.answer = Executed(0, json.dumps(REVOKED), "")
    code, out = run(api, "revoke", *selector, "--reason", "keyCompromise")
    assert code == 0
    assert api.execs == [
        (
            NS,
            CA_POD,
            ["hello-mtls-ca", "revoke", "--state", STATE, *passed, "--reason", "keyCompromise"],
            None,
        )
    ]
    assert out.splitlines()[0] == "revoked serial 5f0c1e (web.shop.svc): keyCompromise"
    assert out.splitlines()[1].startswith("CRL number 7: servers refuse it")


def test_revoke_cert_sends_the_local_file_on_stdin(tmp_path: Path) -> None:
    (tmp_path / "web").mkdir()
    (tmp_path / "web" / "tls.crt").write_bytes(b"-----BEGIN CERTIFICATE-----\n...")
    api = installed()
    api.answer = Executed(0, json.dumps(REVOKED), "")
    code, out = run(api, "revoke", "--cert", str(tmp_path / "web"), "-o", "json")
    assert code == 0 and json.loads(out) == REVOKED
    [(_, _, command, stdin)] = api.execs
    assert command[-4:] == ["--cert", "-", "--reason", "unspecified"]
    assert stdin == b"-----BEGIN CERTIFICATE-----\n..."


def test_revoke_cert_of_a_missing_file_says_so(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    api = installed()
    code, _ = run(api, "revoke", "--cert", str(tmp_path / "nothing.pem"))
    assert code == 1 and api.execs == []
    assert f"cannot read {tmp_path / 'nothing.pem'}: No such file" in capsys.readouterr().err


def test_revoke_takes_one_selector(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        run(installed(), "revoke", "--serial", "1", "--namespace", "shop")
    assert exited.value.code == 2
    assert "not allowed with argument" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        run(installed(), "revoke")


@pytest.mark.parametrize(
    ("status", "said", "code"),
    [
        (1, "hello-mtls-ca: no unexpired certificate of web.shop.svc in the CA's index", 1),
        (2, "hello-mtls-ca revoke: error: argument --reason: invalid choice: 'leaked'", 2),
    ],
)
def test_revoke_relays_what_the_ca_refused(
    status: int, said: str, code: int, capsys: pytest.CaptureFixture[str]
) -> None:
    api = installed()
    api.answer = Executed(status, "", f"usage: ...\n{said}\n")
    assert run(api, "revoke", "--identity", "web.shop.svc")[0] == code
    assert capsys.readouterr().err == f"hello-mtls: the CA refused: {said}\n"


def test_revoke_without_a_ready_ca_pod(capsys: pytest.CaptureFixture[str]) -> None:
    api = installed(ready=False)
    assert run(api, "revoke", "--serial", "1")[0] == 1
    assert "no ready pod of Deployment hello-mtls/hello-mtls-ca" in capsys.readouterr().err


class Forbidden(Paths):
    def exec(self, *_: object, **__: object) -> Executed:
        raise ApiError("exec in hello-mtls/x: (403) Handshake status 403 Forbidden")


def test_revoke_without_the_admin_role_names_it(capsys: pytest.CaptureFixture[str]) -> None:
    api = Forbidden()
    api.objects = installed().objects
    assert run(api, "revoke", "--serial", "1")[0] == 1
    assert "this takes the Role hello-mtls-ca-admin in hello-mtls" in capsys.readouterr().err


def test_rotate_root_starts_from_idle_only() -> None:
    api = installed()
    api.answer = Executed(0, json.dumps({"phase": "both-trusted"}), "advancing ...\n")
    code, out = run(api, "rotate-root")
    assert code == 0
    assert api.execs[0][2] == ["hello-mtls-ca", "rotate-root", "--state", STATE, "--from", "idle"]
    assert out.startswith("root rotation started: phase both-trusted;")


def test_rotate_root_already_under_way(capsys: pytest.CaptureFixture[str]) -> None:
    api = installed()
    said = "hello-mtls-ca: root rotation is in phase 'new-signing', not 'idle'"
    api.answer = Executed(1, "", said)
    assert run(api, "rotate-root")[0] == 1
    assert capsys.readouterr().err == f"hello-mtls: the CA refused: {said}\n"
