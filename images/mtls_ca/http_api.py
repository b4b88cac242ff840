"""The CA's HTTPS API as a Flask app (served by gunicorn, see `mtls_ca.gunicorn_app`), whose
``POST /sign`` skips Flask's request cycle (`_SignFirst`).

Read-only endpoints need TLS but no client certificate. ``POST /sign`` and ``POST /rotate-root``
need a client certificate that chains to this CA (the TLS layer checks that) and carries a
credential identity of this CA's trust domain (checked here, `mtls_ca.identities.role_of`):

* a provisioner (the operator's credential) may sign for a namespace and move on a root rotation
  an administrator started; only the operator knows when every Secret reflects a phase;
* an admin may also sign without a namespace, start a root rotation and revoke certificates
  (``POST /revoke``, on the root holder: it holds the index of issued certificates).

``GET /crl`` serves the signed CRLs (`mtls_ca.revocation`) to anyone, like ``GET /roots``, and
so does ``GET /spiffe-bundle``: the same roots as a SPIFFE bundle (`mtls_ca.spiffe_bundle`), what
another trust domain fetches to federate with this one.

With a ``sign_port`` the two POSTs are served on that port only, so a NetworkPolicy, which sees
ports and not paths, can admit only the operator to them while the cluster reads the roots on
the other.

The root holder also serves CA signer pods, on a port of its own (``material``) that serves
nothing else, to callers whose bearer token is a signer's (`mtls_ca.signer_auth`): ``POST
/signing-material`` answers `mtls_ca.state.State.signing_material`, the signing intermediate's
key included, and ``POST /issued`` takes the records of what a signer signed into the index
(`mtls_ca.signer_reports`). A signer holds no root key, so it answers ``POST /rotate-root``
with 404: the root holder rotates.

The API is described by ``openapi.json`` beside this module, served at
``GET /openapi.json``.
Every error is JSON: ``{"error": "..."}``.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from http import HTTPStatus
from importlib import resources
from typing import Any

from flask import Flask, Response, jsonify, request
from flask.sessions import NullSession, SessionInterface
from werkzeug.exceptions import HTTPException

from mtls_context.identity import identity, spiffe_ids, wsgi_peer_cert
from mtls_contract import identities, name_rules
from mtls_contract.phases import Phase

from . import metrics, revocation, sign_request, spiffe_bundle
from .audit import AuditLog
from .rotation import PHASES, PhaseMismatch
from .signer_auth import NotASigner, ReviewUnavailable, SignerPolicy
from .signer_material import ISSUED_PATH, MATERIAL_PATH
from .signer_reports import IssuedReports
from .state_cache import StateCache

__all__ = ["MAX_REQUEST_BYTES", "MaterialEndpoint", "create_app"]

MAX_REQUEST_BYTES = 64 * 1024
_SIGNING_PATHS = frozenset({"/sign", "/rotate-root", "/revoke"})
_SIGNER_PATHS = (MATERIAL_PATH, ISSUED_PATH)
_log = logging.getLogger("mtls_ca")


@dataclass(frozen=True)
class MaterialEndpoint:
    """The root holder's ``POST /signing-material`` and ``POST /issued``: served on ``port``
    only, to ``signers``."""

    port: int
    signers: SignerPolicy


class _NoSessions(SessionInterface):
    """The API keeps no sessions: every request shares one empty session that refuses writes,
    where Flask's default makes a new one per request (2 % of the Python time of a signature,
    py-spy under ``make bench-ca``)."""

    _none = NullSession()

    def open_session(self, app: Flask, request: Any) -> NullSession:
        return self._none

    def save_session(self, app: Flask, session: Any, response: Any) -> None:
        return None


class _Refused(Exception):
    def __init__(self, status: int, reason: str, message: str) -> None:
        super().__init__(message)
        self.status, self.reason, self.message = status, reason, message


def create_app(
    cache: StateCache,
    *,
    cluster_domain: str = name_rules.CLUSTER_DOMAIN,
    extra_allowed: Mapping[str, Sequence[str]] | None = None,
    allowed_ips: Mapping[str, Sequence[name_rules.IPNetwork]] | None = None,
    after_change: Callable[[], None] | None = None,
    sign_port: int | None = None,
    material: MaterialEndpoint | None = None,
    material_age: Callable[[], float] | None = None,
    issued: revocation.IssuedIndex | None = None,
    reports: IssuedReports | None = None,
    audit: AuditLog | None = None,
) -> Flask:
    """Create the Flask app serving the state in ``cache``.

    Args:
        cache: the CA state the requests use.
        cluster_domain: for the namespace name rule (``x.N.svc.<cluster_domain>``).
        extra_allowed: names an admin allowed per namespace (exact or ``*.suffix``).
        allowed_ips: networks whose addresses an admin allowed per namespace.
        after_change: called after ``POST /rotate-root`` changed the state (the service re-issues
            its own certificate there, so the new bundle is served at once).
        sign_port: the only listening port that serves ``POST /sign`` and ``POST /rotate-root``
            (gunicorn's ``SERVER_PORT``); None: every port does.
        material: the root holder's signing-material endpoint; None: not served (404).
        material_age: a signer's seconds since its last fetch of the material, for
            ``GET /metrics``; None on the root holder.
        issued: the root holder's index of issued certificates: each one signed is recorded
            there, and ``POST /revoke`` picks from it, and with ``material`` the signers'
            ``POST /issued`` writes into it; None: not recorded, nor revoked (404).
        reports: a signer's queue of the records of what it signs, for the root holder's
            index; None on the root holder.
        audit: the audit trail every signature, refusal and rotation step goes to first (a
            certificate is answered only once its record is on disk); None: none kept.
    """
    app = Flask(__name__)
    app.config["MAX_CONTENT_LENGTH"] = MAX_REQUEST_BYTES
    app.session_interface = _NoSessions()
    openapi = resources.files(__package__).joinpath("openapi.json").read_bytes()

    def misplaced(method: str, path: str, port: str | None) -> str | None:
        """Why ``path`` is not served on ``port``: a 404's message; None: it is."""
        if sign_port is not None and path in _SIGNING_PATHS and port != str(sign_port):
            return f"{method} {path} is served on port {sign_port} only"
        if material is not None and (path in _SIGNER_PATHS) != (port == str(material.port)):
            # The material port serves the signers alone, so a NetworkPolicy that admits them
            # to it admits them to nothing more.
            if path in _SIGNER_PATHS:
                return f"POST {path} is served on port {material.port} only"
            paths = " and ".join(f"POST {p}" for p in _SIGNER_PATHS)
            return f"port {material.port} serves {paths} only"
        return None

    @app.before_request
    def signing_port_only() -> tuple[Response, int] | None:
        message = misplaced(request.method, request.path, request.environ.get("SERVER_PORT"))
        return (jsonify(error=message), 404) if message is not None else None

    @app.post(MATERIAL_PATH)
    def signing_material() -> tuple[Response, int]:
        if material is None:
            return jsonify(error="this CA hands out no signing material"), 404
        try:
            pod = _signer(material.signers)
        except _Refused as e:
            _log.warning("refused the signing material (%s): %s", e.reason, e.message)
            return jsonify(error=e.message), e.status
        state = cache.state()
        _log.info("signing material %s handed to %s", state.material_sha256[:12], pod)
        answer = Response(state.signing_material().to_json(), mimetype="application/json")
        answer.headers["Cache-Control"] = "no-store"
        return answer, 200

    @app.post(ISSUED_PATH)
    def issued_by_signer() -> tuple[Response, int]:
        try:
            if material is None or issued is None:
                raise _Refused(404, "elsewhere", "this CA keeps no index for signers")
            pod = _signer(material.signers)
            records = _issued_request(_json_body(request.get_data(cache=False)))
        except _Refused as e:
            _log.warning("refused records of issued certificates (%s): %s", e.reason, e.message)
            return jsonify(error=e.message), e.status
        known = revocation.listed_issuers(cache.state())
        kept = [r for r in records if r.issuer in known]
        issued.extend(kept)
        if len(kept) < len(records):
            _log.warning(
                "ignored %d records from %s: their issuer is no intermediate of this CA's CRLs",
                len(records) - len(kept),
                pod,
            )
        return jsonify(recorded=len(kept), ignored=len(records) - len(kept)), 200

    def signature(environ: dict[str, Any], data: bytes) -> tuple[int, bytes]:
        """``POST /sign`` with the body ``data``: the answer's status and JSON body."""
        start = time.perf_counter()
        asked: dict[str, Any] = {}
        try:
            state = cache.state()
            caller, role = _caller(environ, state.trust_domain)
            body = _json_body(data)
            asked = _asked(body)
            try:
                parsed = sign_request.parse(body)
                asked["public_key_sha256"] = parsed.key_sha256
                issued_cert = sign_request.sign(
                    state,
                    parsed,
                    role=role,
                    cluster_domain=cluster_domain,
                    extra_allowed=extra_allowed,
                    allowed_ips=allowed_ips,
                )
            except sign_request.Malformed as e:
                raise _Refused(400, "malformed", str(e)) from None
            except sign_request.RuleViolation as e:
                raise _Refused(403, "policy", str(e)) from None
        except _Refused as e:
            metrics.REJECTED.labels(reason=e.reason).inc()
            _log.info("refused to sign (%s): %s", e.reason, e.message)
            if audit is not None:
                audit.refusal(_peer(environ), e.reason, e.message, **asked)
            return e.status, sign_request.encode({"error": e.message})
        record = revocation.record_of(issued_cert, state.signer)
        # The index's flush goes on while the audit record is written and flushed.
        indexed = issued.write([record]) if issued is not None else _nothing
        try:
            if reports is not None:
                reports.append(record)
            if audit is not None:
                # Its record, on stdout too, is the signature's log line.
                audit.issuance(caller, issued_cert, namespace=parsed.namespace)
            else:
                _log.info(
                    "signed serial %x for %s until %s, asked by %s",
                    issued_cert.serial,
                    ",".join(issued_cert.names + issued_cert.uris),
                    issued_cert.not_after.isoformat(),
                    caller,
                )
        finally:
            indexed()
        metrics.ISSUED.inc()
        metrics.SIGNING_SECONDS.observe(time.perf_counter() - start)
        return 200, sign_request.answer_json(state, issued_cert)

    @app.post("/sign")
    def sign() -> tuple[Response, int]:
        # What `_SignFirst` leaves to Flask: a body over MAX_REQUEST_BYTES (get_data: 413).
        status, body = signature(request.environ, request.get_data(cache=False))
        return Response(body, mimetype="application/json"), status

    @app.post("/revoke")
    def revoke() -> tuple[Response, int]:
        try:
            state = cache.state()
            if issued is None or not state.holds_root_keys:
                raise _Refused(
                    404, "elsewhere", "POST /revoke is served by the root holder, not a signer"
                )
            caller, role = _caller(request.environ, state.trust_domain)
            if role != identities.ADMIN:
                raise _Refused(403, "forbidden", f"client '{caller}' may not revoke (admins may)")
            chosen = _revoke_request(_json_body(request.get_data(cache=False)), issued)
            new = cache.update(lambda s: revocation.revoke(s, chosen[0], chosen[1]))
        except _Refused as e:
            return jsonify(error=e.message), e.status
        serials = {r.serial for r in chosen[0]}
        made = [r for r in new.revoked if r.serial in serials]
        revocation.announce(made, by=caller, trail=audit)
        return jsonify(revoked=[r.to_json() for r in made], crl_number=new.crl_number), 200

    @app.get("/crl")
    def crl() -> Response:
        return Response(cache.state().crl_pem, mimetype="application/x-pem-file")

    @app.post("/rotate-root")
    def rotate_root() -> tuple[Response, int]:
        try:
            state = cache.state()
            if not state.holds_root_keys:
                raise _Refused(
                    404, "elsewhere", "POST /rotate-root is served by the root holder, not a signer"
                )
            caller, role = _caller(request.environ, state.trust_domain)
            body = _json_body(request.get_data(cache=False))
            expected = body.get("from") if isinstance(body, dict) else None
            if expected not in PHASES:
                raise _Refused(400, "malformed", f"'from' must be one of {', '.join(PHASES)}")
            if expected == Phase.IDLE and role != identities.ADMIN:
                raise _Refused(
                    403,
                    "forbidden",
                    f"client '{caller}' may not start a root rotation (admins may)",
                )
            try:
                new = cache.update(lambda s: s.rotated(expected=expected))
            except PhaseMismatch as e:
                raise _Refused(409, "conflict", str(e)) from None
        except _Refused as e:
            return jsonify(error=e.message), e.status
        _log.info("root rotation advanced from %s to %s by %s", expected, new.phase, caller)
        if audit is not None:
            audit.rotation(caller, new, previous=expected)
        if after_change is not None:
            try:
                after_change()
            except Exception:  # the rotation itself is stored; the upkeep timer retries this
                _log.exception("re-issuing after the root rotation step failed")
        return jsonify(new.status()), 200

    @app.get("/roots")
    def roots() -> Response:
        return Response(cache.state().bundle_pem, mimetype="application/x-pem-file")

    @app.get("/spiffe-bundle")
    def spiffe_bundle_view() -> Response:
        return jsonify(spiffe_bundle.bundle(cache.state()))

    @app.get("/tls-policy")
    def tls_policy() -> Response:
        return jsonify(cache.state().tls_policy)

    @app.get("/status")
    def status() -> Response:
        return jsonify(cache.state().status())

    @app.get("/healthz")
    def healthz() -> Response:
        cache.state()
        return jsonify(status="ok")

    @app.get("/metrics")
    def metrics_view() -> Response:
        age = material_age() if material_age is not None else None
        return Response(metrics.render(cache.state(), age), content_type=metrics.CONTENT_TYPE)

    @app.get("/openapi.json")
    def openapi_view() -> Response:
        return Response(openapi, mimetype="application/json")

    @app.errorhandler(Exception)
    def internal_error(e: Exception) -> tuple[Response, int]:
        return jsonify(_internal_error(request.method, request.path, e)), 500

    @app.errorhandler(HTTPException)
    def http_error(e: HTTPException) -> tuple[Response, int]:
        status = e.code or 500
        if status == 413 and request.path == "/sign":
            metrics.REJECTED.labels(reason="too_large").inc()
        message = (
            f"request body is larger than {MAX_REQUEST_BYTES} bytes"
            if status == 413
            else (e.description or e.name)
        )
        return jsonify(error=message), status

    app.wsgi_app = _SignFirst(app.wsgi_app, signature, misplaced)  # type: ignore[method-assign]
    return app


class _SignFirst:
    """The WSGI app in front of Flask's: it serves ``POST /sign`` (most of what the CA serves)
    itself and leaves every other request, and a body over `MAX_REQUEST_BYTES`, to Flask.

    Flask's request cycle (contexts, routing, hooks, a request and a response object) cost 0.14
    ms of CPU per request on the bench machine, against 0.01 ms for the same JSON in and out
    without it: about a tenth of a signature's CPU. The signature itself is the same function
    (``signature`` in `create_app`) either way.
    """

    def __init__(
        self,
        flask: Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]],
        signature: Callable[[dict[str, Any], bytes], tuple[int, bytes]],
        misplaced: Callable[[str, str, str | None], str | None],
    ) -> None:
        self._flask, self._signature, self._misplaced = flask, signature, misplaced

    def __call__(
        self, environ: dict[str, Any], start_response: Callable[..., Any]
    ) -> Iterable[bytes]:
        if (
            environ.get("PATH_INFO") != "/sign"
            or environ.get("REQUEST_METHOD") != "POST"
            or self._misplaced("POST", "/sign", environ.get("SERVER_PORT")) is not None
        ):
            return self._flask(environ, start_response)
        try:
            length = int(environ.get("CONTENT_LENGTH") or 0)
        except ValueError:
            length = -1
        if not 0 <= length <= MAX_REQUEST_BYTES:
            return self._flask(environ, start_response)
        try:
            status, body = self._signature(environ, environ["wsgi.input"].read(length))
        except Exception as e:
            status, body = 500, sign_request.encode(_internal_error("POST", "/sign", e))
        headers = [("Content-Type", "application/json"), ("Content-Length", str(len(body)))]
        start_response(f"{status} {HTTPStatus(status).phrase}", headers)
        return [body]


