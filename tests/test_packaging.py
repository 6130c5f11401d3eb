"""The package as a user installs it: a wheel built from this tree, installed with pip into a
fresh virtual environment (its dependencies from the package index), runs `mailward
--version`, makes a quick start, checks it with `mailward check`, and serves; its manual pages
land under share/man/man8 and man5 of that environment, where man(1) finds them."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
import zipfile
from pathlib import Path

from tests.conftest import ROOT, free_port


def run(*args, **kw) -> subprocess.CompletedProcess:
    return subprocess.run([str(a) for a in args], capture_output=True, text=True, timeout=600, **kw)


def test_wheel_installs_into_a_fresh_venv_and_runs(tmp_path):
    built = run(sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", tmp_path / "dist", ROOT)
    assert built.returncode == 0, built.stderr
    assert "project.license" not in built.stderr and "License classifiers" not in built.stderr, built.stderr
    (wheel,) = (tmp_path / "dist").glob("mailward-*.whl")
    pages = sorted(p.name for p in (ROOT / "man").iterdir() if p.suffix in (".5", ".8"))
    inside = zipfile.ZipFile(wheel).namelist()
    for page in pages:
        section = page.rsplit(".", 1)[1]
        assert f"mailward-0.1.0.data/data/share/man/man{section}/{page}" in inside, page
    venv = tmp_path / "venv"
    assert run(sys.executable, "-m", "venv", venv).returncode == 0
    bin_ = venv / "bin"
    installed = run(bin_ / "pip", "install", "-q", wheel)
    assert installed.returncode == 0, installed.stderr
    version = run(bin_ / "mailward", "--version", cwd=tmp_path)
    assert version.stdout.strip() == "mailward 0.1.0", version.stdout + version.stderr
    for script in ("sendmail", "mailq", "newaliases"):
        assert (bin_ / script).exists(), script
    for page in pages:
        assert (venv / "share" / "man" / f"man{page.rsplit('.', 1)[1]}" / page).exists(), page
    if shutil.which("man"):
        shown = run("man", "-M", venv / "share" / "man", "8", "mailward-queue",
                    env={**os.environ, "MANWIDTH": "80", "MANPAGER": "cat", "PAGER": "cat"})
        assert shown.returncode == 0 and "mailward queue" in shown.stdout, shown.stderr

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
