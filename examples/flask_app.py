"""A Flask app that greets the verified client, refused (403) unless it is on
``HELLO_MTLS_ALLOW`` when that is set. Serve it with gunicorn and ``gunicorn_conf.py``:
``gunicorn -c examples/gunicorn_conf.py --chdir examples flask_app:app``.
"""

from flask import Flask

from mtls_context import options
from mtls_context.flask_peer import peer_identity, require_peer

app = Flask(__name__)


@app.get("/")
def hello() -> str:
    return "hello from flask\n"


@app.get("/whoami")
@require_peer(allow=options.allow())
def whoami() -> str:
    return f"{peer_identity()}\n"
