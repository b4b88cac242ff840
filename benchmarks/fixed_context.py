"""``python benchmarks/fixed_context.py examples/<stack>_server.py``: run a server recipe with a
context built once from the same files instead of its ``ReloadingServerContext`` (the ceiling
``bench_tls.py`` measures a reloading context against), so both run the same recipe."""

from __future__ import annotations

import runpy
import ssl
import sys
from collections.abc import Sequence
from pathlib import Path

import mtls_context
from mtls_context import Side, build_context
from mtls_context.contexts import ALPN
from mtls_context.layout import read_version


def built_once(directory: Path, *, alpn: Sequence[str] = ALPN, **_: object) -> ssl.SSLContext:
    """What ``ReloadingServerContext(directory, ...)`` serves first, never reloaded."""
    return build_context(read_version(Path(directory)), Side.SERVER, alpn=alpn)


if __name__ == "__main__":
    recipe = Path(sys.argv[1]).resolve()
    # The recipe imports the name when it runs, so it gets this one; as `python recipe.py`
    # would, its folder goes first on the path (uvicorn imports fastapi_app from there).
    mtls_context.ReloadingServerContext = built_once  # type: ignore[misc,assignment]
    sys.argv, sys.path[0] = [str(recipe)], str(recipe.parent)
    runpy.run_path(str(recipe), run_name="__main__")