def _nothing() -> None:
    return None


def _internal_error(method: str, path: str, error: Exception) -> dict[str, str]:
    """Log an unexpected failure; the JSON document of its 500."""
    _log.exception("%s %s failed", method, path, exc_info=error)
    return {"error": f"internal error: {type(error).__name__}"}


def _caller(environ: dict[str, Any], trust_domain: str) -> tuple[str, str]:
    """The caller's credential identity and role, or `_Refused` 401/403."""
    cert = wsgi_peer_cert(environ)
    if not cert:
        raise _Refused(401, "unauthenticated", "a client certificate is required")
    for uri in spiffe_ids(cert):
        role = identities.role_of(trust_domain, uri)
        if role is not None:
            return uri, role
    try:
        who = identity(cert)
    except ValueError:
        who = "(no name)"
    raise _Refused(403, "forbidden", f"client '{who}' is not a provisioner of this CA")


def _signer(signers: SignerPolicy) -> str:
    """The signer pod the bearer token proves (`SignerPolicy.check`), or `_Refused`: 401
    without a token, 403 for a token or a client certificate that is not a signer's, 503 when
    the API server cannot be asked."""
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        if wsgi_peer_cert(request.environ):
            raise _Refused(
                403,
                "forbidden",
                f"'{_peer(request.environ)}' is not a CA signer (a signer's token is required)",
            )
        raise _Refused(401, "unauthenticated", "a signer's bearer token is required")
    try:
        return signers.check(token.strip())
    except NotASigner as e:
        raise _Refused(403, "forbidden", str(e)) from None
    except ReviewUnavailable as e:
        raise _Refused(503, "unavailable", str(e)) from None


