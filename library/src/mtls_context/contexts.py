"""Build validated server and client contexts from one version of a certificate directory."""

from __future__ import annotations

import contextlib
import enum
import os
import ssl
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal

from mtls_context import identity as _identity
from mtls_context import revocation as _revocation
from mtls_context.federation import Federation
from mtls_context.layout import CA, CERT, CRL, KEY, POLICY, read_version
from mtls_context.tls_policy import DEFAULT_POLICY, TLSPolicy

__all__ = [
    "ALPN",
    "Certificate",
    "MTLSContext",
    "Side",
    "build_context",
    "client_context",
    "server_context",
]


ALPN = ("http/1.1",)
"""What a context offers by default: HTTP/1.1 (give ``alpn`` to offer h2 too)."""

Verify = Literal["required", "optional"]
"""Whether a server context requires a client certificate or only verifies one if given."""


class Side(enum.Enum):
    """Which end of the connection a context is for."""

    SERVER = "server"
    CLIENT = "client"


@dataclass(frozen=True)
class Certificate:
    """The leaf certificate a context presents."""

    serial: str
    not_after: datetime
    identity: str


class MTLSContext(ssl.SSLContext):
    """An ``ssl.SSLContext`` that also says which certificate and policy it was built with."""

    certificate: Certificate
    policy: TLSPolicy
    files: Mapping[str, bytes]
    """The files of the version it was built from (for stacks that take PEM, such as gRPC)."""
    crl: _revocation.CRLDecision
    """Whether it enforces ``ca.crl`` (peers it lists are refused), and if not why."""
    federation: Federation | None
    """The peers of other trust domains it accepts, or the server identity it pins (None: no
    ``peers`` given, our own CA only)."""


def server_context(
    directory: Path, *, verify: Verify = "required", peers: Sequence[str] = ()
) -> MTLSContext:
    """A server context from one version of ``directory``: client certificates ``verify``.

    Raises:
        ValueError: if the files are missing, inconsistent or invalid (the message says which).
        OSError: if the directory cannot be read.
    """
    return build_context(read_version(directory), Side.SERVER, verify=verify, peers=peers)


def client_context(directory: Path, *, peers: Sequence[str] = ()) -> MTLSContext:
    """A client context from one version of ``directory``: verifies the server and its name
    (with ``peers``: its SPIFFE ID instead of its name).

    Raises:
        ValueError: if the files are missing, inconsistent or invalid (the message says which).
        OSError: if the directory cannot be read.
    """
    return build_context(read_version(directory), Side.CLIENT, peers=peers)


def build_context(
    files: Mapping[str, bytes],
    side: Side,
    *,
    verify: Verify = "required",
    alpn: Sequence[str] = ALPN,
    peers: Sequence[str] = (),
) -> MTLSContext:
    """Validate ``files`` (as ``read_version`` returns them) and build a brand-new context.

    A server context requires a client certificate that chains to ``ca.crt`` (``verify``
    ``"optional"``: verifies one if the client sends it). It issues one TLS 1.3 session ticket
    per connection, with the key of this context alone, so a new context (a reload) voids every
    earlier ticket.

    Validation is a TLS handshake over memory between two throwaway contexts made from the same
    files: OpenSSL then checks that the key matches the certificate, that the chain in
    ``tls.crt`` verifies against ``ca.crt`` for this side's purpose, and that no certificate is
    expired or not yet valid. The returned context has never been used.

    With a ``ca.crl`` that `mtls_context.revocation.decide` accepts, the context refuses a peer
    whose certificate the CRL lists (OpenSSL's ``VERIFY_CRL_CHECK_LEAF``); one it does not
    accept is left out, and ``context.crl.stale`` says why.

    ``peers`` are SPIFFE IDs and ``/*`` patterns (`mtls_context.federation`). A server accepts,
    besides the clients of our own CA, the clients of a federated trust domain that match one,
    each checked against its own trust domain's ``federated-<trust domain>.crt`` only. A client
    requires the server to present a SPIFFE ID that matches one, instead of the host name
    check (the server may be of a federated trust domain named by the patterns).

    Raises:
        ValueError: if a file is missing, the policy or a pattern is invalid, or validation
            fails.
    """
    missing = [name for name in (CERT, KEY, CA) if not files.get(name)]
    if missing:
        raise ValueError(f"missing or empty: {', '.join(missing)}")
    policy = TLSPolicy.from_json(files[POLICY]) if POLICY in files else DEFAULT_POLICY
    crl = _revocation.decide(files.get(CRL), files[CERT])
    federation = None
    if peers:
        federation = Federation.from_files(files, CA, peers, pinned=side is Side.CLIENT)
    try:
        certificate = _validate(files, side, policy, crl.pem)
        context = _new_context(files, side, policy, crl.pem)
        if side is Side.SERVER and verify == "optional":
            context.verify_mode = ssl.CERT_OPTIONAL
        context.set_alpn_protocols(list(alpn))
        if federation is not None:
            _federate(context, federation)
    except ssl.SSLError as e:
        raise ValueError(_describe(e)) from None
    context.certificate = certificate
    context.policy = policy
    context.files = dict(files)
    context.crl = crl
    context.federation = federation
    return context


