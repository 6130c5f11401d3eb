"""A master killed with SIGKILL while its workers are still starting: no worker outlives it.

A worker learns its master's pid from the master (MAILWARD_MASTER_PID), not from getppid():
one that starts after its master died is already a child of init, and would otherwise take
init for its master, keep the spool locked, and make every restart exit 75."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest


def _workers_of(config) -> list[int]:
    out = subprocess.run(["pgrep", "-f", f"mailward worker -c {config}"], capture_output=True, text=True)
    return [int(pid) for pid in out.stdout.split()]


@pytest.mark.parametrize("delay", [0.2, 0.5, 0.9])
def test_no_worker_outlives_a_master_killed_during_start(tmp_path, delay):
    import socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    config = tmp_path / "mailward.toml"
    config.write_text(f'[server]\nlisten = ["127.0.0.1:{port}"]\nworkers = 2\nreverse_lookup = false\n'
                      '[spool]\ndirectory = "spool"\n')
    master = subprocess.Popen([sys.executable, "-m", "mailward", "serve", "-c", str(config)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(delay)
    master.kill()
    master.wait()
    deadline = time.monotonic() + 10
    while _workers_of(config) and time.monotonic() < deadline:
        time.sleep(0.2)
    left = _workers_of(config)
    for pid in left:
        os.kill(pid, signal.SIGKILL)
    assert left == [], "workers outlived their master"
    # and the spool is free again: a new start takes it
    again = subprocess.Popen([sys.executable, "-m", "mailward", "serve", "-c", str(config)],
                             stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        time.sleep(1.5)
        assert again.poll() is None, again.stderr.read()
    finally:
        again.terminate()
        again.wait(timeout=20)
