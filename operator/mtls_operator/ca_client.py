"""The CA's HTTPS API, called with the operator's provisioner credential.

``GET /crl`` is read again whenever the CA's ``crl_number`` moves (a revocation, the daily
re-signing), so every Secret gets the CA's current ``ca.crl``; with CA signer pods, from the root
holder when its CRLs are newer than the signers' (`CAClient._root_crl_number`).

The credential is a certificate directory the CA keeps fresh in a Secret the operator mounts;
`mtls_context.requests_adapter.session` reloads it when the kubelet swaps the files, and trusts
only its ``ca.crt`` for the CA's own serving certificate.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import requests

from mtls_context import layout, requests_adapter
from mtls_contract.ca_api import SignAnswer, parse_sign_answer
from mtls_operator.ca_view import CAView, view_from_status
from mtls_operator.ports import CARefused, CAUnavailable

__all__ = ["CAClient"]


class CAClient:
    """``POST /sign``, ``GET /status`` + ``GET /roots`` and ``POST /rotate-root``; with CA
    signer pods, the material each one serves (`signers_behind`)."""

    def __init__(
        self,
        url: str,
        provisioner_dir: str | os.PathLike[str],
        *,
        timeout: float = 10.0,
        root_url: str = "",
        signers: Callable[[], list[str]] | None = None,
    ) -> None:
        self._url = url.rstrip("/")
        # CA signer pods serve ``url``; only the root holder rotates.
        self._root_url = (root_url or url).rstrip("/")
        self._signers = signers
        """``HOST:PORT`` of every ready signer (None: no signers)."""
        self._dir = provisioner_dir
        self._timeout = timeout
        self._session: requests.Session | None = None
        self._roots: tuple[str, bytes] | None = None
        self._crl: tuple[object, bytes] | None = None

    def sign(self, request: Mapping[str, Any]) -> SignAnswer:
        """Have the CA sign a CSR (`claims.Claim.sign_request`).

        Raises:
            CARefused: the CA said no (4xx); its error message is kept.
            CAUnavailable: it could not be reached, or failed (5xx).
        """
        document = self._call("POST", "/sign", json=dict(request))
        try:
            return parse_sign_answer(document)
        except ValueError as error:
            raise CAUnavailable(str(error)) from None

    def status(self) -> CAView:
        """What the CA hands out now; the roots and the CRLs are fetched again only when they
        changed (a CA older than ``crl_number`` serves no CRL)."""
        status = self._call("GET", "/status")
        wanted = str(status.get("bundle_sha256", ""))
        if self._roots is None or self._roots[0] != wanted:
            self._roots = (wanted, self._raw("GET", "/roots").content)
        number, base = status.get("crl_number"), self._url
        newer = self._root_crl_number()
        if newer is not None and (not isinstance(number, int) or newer > number):
            number, base = newer, self._root_url
        held = self._crl[0] if self._crl is not None else None
        if isinstance(held, int) and isinstance(number, int) and number < held:
            number = held  # the root holder away again: keep its newer CRLs, never go back
        if self._crl is None or self._crl[0] != number:
            crl = self._raw("GET", "/crl", base=base).content if number is not None else b""
            self._crl = (number, crl)
        try:
            return view_from_status(status, self._roots[1], self._crl[1])
        except ValueError as error:
            self._roots = self._crl = None
            raise CAUnavailable(str(error)) from None

    def _root_crl_number(self) -> int | None:
        """With CA signer pods, the root holder's ``crl_number``: a revocation reaches its CRLs
        at once and the signers' only at their next material fetch (30 s), so its CRLs, when
        newer, go into the Secrets without that wait. None without signers, or when the root
        holder does not answer (the signers' CRLs then serve)."""
        if self._root_url == self._url:
            return None
        try:
            number = self._call("GET", "/status", base=self._root_url).get("crl_number")
        except (CAUnavailable, CARefused):
            return None
        return number if isinstance(number, int) and not isinstance(number, bool) else None

    def rotate_root(self, from_phase: str) -> None:
        """Advance the root rotation one step from ``from_phase``; a 409 (already moved) is fine."""
        try:
            self._call("POST", "/rotate-root", json={"from": from_phase}, base=self._root_url)
        except CARefused as error:
            if "409" not in str(error):
                raise

    def signers_behind(self) -> list[str]:
        """The signers (``HOST:PORT``, each asked at its own address: its serving certificate
        names its pod IP) whose ``GET /status`` does not give the root holder's
        ``material_sha256``, or gives none; empty without signers.

        Raises:
            CAUnavailable: if the root holder or the list of signers cannot be read.
        """
        if self._signers is None:
            return []
        wanted = self._call("GET", "/status", base=self._root_url).get("material_sha256")
        if not wanted:
            raise CAUnavailable("the root holder's status names no material_sha256")
        try:
            signers = self._signers()
        except OSError as error:
            raise CAUnavailable(str(error)) from None
        behind = []
        for address in signers:
            try:
                held = self._call("GET", "/status", base=f"https://{address}")
            except (CAUnavailable, CARefused):
                held = {}
            if held.get("material_sha256") != wanted:
                behind.append(address)
        return behind

    def credential(self) -> dict[str, bytes]:
        """The provisioner credential's files as the kubelet has them now (one version)."""
        return layout.read_version(Path(self._dir))

    def _call(self, method: str, path: str, *, base: str = "", **kwargs: Any) -> dict[str, Any]:
        response = self._raw(method, path, base=base, **kwargs)
        try:
            document = response.json()
        except ValueError:
            raise CAUnavailable(f"{method} {path}: the answer is not JSON") from None
        if not isinstance(document, dict):
            raise CAUnavailable(f"{method} {path}: the answer is not a JSON object")
        return document

    def _raw(self, method: str, path: str, *, base: str = "", **kwargs: Any) -> requests.Response:
        try:
            if self._session is None:
                self._session = requests_adapter.session(self._dir)
            response = self._session.request(
                method, (base or self._url) + path, timeout=self._timeout, **kwargs
            )
        except (requests.RequestException, OSError, ValueError) as error:
            raise CAUnavailable(f"{method} {path}: {error}") from None
        if response.status_code >= 500:
            raise CAUnavailable(f"{method} {path}: HTTP {response.status_code}")
        if response.status_code >= 400:
            raise CARefused(
                f"HTTP {response.status_code}: {_error(response)}", response.status_code
            )
        return response


def _error(response: requests.Response) -> str:
    try:
        return str(response.json()["error"])
    except (ValueError, KeyError, TypeError):
        return response.text[:200]
