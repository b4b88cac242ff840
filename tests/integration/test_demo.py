"""``make demo`` in fast motion: re-issues every 2 s, so the full root rotation takes about 11 s
on an idle machine; on a loaded one the demo runs on until the rotation is done."""

import re
import subprocess
import sys
from pathlib import Path

DEMO = Path(__file__).parents[2] / "demo" / "hello_demo.py"


def test_demo_rotates_everything_without_a_failed_request(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, str(DEMO), "--seconds=10", "--reissue-every=2", f"--workdir={tmp_path}"],
        capture_output=True,
        text=True,
        timeout=120,
        start_new_session=True,
    )

    out = done.stdout
    assert done.returncode == 0, out + done.stderr
    assert "200 Hello, client-a.demo!" in out and "200 Hello, client-b.demo!" in out
    assert "ROOT ROTATION step 3/3: phase 'idle', 1 root(s)" in out
    assert "FAILED" not in out
    assert "CA phase 'idle' with 1 root(s)" in out
    assert len(set(re.findall(r"\(server (\w+), me", out))) >= 3  # served new certificates
