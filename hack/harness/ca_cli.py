"""The real ``hello-mtls-ca`` command line: the one way every test runs it (``serve`` included:
`harness.ca_service`), and certificates from our own CA."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

from cryptography import x509

from harness.processes import BIN
from mtls_context.layout import CERT

CLI = [str(BIN / "hello-mtls-ca")]


def run(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    """Run ``hello-mtls-ca ARGS`` (``stdin`` on its standard input) and return how it ended (for
    the tests of its refusals)."""
    return subprocess.run(
        [*CLI, *args], input=stdin, capture_output=True, text=True, timeout=60, check=False
    )


def ca(*args: str) -> str:
    """Run ``hello-mtls-ca ARGS``; returns stdout, raises with stderr on failure."""
    done = run(*args)
    if done.returncode != 0:
        raise RuntimeError(f"hello-mtls-ca {' '.join(args)}: {done.stderr.strip()}")
    return done.stdout


def init(state: Path, *args: str) -> dict[str, object]:
    return dict(json.loads(ca("init", f"--state={state}", "--min-duration=30s", *args)))


def issue(state: Path, out: Path, name: str, *sans: str, duration: str = "1h") -> str:
    """Issue a leaf into ``out`` (kubelet-style); returns its serial as lowercase hex."""
    ca(
        "issue",
        f"--state={state}",
        f"--name={name}",
        *(f"--san={s}" for s in sans),
        f"--duration={duration}",
        f"--out={out}",
    )
    return serial(out)


def rotate_root(state: Path, phase: str) -> str:
    """Advance the root rotation from ``phase``; returns the new phase."""
    return str(json.loads(ca("rotate-root", f"--state={state}", f"--from={phase}"))["phase"])


def serial(cert_dir: Path) -> str:
    """The serial of the leaf in ``cert_dir``, read with cryptography."""
    leaf = x509.load_pem_x509_certificate((cert_dir / CERT).read_bytes())
    return format(leaf.serial_number, "x")
