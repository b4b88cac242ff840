"""An organisation's offline CA made with a tool we did not write: ``openssl req -x509`` makes
its root and ``openssl ca`` signs for it (the CA's upstream-root tests, integration and e2e;
docs/ca.md, "Under your organisation's root")."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from mtls_context import layout

__all__ = ["OrgCA", "openssl_verify"]

_CONFIG = """\
[ ca ]
default_ca = org
[ org ]
dir = {dir}
database = $dir/index.txt
new_certs_dir = $dir/issued
certificate = $dir/root.crt
private_key = $dir/root.key
serial = $dir/serial
default_md = sha256
default_days = 30
policy = anything
unique_subject = no
[ anything ]
organizationName = optional
commonName = supplied
[ signing_ca ]
basicConstraints = critical,CA:TRUE,pathlen:0
keyUsage = critical,keyCertSign,cRLSign
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
[ issuing_ca ]
basicConstraints = critical,CA:TRUE,pathlen:1
keyUsage = critical,keyCertSign,cRLSign
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
[ not_a_ca ]
basicConstraints = critical,CA:FALSE
"""


class OrgCA:
    """An organisation's offline CA, all in ``openssl``."""

    def __init__(self, directory: Path, name: str, *, name_constraints: str = "") -> None:
        """``name_constraints``: the root's nameConstraints extension in ``openssl`` syntax
        (e.g. ``permitted;URI:cluster.local``), none when empty."""
        self.dir = directory
        (directory / "issued").mkdir(parents=True)
        (directory / "index.txt").write_text("")
        (directory / "serial").write_text("1000\n")
        self.config = directory / "ca.cnf"
        self.config.write_text(_CONFIG.format(dir=directory))
        self.root = directory / "root.crt"
        _openssl(
            "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
            "-keyout", str(directory / "root.key"), "-out", str(self.root), "-days", "365",
            "-subj", f"/O=Example Corp/CN={name}",
            "-addext", "basicConstraints=critical,CA:TRUE",
            "-addext", "keyUsage=critical,keyCertSign,cRLSign",
            *(["-addext", f"nameConstraints=critical,{name_constraints}"] if name_constraints
              else []),
        )  # fmt: skip

    def sign(self, csr: Path, out: Path, extensions: str = "signing_ca") -> Path:
        _openssl(
            "ca", "-batch", "-notext", "-config", str(self.config), "-extensions", extensions,
            "-in", str(csr), "-out", str(out),
        )  # fmt: skip
        return out

    def issuing_ca(self, out: Path) -> Path:
        """A CA of the organisation under its root, with key and chain, as a TLS Secret has it
        (``tls.crt``, ``tls.key``, ``ca.crt``)."""
        out.mkdir()
        _openssl(
            "req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
            "-keyout", str(out / layout.KEY), "-out", str(out / "req.csr"),
            "-subj", "/O=Example Corp/CN=Example Issuing CA",
        )  # fmt: skip
        self.sign(out / "req.csr", out / layout.CERT, "issuing_ca")
        shutil.copy(self.root, out / layout.CA)
        (out / "req.csr").unlink()
        return out


def _openssl(*args: str) -> str:
    done = subprocess.run(["openssl", *args], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, f"openssl {' '.join(args)}: {done.stderr}"
    return done.stdout


def openssl_verify(root: Path, chain_pem: str, tmp_path: Path) -> str:
    """``openssl verify`` of the leaf of ``chain_pem`` against ``root`` alone."""
    certificates = x509.load_pem_x509_certificates(chain_pem.encode())
    leaf, rest = tmp_path / "leaf.pem", tmp_path / "untrusted.pem"
    leaf.write_text(chain_pem.split("-----END CERTIFICATE-----")[0] + "-----END CERTIFICATE-----\n")
    rest.write_bytes(b"".join(c.public_bytes(serialization.Encoding.PEM) for c in certificates[1:]))
    return _openssl("verify", "-CAfile", str(root), "-untrusted", str(rest), str(leaf)).strip()
