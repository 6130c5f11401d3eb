"""A full spool file system: 452 4.3.1, nothing half-written, and recovery by itself.

The test mounts a small tmpfs for the spool (needs root, as in CI); elsewhere it is skipped.
"""

from __future__ import annotations

import os
import smtplib
import subprocess
import time

import pytest

from tests.spool_view import partial_files, queued


@pytest.fixture
def small_fs(tmp_path):
    mnt = tmp_path / "spoolfs"
    mnt.mkdir()
    if os.geteuid() != 0 or subprocess.run(["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", str(mnt)],
                                           capture_output=True).returncode != 0:
        pytest.skip("needs root to mount a small tmpfs")
    yield mnt
    subprocess.run(["umount", "-l", str(mnt)], capture_output=True)


def deliver(mta, size):
    with smtplib.SMTP(mta.host, mta.port, timeout=10) as s:
        s.ehlo("c")
        s.mail("a@b.example")
        s.rcpt("full@localhost")
        return s.data(b"Subject: big\r\n\r\n" + (b"x" * 78 + b"\r\n") * (size // 80))


def test_disk_full_gives_452_and_recovers(make_mta, small_fs):
    mta = make_mta({"spool": {"directory": str(small_fs)}})
    code, reply = deliver(mta, 400_000)  # larger than the file system
    assert (code, reply[:5]) == (452, b"4.3.1"), reply
    assert partial_files(mta) == [] and queued(mta) == []
    filler = small_fs / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT)  # fill it completely: even DATA cannot start
    try:
        while True:
            os.write(fd, b"\0" * 1024)
    except OSError:
        pass
    finally:
        os.close(fd)
    with smtplib.SMTP(mta.host, mta.port, timeout=10) as s:
        s.ehlo("c")
        code, reply = s.mail("a@b.example")
        assert (code, reply) == (452, b"4.3.1 Insufficient system storage")
    assert partial_files(mta) == [] and queued(mta) == []
    filler.unlink()  # space returns: mailward recovers by itself
    time.sleep(0.3)  # it looks at the free space at most every 0.25 s
    code, reply = deliver(mta, 2_000)
    assert code == 250
    assert mta.wait_mail("full")
    assert "spool write failed" in mta.log_text()