def _issued_request(body: Any) -> list[revocation.IssuedRecord]:
    """The records a ``POST /issued`` body carries, or `_Refused` 400."""
    if (
        not isinstance(body, dict)
        or set(body) != {"issued"}
        or not isinstance(body["issued"], list)
    ):
        raise _Refused(400, "malformed", 'request body must be {"issued": [record, ...]}')
    records = []
    for i, document in enumerate(body["issued"]):
        try:
            records.append(revocation.IssuedRecord.from_json(document))
        except ValueError as e:
            raise _Refused(400, "malformed", f"issued[{i}]: {e}") from None
    return records


def _revoke_request(
    body: Any, issued: revocation.IssuedIndex
) -> tuple[list[revocation.IssuedRecord], str]:
    """The certificates and reason a ``POST /revoke`` body names, or `_Refused` 400/404."""
    if not isinstance(body, dict):
        raise _Refused(400, "malformed", "request body must be a JSON object")
    unknown = sorted(set(body) - {"serial", "identity", "namespace", "reason"})
    if unknown:
        raise _Refused(400, "malformed", f"unknown field(s): {', '.join(unknown)}")
    reason = body.get("reason", "unspecified")
    if reason not in revocation.REASONS:
        raise _Refused(400, "malformed", f"'reason' must be one of {', '.join(revocation.REASONS)}")
    given = {k: v for k, v in body.items() if k != "reason"}
    if len(given) != 1 or not all(isinstance(v, str) for v in given.values()):
        raise _Refused(400, "malformed", "give exactly one of 'serial', 'identity', 'namespace'")
    try:
        if "serial" in given:
            chosen = revocation.select(issued.records(), serial=int(given["serial"], 16))
        else:
            chosen = revocation.select(issued.records(), **given)
    except ValueError as e:
        raise _Refused(400, "malformed", f"{next(iter(given))}: {e}") from None
    if not chosen:
        what = f"{next(iter(given))} {next(iter(given.values()))}"
        raise _Refused(404, "unknown", f"no unexpired certificate of {what} in the CA's index")
    return chosen, reason


