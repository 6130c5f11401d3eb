"""The passphrase prompt, on a real pseudo-terminal: asked twice at init, once when signing."""

from __future__ import annotations

import fcntl
import os
import pty
import select
import subprocess
import sys
import termios
import time

import pytest

from mailward.ca import authority


def _own_terminal() -> None:
    """In the child: a new session whose controlling terminal is the pty, so /dev/tty is it."""
    os.setsid()
    fcntl.ioctl(0, termios.TIOCSCTTY, 0)


def _run_on_tty(args, answers, cwd, timeout=30.0):
    """Run ``python -m mailward ARGS`` with a pty as stdin/stdout; answer each prompt in turn."""
    master, slave = pty.openpty()
    proc = subprocess.Popen([sys.executable, "-m", "mailward", *map(str, args)], stdin=slave, stdout=slave,
                            stderr=slave, cwd=cwd, close_fds=True, preexec_fn=_own_terminal)
    os.close(slave)
    seen, since, pending = b"", b"", list(answers)  # since: output after the last answer
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([master], [], [], 0.2)
            if ready:
                try:
                    chunk = os.read(master, 4096)
                except OSError:  # the child closed the terminal
                    break
                if not chunk:
                    break
                seen += chunk
                since += chunk
            # Answer only once the prompt is on screen: getpass flushes typed-ahead input.
            if pending and since.rstrip(b" ").endswith(b":"):
                os.write(master, pending.pop(0) + b"\n")
                since = b""
            if proc.poll() is not None and not ready:
                break
        proc.wait(timeout=5)
    finally:
        os.close(master)
        if proc.poll() is None:
            proc.kill()
    return proc.returncode, seen.decode(errors="replace")


@pytest.mark.skipif(not hasattr(pty, "openpty"), reason="needs a pseudo-terminal")
def test_init_and_sign_prompt_on_the_terminal(tmp_path):
    code, out = _run_on_tty(["ca", "init", "ca", "--cn", "Prompted CA"], [b"tty secret", b"tty secret"], tmp_path)
    assert code == 0, out
    assert "New CA key passphrase:" in out and "tty secret" not in out  # not echoed
    assert authority.ca_key_encrypted(tmp_path / "ca")
    authority.load_ca(tmp_path / "ca", b"tty secret")

    authority.request("p.example", None, tmp_path / "p.key", tmp_path / "p.csr")
    code, out = _run_on_tty(["ca", "sign", "p.csr", "--ca", "ca", "--out", "p.pem"], [b"tty secret"], tmp_path)
    assert code == 0 and (tmp_path / "p.pem").exists(), out


def test_init_refuses_two_different_passphrases(tmp_path):
    code, out = _run_on_tty(["ca", "init", "ca", "--cn", "X"], [b"first one", b"second one"], tmp_path)
    assert code == 2 and "differ" in out
    assert not (tmp_path / "ca").exists()
