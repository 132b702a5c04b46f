"""The Quix Streams contender's own virtualenv, `.venv-quix` at the repository root (git-ignored).

quixstreams 3.28 requires confluent-kafka<2.13 and leadrouter pins confluent-kafka~=2.16, so
the two cannot share `.venv`. The harness calls `ensure()` before it starts contender (d): it
creates the venv from the pinned bench/contenders/quix_requirements.txt the first time (about
15 s from the package registry) and is a no-op afterwards (a stamp file holds the hash of the
requirements and of the Python version). Another location: BENCH_QUIX_VENV.

    python -m bench.quix_venv      # create or check it, print its python
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
REQUIREMENTS = REPO_ROOT / "bench" / "contenders" / "quix_requirements.txt"
STAMP = ".installed"


class QuixVenvError(RuntimeError):
    pass


def location() -> Path:
    return Path(os.environ.get("BENCH_QUIX_VENV") or REPO_ROOT / ".venv-quix")


def _wanted() -> str:
    digest = hashlib.sha256(REQUIREMENTS.read_bytes())
    digest.update(sys.version.encode())
    return digest.hexdigest()


def _run(argv: list[str], what: str) -> None:
    done = subprocess.run(argv, capture_output=True, text=True)
    if done.returncode != 0:
        tail = "\n".join((done.stdout + done.stderr).strip().splitlines()[-20:])
        raise QuixVenvError(
            f"could not {what} for the Quix Streams contender ({' '.join(argv)} exited "
            f"{done.returncode}); pip needs the package registry. Output:\n{tail}"
        )


def ensure(say: Callable[[str], None] | None = None) -> Path:
    """The venv's python, after creating or updating the venv if its stamp is stale."""
    venv = location()
    python = venv / "bin" / "python"
    wanted = _wanted()
    stamp = venv / STAMP

    def current() -> bool:
        return stamp.is_file() and stamp.read_text().strip() == wanted and python.exists()

    if current():
        return python
    venv.parent.mkdir(parents=True, exist_ok=True)
    with open(f"{venv}.lock", "w") as lock:  # two runs at once: one installs, one waits
        fcntl.flock(lock, fcntl.LOCK_EX)
        if current():  # the other run made it meanwhile
            return python
        if say:
            say(f"creating {venv} for the Quix Streams contender (pinned, once)")
        if venv.exists():
            shutil.rmtree(venv)  # stale: another Python or other requirements
        # the base interpreter, so the new venv does not chain to .venv
        base = getattr(sys, "_base_executable", sys.executable)
        _run([base, "-m", "venv", str(venv)], "create the venv")
        _run(
            [str(python), "-m", "pip", "install", "-q", "--no-input", "-r", str(REQUIREMENTS)],
            f"install {REQUIREMENTS.name}",
        )
        stamp.write_text(wanted + "\n")
    return python


def main() -> None:
    try:
        print(ensure(lambda text: print(text, file=sys.stderr)))
    except QuixVenvError as exc:
        sys.exit(str(exc))


if __name__ == "__main__":
    main()
