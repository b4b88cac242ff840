"""The TLS library as its own distribution: a wheel with only the standard library behind it,
and the distribution the rest of hello-mtls depends on."""

from __future__ import annotations

import importlib.metadata
import subprocess
import sys
import zipfile
from pathlib import Path

from support.certdirs import Issuer, publish

ROOT = Path(__file__).parents[2]
PROJECT = ROOT / "library"

CHECK = """
import sys
from pathlib import Path
import mtls_context, mtls_context.gunicorn_hooks
from mtls_context import ReloadingServerContext, client_context
server = ReloadingServerContext(Path(sys.argv[1]))
assert client_context(Path(sys.argv[1])).certificate.identity == "lib.test"
third_party = sorted(
    name for name, module in sys.modules.items()
    if "site-packages" in str(getattr(module, "__file__", "") or "")
)
assert not third_party, third_party
try:
    import mtls_context.requests_adapter
except ModuleNotFoundError as e:
    print("adapter needs", e.name)
"""


def test_the_wheel_installs_and_runs_on_the_standard_library_alone(tmp_path: Path) -> None:
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--quiet",
            "--no-deps",
            "--no-build-isolation",
            "--wheel-dir",
            str(tmp_path / "dist"),
            str(PROJECT),
        ],
        check=True,
        capture_output=True,
    )
    (wheel,) = (tmp_path / "dist").glob("hello_mtls_context-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    sources = sorted((PROJECT / "src" / "mtls_context").glob("*.py"))
    assert sorted(n for n in names if ".dist-info/" not in n) == sorted(
        [f"mtls_context/{source.name}" for source in sources] + ["mtls_context/py.typed"]
    )
    target = tmp_path / "installed"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--quiet",
            "--no-deps",
            "--target",
            str(target),
            str(wheel),
        ],
        check=True,
        capture_output=True,
    )
    issuer = Issuer()
    publish(tmp_path / "certs", issuer.issue("lib.test"), [issuer])

    done = subprocess.run(
        [sys.executable, "-S", "-c", CHECK, str(tmp_path / "certs")],
        env={"PYTHONPATH": str(target)},
        capture_output=True,
        text=True,
        cwd=tmp_path,
    )

    assert done.returncode == 0, done.stderr
    assert done.stdout == "adapter needs requests\n"


def test_hello_mtls_depends_on_the_library_and_does_not_carry_it() -> None:
    """One distribution owns ``mtls_context``: hello-mtls-context, which hello-mtls requires."""
    requires = importlib.metadata.requires("hello-mtls") or []

    assert "hello-mtls-context==0.1.0" in requires
    assert importlib.metadata.version("hello-mtls-context") == "0.1.0"
    # An editable install of the src layout finds the same distribution twice: its dist-info in
    # site-packages and the egg-info setuptools leaves beside the source (library/src is on the
    # path). What counts is that no other distribution carries the package.
    owners = importlib.metadata.packages_distributions()["mtls_context"]
    assert set(owners) == {"hello-mtls-context"}
