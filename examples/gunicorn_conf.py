"""gunicorn serving any WSGI or ASGI app on the certificates of ``HELLO_MTLS_CERT_DIR``, on
``HELLO_MTLS_BIND``.

Run: ``gunicorn -c examples/gunicorn_conf.py --chdir examples flask_app:app`` (or
``-k asgi fastapi_app:app``). ``tls_settings`` gives ``certfile``, ``keyfile`` (they only switch
gunicorn's TLS on), ``ssl_context``, ``on_starting`` and ``post_worker_init``.
"""

from mtls_context import options
from mtls_context.gunicorn_hooks import tls_settings

bind = str(options.bind())  # 0.0.0.0:8443 by default
worker_class = "gthread"  # or sync, asgi, gevent, tornado
workers, threads = 2, 4
globals().update(tls_settings(options.cert_dir(), check_interval=options.check_interval()))
