"""``hello-mtls-ca`` in-process: init, issue, provisioner, status, rotate-root and their errors."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from cryptography import x509

from mtls_ca.cli import main
from mtls_context import layout


@pytest.fixture()
def state_dir(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> Path:
    assert main(["init", "--state", str(tmp_path / "ca"), "--profile", "modern"]) == 0
    capsys.readouterr()
    return tmp_path / "ca"


def _status(capsys: pytest.CaptureFixture[str], state_dir: Path) -> dict[str, object]:
    assert main(["status", "--state", str(state_dir)]) == 0
    result: dict[str, object] = json.loads(capsys.readouterr().out)
    return result


def test_init_prints_status_and_refuses_twice(
    state_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    status = _status(capsys, state_dir)
    assert status["phase"] == "idle"
    assert status["tls_policy"] == {"profile": "modern", "min_version": "TLSv1.3", "ciphers": ""}
    assert main(["init", "--state", str(state_dir)]) == 1
    err = capsys.readouterr().err
    assert (
        err == f"hello-mtls-ca: error: a CA already exists in {state_dir}; refusing to replace it\n"
    )
    assert _status(capsys, state_dir) == status


def test_issue_writes_the_secret_layout(
    state_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "web"
    code = main(
        [
            "issue",
            "--state",
            str(state_dir),
            "--name",
            "web.demo",
            "--san",
            "10.0.0.7",
            "--allowed-ip",
            "10.0.0.0/24",
            "--namespace",
            "demo",
            "--service-account",
            "web",
            "--duration",
            "1h",
            "--out",
            str(out),
        ]
    )
    assert code == 0
    assert "issued serial" in capsys.readouterr().err
    assert os.readlink(out / layout.DATA_LINK).startswith("..")
    files = layout.read_version(out)
    assert set(files) == set(layout.FILES)
    assert json.loads(files[layout.POLICY])["profile"] == "modern"
    chain = x509.load_pem_x509_certificates(files[layout.CERT])
    assert len(chain) == 2
    san = chain[0].extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == ["web.demo"]
    assert [str(a) for a in san.get_values_for_type(x509.IPAddress)] == ["10.0.0.7"]
    assert san.get_values_for_type(x509.UniformResourceIdentifier) == [
        "spiffe://cluster.local/ns/demo/sa/web"
    ]
    assert (out / layout.KEY).resolve().stat().st_mode & 0o777 == 0o600
    first_version = os.readlink(out / layout.DATA_LINK)
    assert main(["issue", "--state", str(state_dir), "--name", "web.demo", "--out", str(out)]) == 0
    assert os.readlink(out / layout.DATA_LINK) != first_version


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ["--name", "web.other", "--namespace", "demo"],
            "name 'web.other' is not under namespace 'demo'",
        ),
        (["--name", "*.demo"], "wildcard name '*.demo' is not allowed"),
        # Issue 13: both were issued.
        (
            ["--name", "google.com", "--namespace", "com"],
            "name 'google.com' is an internet name (public suffix 'com'); "
            "a namespace cannot claim it",
        ),
        (
            ["--name", "web.shop.svc", "--san", "10.96.0.1", "--namespace", "shop"],
            "IP address '10.96.0.1' is not allowed for namespace 'shop'",
        ),
        (
            ["--name", "web.shop.svc", "--san", "127.0.0.1", "--namespace", "shop"]
            + ["--allowed-ip", "0.0.0.0/0"],
            "IP address '127.0.0.1' is not allowed for namespace 'shop'",
        ),
        (
            ["--name", "web.demo", "--namespace", "demo", "--allowed-ip", "10.1.2.3/16"],
            "10.1.2.3/16 has host bits set",
        ),
        (["--name", "web.demo", "--duration", "1m"], "duration 1m is below the CA minimum of 5m"),
        (
            ["--name", "web.demo", "--duration", "soon"],
            "duration 'soon' is not like 90m, 24h, 1h30m or 30s",
        ),
    ],
)
def test_issue_refuses(
    state_dir: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    args: list[str],
    message: str,
) -> None:
    out = tmp_path / "out"
    assert main(["issue", "--state", str(state_dir), *args, "--out", str(out)]) == 1
    assert capsys.readouterr().err == f"hello-mtls-ca: error: {message}\n"
    assert not out.exists()


def test_commands_without_state_fail_in_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    missing = tmp_path / "nowhere"
    assert main(["status", "--state", str(missing)]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"no CA state in {missing}" in err


def test_provisioner_credential(
    state_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "prov"
    assert (
        main(["provisioner", "--state", str(state_dir), "--name", "operator", "--out", str(out)])
        == 0
    )
    leaf = x509.load_pem_x509_certificates(layout.read_version(out)[layout.CERT])[0]
    san = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.UniformResourceIdentifier) == [
        "spiffe://cluster.local/hello-mtls/provisioner/operator"
    ]
    assert main(["provisioner", "--state", str(state_dir), "--name", "Op", "--out", str(out)]) == 1
    assert "provisioner name 'Op' is not a lower-case DNS label" in capsys.readouterr().err
    admin = tmp_path / "admin"
    command = ["provisioner", "--state", str(state_dir), "--role", "admin", "--name", "alice"]
    assert main([*command, "--out", str(admin)]) == 0
    leaf = x509.load_pem_x509_certificates(layout.read_version(admin)[layout.CERT])[0]
    san = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.UniformResourceIdentifier) == [
        "spiffe://cluster.local/hello-mtls/admin/alice"
    ]


def test_rotate_root_steps_and_guards(state_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    before = _status(capsys, state_dir)
    phases = []
    for _ in range(3):
        assert main(["rotate-root", "--state", str(state_dir)]) == 0
        phases.append(json.loads(capsys.readouterr().out)["phase"])
    assert phases == ["both-trusted", "new-signing", "idle"]
    after = _status(capsys, state_dir)
    assert after["roots"] != before["roots"] and len(after["roots"]) == 1  # type: ignore[arg-type]
    assert main(["rotate-root", "--state", str(state_dir), "--from", "new-signing"]) == 1
    assert capsys.readouterr().err.endswith(
        "error: root rotation is in phase 'idle', not 'new-signing'\n"
    )
    assert _status(capsys, state_dir) == after


def test_serve_refuses_bad_extra_allowed_before_starting(
    state_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["serve", "--state", str(state_dir), "--extra-allowed", "[]"]) == 1
    assert capsys.readouterr().err == (
        "hello-mtls-ca: error: extra allowed names must be a JSON object of namespace to a list "
        "of names\n"
    )


@pytest.mark.parametrize(
    ("flags", "error"),
    [
        (
            ["--bind", "127.0.0.1:8443", "--sign-bind", "0.0.0.0:8443"],
            "hello-mtls-ca: error: --sign-bind 0.0.0.0:8443 needs another port than "
            "127.0.0.1:8443\n",
        ),
        (["--sign-workers", "0"], "argument --sign-workers: 0 is below 1"),
        (["--request-timeout", "nan"], "argument --request-timeout: nan is not a positive"),
    ],
)
def test_serve_refuses_bad_ports_workers_and_deadlines_before_starting(
    state_dir: Path, capsys: pytest.CaptureFixture[str], flags: list[str], error: str
) -> None:
    try:
        status = main(["serve", "--state", str(state_dir), *flags])
    except SystemExit as exit_:  # argparse
        status = int(str(exit_.code))
    assert status in (1, 2)
    assert error in capsys.readouterr().err
