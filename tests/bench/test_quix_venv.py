"""bench/quix_venv.py without the package registry: it installs once, skips while the stamp
matches, installs again when the pins change, and says what went wrong when pip fails."""

from __future__ import annotations

import subprocess

import pytest

from bench import quix_venv


@pytest.fixture
def fake(tmp_path, monkeypatch):
    requirements = tmp_path / "quix_requirements.txt"
    requirements.write_text("quixstreams==3.28.1\n")
    venv = tmp_path / "venv-quix"
    monkeypatch.setattr(quix_venv, "REQUIREMENTS", requirements)
    monkeypatch.setenv("BENCH_QUIX_VENV", str(venv))
    calls: list[list[str]] = []

    def run(argv: list[str], what: str) -> None:
        calls.append(argv)
        if "venv" in argv:
            (venv / "bin").mkdir(parents=True)
            (venv / "bin" / "python").write_text("")

    monkeypatch.setattr(quix_venv, "_run", run)
    return requirements, venv, calls


def test_installs_once_then_skips_until_the_pins_change(fake):
    requirements, venv, calls = fake
    assert quix_venv.ensure() == venv / "bin" / "python"
    assert len(calls) == 2 and calls[1][-2:] == ["-r", str(requirements)]
    assert quix_venv.ensure() == venv / "bin" / "python"
    assert len(calls) == 2  # stamp matches: nothing run
    requirements.write_text("quixstreams==3.28.2\n")
    quix_venv.ensure()
    assert len(calls) == 4  # new pins: the venv made again


def test_pip_failing_says_so(monkeypatch):
    monkeypatch.setattr(
        subprocess,
        "run",
        lambda argv, **kw: subprocess.CompletedProcess(argv, 1, "", "ERROR: No matching dist"),
    )
    with pytest.raises(quix_venv.QuixVenvError, match=r"(?s)package registry.*No matching dist"):
        quix_venv._run(["pip", "install"], "install it")
