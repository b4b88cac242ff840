"""A stand-in for the API server's TokenReview, for the root holder under integration tests.

Only ``POST /apis/authentication.k8s.io/v1/tokenreviews``, answered the way the API server
answers it: a token it knows is authenticated when the audiences asked for include the token's
own; any other token, or another audience, is not. The root holder reaches it through
``KUBECONFIG`` (`kubeconfig`), so its real client code (`mtls_ca.signer_auth.KubernetesReviewer`)
runs; the real API server's answers are proven on the cluster (tests/e2e).
"""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

__all__ = ["Token", "TokenReviewAPI"]

_PATH = "/apis/authentication.k8s.io/v1/tokenreviews"


@dataclass(frozen=True)
class Token:
    """What the API server would know about a token."""

    audience: str
    username: str
    pod_name: str = ""


class TokenReviewAPI:
    """Serves on 127.0.0.1 until `stop`; `tokens` maps a token to what it proves."""

    def __init__(self, tokens: dict[str, Token]) -> None:
        self.tokens = tokens
        self.reviews = 0
        api = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 (http.server's name)
                length = int(self.headers.get("Content-Length", "0"))
                review = json.loads(self.rfile.read(length))
                if self.path.split("?")[0] != _PATH:
                    self._answer(404, {"kind": "Status", "code": 404})
                    return
                api.reviews += 1
                self._answer(201, {**review, "status": api.status(review["spec"])})

            def _answer(self, code: int, body: dict[str, Any]) -> None:
                data = json.dumps(body).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    def status(self, spec: dict[str, Any]) -> dict[str, Any]:
        known = self.tokens.get(spec.get("token", ""))
        wanted = spec.get("audiences") or []
        if known is None:
            return {"authenticated": False, "error": "invalid bearer token"}
        if known.audience not in wanted:
            return {"authenticated": False, "error": "token audiences is invalid"}
        extra = (
            {"authentication.kubernetes.io/pod-name": [known.pod_name]} if known.pod_name else {}
        )
        return {
            "authenticated": True,
            "audiences": [known.audience],
            "user": {"username": known.username, "extra": extra},
        }

    def kubeconfig(self, path: Path) -> Path:
        """Write a kubeconfig that points at this server; returns ``path``."""
        document = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [{"name": "fake", "cluster": {"server": self.url}}],
            "users": [{"name": "root-holder", "user": {"token": "root-holder"}}],
            "contexts": [{"name": "fake", "context": {"cluster": "fake", "user": "root-holder"}}],
            "current-context": "fake",
        }
        path.write_text(json.dumps(document))
        return path

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
