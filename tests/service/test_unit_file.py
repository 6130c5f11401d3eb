"""contrib/mailward.service: systemd accepts it, and it says what mailward needs."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
UNIT = ROOT / "contrib" / "mailward.service"


def directives(text: str) -> dict[str, str]:
    found = {}
    for line in text.splitlines():
        if line and not line.startswith(("#", "[")) and "=" in line:
            key, _, value = line.partition("=")
            found[key] = value
    return found


def test_systemd_analyze_verify_accepts_the_unit(tmp_path):
    tool = shutil.which("systemd-analyze")
    if not tool:
        pytest.skip("systemd-analyze is not installed (Debian package: systemd)")
    # the unit names /usr/bin/mailward; verify checks that ExecStart= exists, so point it at ours
    mailward = Path(sys.executable).with_name("mailward")
    unit = tmp_path / "mailward.service"
    unit.write_text(UNIT.read_text().replace("/usr/bin/mailward", str(mailward)))
    run = subprocess.run([tool, "verify", str(unit)], capture_output=True, text=True, timeout=60)
    problems = [line for line in run.stderr.splitlines() if "mailward.service" in line]
    assert run.returncode == 0 and not problems, run.stderr

    broken = tmp_path / "broken" / "mailward.service"
    broken.parent.mkdir()
    broken.write_text(unit.read_text().replace("Type=notify", "Type=notifyy"))
    run = subprocess.run([tool, "verify", str(broken)], capture_output=True, text=True, timeout=60)
    assert "Failed to parse service type" in run.stderr   # the check does see mistakes


def test_the_unit_says_what_mailward_needs():
    d = directives(UNIT.read_text())
    assert d["Type"] == "notify" and d["NotifyAccess"] == "main"
    assert d["ExecReload"] == "/bin/kill -HUP $MAINPID"
    assert d["ProtectSystem"] == "strict" and d["PrivateTmp"] == "yes" and d["NoNewPrivileges"] == "yes"
    caps = set(d["CapabilityBoundingSet"].split())
    # bind port 25; hand over and drop privileges (mailward/service/startup.py)
    assert caps == {"CAP_NET_BIND_SERVICE", "CAP_SETUID", "CAP_SETGID", "CAP_CHOWN", "CAP_FOWNER",
                    "CAP_DAC_OVERRIDE"}
    assert "/var/spool/mailward" in d["ReadWritePaths"].split()
    assert d["KillMode"] == "mixed"
