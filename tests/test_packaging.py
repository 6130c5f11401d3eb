"""The package as a user installs it: a wheel built from this tree, installed with pip into a
fresh virtual environment (its dependencies from the package index), runs `mailward
--version`, makes a quick start, checks it with `mailward check`, and serves."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

from tests.conftest import ROOT, free_port


def run(*args, **kw) -> subprocess.CompletedProcess:
    return subprocess.run([str(a) for a in args], capture_output=True, text=True, timeout=600, **kw)


def test_wheel_installs_into_a_fresh_venv_and_runs(tmp_path):
    built = run(sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", tmp_path / "dist", ROOT)
    assert built.returncode == 0, built.stderr
    assert "project.license" not in built.stderr and "License classifiers" not in built.stderr, built.stderr
    (wheel,) = (tmp_path / "dist").glob("mailward-*.whl")
    venv = tmp_path / "venv"
    assert run(sys.executable, "-m", "venv", venv).returncode == 0
    bin_ = venv / "bin"
    installed = run(bin_ / "pip", "install", "-q", wheel)
    assert installed.returncode == 0, installed.stderr
    version = run(bin_ / "mailward", "--version", cwd=tmp_path)
    assert version.stdout.strip() == "mailward 0.1.0", version.stdout + version.stderr
    for script in ("sendmail", "mailq", "newaliases"):
        assert (bin_ / script).exists(), script

    data, port = tmp_path / "data", free_port()
    log = tmp_path / "quickstart.log"
    with open(log, "w") as out:
        proc = subprocess.Popen([bin_ / "mailward", "quickstart", data, "--listen", f"127.0.0.1:{port}"],
                                stdout=out, stderr=subprocess.STDOUT, cwd=tmp_path)
    try:
        deadline = time.time() + 60
        while "daemon=started" not in log.read_text():
            assert proc.poll() is None and time.time() < deadline, log.read_text()
            time.sleep(0.1)
        assert f"127.0.0.1:{port}" in log.read_text()
        check = run(bin_ / "mailward", "check", "-c", data / "mailward.toml", cwd=tmp_path)
        assert check.returncode == 0, check.stdout + check.stderr
    finally:
        proc.terminate()
        proc.wait(20)
    assert Path(data / "mailward.toml").exists()