def _federate(context: MTLSContext, federation: Federation) -> None:
    """Trust the named federated bundles too, each only for its own trust domain."""
    roots = federation.trusted_pem()
    if roots:
        context.load_verify_locations(cadata=roots)
    if federation.pinned:
        context.check_hostname = False  # the SPIFFE ID is checked instead, in the handshake
    try:
        federation.install(context)
    except RuntimeError as e:
        raise ValueError(f"cannot check peers of other trust domains: {e}") from None


def _new_context(
    files: Mapping[str, bytes], side: Side, policy: TLSPolicy, crl: bytes | None
) -> MTLSContext:
    if side is Side.SERVER:
        context = MTLSContext(ssl.PROTOCOL_TLS_SERVER)
        context.verify_mode = ssl.CERT_REQUIRED
        # One TLS 1.3 session ticket per connection, not OpenSSL's two: a client resumes with
        # one, and each ticket costs both sides a copy of the session with its certificates.
        context.num_tickets = 1
    else:
        context = MTLSContext(ssl.PROTOCOL_TLS_CLIENT)  # CERT_REQUIRED and check_hostname
        context.hostname_checks_common_name = False
    # Only our bundle: a fresh SSLContext has no default roots, and we never load any.
    context.load_verify_locations(cadata=files[CA].decode("ascii", errors="replace"))
    if crl is not None:
        # cadata takes certificates only; a file is read for CRLs too (X509_load_cert_crl_file).
        with _pem_path(crl) as path:
            context.load_verify_locations(cafile=path)
        context.verify_flags |= ssl.VERIFY_CRL_CHECK_LEAF
    with _pem_path(files[CERT] + b"\n" + files[KEY]) as chain_and_key:
        context.load_cert_chain(chain_and_key)
    policy.apply(context)
    return context


def _validate(
    files: Mapping[str, bytes], side: Side, policy: TLSPolicy, crl: bytes | None
) -> Certificate:
    server = _new_context(files, Side.SERVER, policy, crl)
    client = _new_context(files, Side.CLIENT, policy, crl)
    client.check_hostname = False  # no name to check against in a self-test
    if side is Side.SERVER:
        server.verify_mode = ssl.CERT_NONE  # only the client verifies: our cert as a server cert
    else:
        client.verify_mode = ssl.CERT_NONE  # only the server verifies: our cert as a client cert
    verifier = _handshake(server, client, verifying=side)
    peer = verifier.getpeercert()
    if not peer:
        raise ValueError("the certificate did not verify against ca.crt")
    return Certificate(
        serial=_identity.serial(peer),
        not_after=datetime.fromtimestamp(ssl.cert_time_to_seconds(str(peer["notAfter"])), UTC),
        identity=_identity.own_identity(peer),
    )


def _handshake(server: ssl.SSLContext, client: ssl.SSLContext, verifying: Side) -> ssl.SSLObject:
    """Run a full handshake between two contexts in memory; return the side that verified."""
    to_server, to_client = ssl.MemoryBIO(), ssl.MemoryBIO()
    s = server.wrap_bio(to_server, to_client, server_side=True)
    c = client.wrap_bio(to_client, to_server, server_side=False)
    done = {s: False, c: False}
    for _ in range(10):
        for end in (c, s):
            if not done[end]:
                try:
                    end.do_handshake()
                    done[end] = True
                except ssl.SSLWantReadError:
                    pass
        if all(done.values()):
            break
    # With TLS 1.3 the server verifies the client certificate after the client has finished,
    # so the loop runs until the server side has completed too.
    if not all(done.values()):
        raise ValueError("self-test handshake did not complete")
    return c if verifying is Side.SERVER else s


@contextlib.contextmanager
def _pem_path(data: bytes) -> Iterator[str]:
    """A path OpenSSL can open that holds ``data``; the key never touches a disk on Linux."""
    if hasattr(os, "memfd_create"):
        fd = os.memfd_create("hello-mtls-pem", os.MFD_CLOEXEC)
        try:
            os.write(fd, data)
            yield f"/proc/self/fd/{fd}"
        finally:
            os.close(fd)
    else:
        with tempfile.TemporaryDirectory() as private:  # mode 0700
            path = Path(private, "chain-and-key.pem")
            path.write_bytes(data)
            yield str(path)


def _describe(error: ssl.SSLError) -> str:
    reason = getattr(error, "verify_message", None) or getattr(error, "reason", None) or str(error)
    return {
        "KEY_VALUES_MISMATCH": "tls.key does not match the certificate in tls.crt",
        "certificate has expired": "the certificate has expired",
        "unable to get local issuer certificate": "tls.crt does not chain to a root in ca.crt",
        "certificate revoked": "the certificate in tls.crt is revoked (ca.crl lists it)",
    }.get(reason, reason)
