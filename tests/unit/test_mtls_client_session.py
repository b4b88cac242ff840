from pathlib import Path

import pytest
import requests

from mtls_context import requests_adapter
from support.certdirs import Issuer, publish


@pytest.fixture
def session(tmp_path: Path) -> requests.Session:
    issuer = Issuer()
    publish(tmp_path, issuer.issue("client.test"), [issuer])
    return requests_adapter.session(tmp_path)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"verify": False}, "verify=False is not allowed"),
        ({"verify": "/etc/ssl/certs/ca-certificates.crt"}, "verify='/etc/ssl/certs/"),
        ({"cert": ("/tmp/c.pem", "/tmp/k.pem")}, "cert= is not allowed"),
    ],
)
def test_settings_that_would_bypass_the_bundle_are_refused(
    session: requests.Session, kwargs: dict[str, object], message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        session.get("https://127.0.0.1:9/", **kwargs)  # type: ignore[arg-type]


def test_plain_http_is_refused(session: requests.Session) -> None:
    with pytest.raises(ValueError, match="plain HTTP refused"):
        session.get("http://127.0.0.1:9/")


def test_proxies_are_refused(session: requests.Session) -> None:
    with pytest.raises(ValueError, match="proxy http://127.0.0.1:9 refused"):
        session.get("https://127.0.0.1:9/", proxies={"https": "http://127.0.0.1:9"})


def test_the_environment_is_not_consulted(session: requests.Session) -> None:
    assert session.trust_env is False


def test_a_directory_without_certificates_is_a_clear_error(tmp_path: Path) -> None:
    (tmp_path / "ca.crt").write_text("")

    with pytest.raises(ValueError, match="missing or empty: tls.crt, tls.key, ca.crt"):
        requests_adapter.session(tmp_path)
