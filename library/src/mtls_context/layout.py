"""The on-disk contract shared by the CA, the operator and the apps.

A certificate directory looks exactly like a Kubernetes Secret volume as the kubelet writes it
(``pkg/volume/util/atomic_writer.go``)::

    DIR/..2026_11_23_00_30_00.123456789/tls.crt   the files of one version
    DIR/..data -> ..2026_11_23_00_30_00.123456789  swapped atomically with rename(2)
    DIR/tls.crt -> ..data/tls.crt                  visible names, created once

Readers resolve ``..data`` once and read every file through that pinned directory, so they never
combine files from two versions.
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
import time
from collections.abc import Iterable, Mapping
from pathlib import Path

__all__ = [
    "CA",
    "CERT",
    "CRL",
    "DATA_LINK",
    "FEDERATED_PREFIX",
    "FEDERATED_SUFFIX",
    "FILES",
    "KEY",
    "POLICY",
    "federated_bundle",
    "federated_bundles",
    "fsync_directory",
    "read_version",
    "version_files",
    "write_version",
]

CERT = "tls.crt"
KEY = "tls.key"
CA = "ca.crt"
POLICY = "tls-policy.json"
CRL = "ca.crl"
"""The CA's CRLs, beside ``ca.crt`` (optional: `mtls_context.revocation`)."""
FILES = (CERT, KEY, CA, POLICY, CRL)
FEDERATED_PREFIX = "federated-"
FEDERATED_SUFFIX = ".crt"
"""``federated-<trust domain>.crt``: one federated trust domain's roots, beside ``ca.crt`` and
never merged into it (`mtls_context.federation`)."""
DATA_LINK = "..data"

_TRUST_DOMAIN = re.compile(r"[a-z0-9._-]+")  # SPIFFE ID spec 2.1

_KEEP_OLD_VERSIONS = 1
_READ_ATTEMPTS = 20


def version_files(
    cert: bytes, key: bytes, ca: bytes, policy: bytes, crl: bytes = b""
) -> dict[str, bytes]:
    """One version's files by name: the chain, its key, the roots, ``tls-policy.json`` and,
    when there are any, the CRLs. What the CA's CLI writes, the operator puts in a Secret and
    the demo writes are this one dict."""
    files = {CERT: cert, KEY: key, CA: ca, POLICY: policy}
    return {**files, CRL: crl} if crl else files


def write_version(directory: Path, files: Mapping[str, bytes]) -> Path:
    """Publish ``files`` as a new version of ``directory``, the way the kubelet does.

    The files go into a fresh timestamped directory, then ``..data`` is swapped to it with one
    ``rename(2)``; visible names are symlinks through ``..data``. Older versions beyond the
    previous one are removed, so a reader that pinned the previous version can still finish.

    Args:
        directory: the certificate directory; created if missing.
        files: file name to content. Names must be plain (no ``/``, not starting with ``.``).

    Returns:
        The path of the new version directory.

    Raises:
        ValueError: if a file name is not a plain name.
    """
    for name in files:
        if not name or "/" in name or name.startswith("."):
            raise ValueError(f"file name {name!r} is not a plain name")
    directory.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y_%m_%d_%H_%M_%S", time.gmtime())
    version = Path(tempfile.mkdtemp(prefix=f"..{stamp}.", dir=directory))
    version.chmod(0o755)
    for name, content in files.items():
        path = version / name
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644 if name != KEY else 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(content)
            f.flush()
            os.fsync(f.fileno())
    fsync_directory(version)

    tmp_link = directory / f"{DATA_LINK}_tmp"
    if tmp_link.is_symlink():
        tmp_link.unlink()
    os.symlink(version.name, tmp_link)
    os.rename(tmp_link, directory / DATA_LINK)

    for name in files:
        visible = directory / name
        if not visible.is_symlink():
            os.symlink(f"{DATA_LINK}/{name}", visible)
    fsync_directory(directory)
    _remove_old_versions(directory, keep={version.name})
    return version


def read_version(directory: Path, names: tuple[str, ...] = FILES) -> dict[str, bytes]:
    """Read ``names`` from one version of ``directory``.

    With a ``..data`` link the link is resolved, every file is read from that version directory,
    and the read is retried if ``..data`` moved meanwhile (the kubelet deletes the old version
    right after a swap). A plain directory (no ``..data``, e.g. files copied by hand) is read as
    it is. Missing files are left out of the result. Every federated bundle file of the version
    (`federated_bundles`) is read too.

    Raises:
        OSError: if ``directory`` cannot be read, or keeps changing during every attempt.
    """
    for _ in range(_READ_ATTEMPTS):
        target = _data_target(directory)
        base = directory if target is None else directory / target
        result = {}
        try:
            present = os.listdir(base)
        except FileNotFoundError:
            present = []
        for name in (*names, *federated_bundles(present).values()):
            try:
                result[name] = (base / name).read_bytes()
            except FileNotFoundError:
                continue
        if _data_target(directory) == target:
            return result
    raise OSError(f"{directory} changed during each of {_READ_ATTEMPTS} attempts to read it")


def federated_bundle(trust_domain: str) -> str:
    """The file (and Secret key) of ``trust_domain``'s roots: ``federated-<trust domain>.crt``.

    Raises:
        ValueError: if ``trust_domain`` is not a SPIFFE trust domain name.
    """
    if not _TRUST_DOMAIN.fullmatch(trust_domain):
        raise ValueError(f"trust domain {trust_domain!r} is not [a-z0-9._-]+")
    return f"{FEDERATED_PREFIX}{trust_domain}{FEDERATED_SUFFIX}"


def federated_bundles(names: Iterable[str]) -> dict[str, str]:
    """Trust domain to file name, for the federated bundle files among ``names``."""
    found = {}
    for name in names:
        if name.startswith(FEDERATED_PREFIX) and name.endswith(FEDERATED_SUFFIX):
            domain = name[len(FEDERATED_PREFIX) : -len(FEDERATED_SUFFIX)]
            if _TRUST_DOMAIN.fullmatch(domain):
                found[domain] = name
    return found


def _data_target(directory: Path) -> str | None:
    try:
        return os.readlink(directory / DATA_LINK)
    except OSError:  # no ..data link (ENOENT) or not a link (EINVAL): a plain directory
        return None


def _remove_old_versions(directory: Path, keep: set[str]) -> None:
    versions = sorted(
        (p for p in directory.iterdir() if p.name.startswith("..") and p.name != DATA_LINK),
        key=lambda p: p.stat(follow_symlinks=False).st_mtime_ns,
    )
    stale = [p for p in versions if p.name not in keep and p.is_dir() and not p.is_symlink()]
    # Keep the previous version: a reader that resolved ..data just before the swap reads from it.
    for path in stale[: max(0, len(stale) - _KEEP_OLD_VERSIONS)]:
        shutil.rmtree(path, ignore_errors=True)


def fsync_directory(directory: Path) -> None:
    """Make the names in ``directory`` durable (a file created or renamed there): `write_version`
    does it for each version, the CA for its audit log and its revocation index."""
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