def _peer(environ: dict[str, Any]) -> str:
    """Who is asking, for the audit trail: the client certificate's SPIFFE ID, else its
    identity, whatever its role."""
    cert = wsgi_peer_cert(environ)
    if not cert:
        return f"(no client certificate, from {environ.get('REMOTE_ADDR')})"
    uris = spiffe_ids(cert)
    if uris:
        return uris[0]
    try:
        return identity(cert)
    except ValueError:
        return "(a client certificate without a name)"


def _asked(body: Any) -> dict[str, Any]:
    """What a refused request asked for, as far as it says it in the expected shape."""
    if not isinstance(body, dict):
        return {}
    asked: dict[str, Any] = {}
    names = body.get("names")
    if isinstance(names, list) and all(isinstance(n, str) for n in names):
        asked["names"] = [n[:253] for n in names[:100]]
    for key in ("namespace", "service_account", "duration"):
        if isinstance(body.get(key), str):
            asked[key] = body[key][:253]
    return asked


def _json_body(data: bytes) -> Any:
    try:
        return json.loads(data)
    except RecursionError:  # nesting deeper than the interpreter's recursion limit
        raise _Refused(400, "malformed", "request body is nested too deeply") from None
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise _Refused(400, "malformed", "request body must be JSON") from None
    except ValueError:  # an integer beyond sys.get_int_max_str_digits(), see CVE-2020-10735
        raise _Refused(
            400, "malformed", "request body holds a number with too many digits"
        ) from None
