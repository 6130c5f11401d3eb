"""Helpers shared by the certificate tool's tests (imported as a plain module)."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

PASSPHRASE = b"correct horse battery"
CA_SUBJECT = "/C=US/ST=California/O=Example Org/OU=Mail/L=Town"
CA_CN = "Darth Mail (Cert)"


def snapshot(folder: Path) -> dict[str, tuple[bytes | str, int]]:
    """Every entry under ``folder`` with its content (or link target) and mode; .lock ignored."""
    out = {}
    for path in sorted(folder.rglob("*")):
        rel = str(path.relative_to(folder))
        if path.name == ".lock":
            continue
        if path.is_symlink():
            out[rel] = (os.readlink(path), 0)
        elif path.is_dir():
            out[rel] = (b"", path.stat().st_mode)
        else:
            out[rel] = (path.read_bytes(), path.stat().st_mode)
    return out


def one_line_error(result: subprocess.CompletedProcess, *must_contain: str) -> str:
    """Assert exit 2 with exactly one line on stderr, no traceback; return that line."""
    assert result.returncode == 2, (result.returncode, result.stdout, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "Traceback" not in result.stderr
    assert lines[0].startswith("mailward: ")
    for text in must_contain:
        assert text in lines[0], lines[0]
    return lines[0]
