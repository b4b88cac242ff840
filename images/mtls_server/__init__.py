"""The hello-mtls example server: a Flask app that greets the verified client certificate.

Run it with ``hello-mtls-server`` (gunicorn with the reloading TLS context of
``mtls_server.gunicorn_conf``), or ``gunicorn -c python:mtls_server.gunicorn_conf
'mtls_server:create_app()'``. The same routes on FastAPI and uvicorn: `mtls_server.fastapi_app`
(``hello-mtls-server --stack fastapi``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from flask import Flask

from mtls_context import options
from mtls_server import hello

__all__ = ["create_app"]


def create_app(test_config: Mapping[str, Any] | None = None) -> Flask:
    """Create and configure an instance of the Flask application.

    ``ALLOW`` (a list of DNS names and SPIFFE IDs; default from ``HELLO_MTLS_ALLOW``, comma
    separated) restricts which clients get a hello. Empty: every verified client does.
    """
    app = Flask(__name__)
    app.config.from_mapping(ALLOW=options.allow())
    if test_config is not None:
        app.config.from_mapping(test_config)
    app.register_blueprint(hello.bp)
    return app
