"""server.workers > 1: a master with its queue runner and worker processes sharing the
listening socket. Mail received by any worker is delivered; a killed worker is replaced; the
per-worker STARTTLS facts and logs are the same; SIGHUP and SIGTERM reach every worker."""

from __future__ import annotations

import os
import re
import signal
import smtplib
import ssl
import time

from tests.conftest import tls_settings


def worker_pids(mta) -> set[int]:
    pids = set(int(p) for p in re.findall(r"mailward\[(\d+)\]: daemon=started, listen=[^,]+, starttls=",
                                           mta.log_text()))
    return {p for p in pids if os.path.exists(f"/proc/{p}")}


def test_workers_receive_and_master_delivers(make_mta, pki):
    mta = make_mta({"tls": tls_settings(pki), "server": {"workers": 2}})
    deadline = time.time() + 10
    while len(worker_pids(mta)) < 2 and time.time() < deadline:
        time.sleep(0.1)
    assert len(worker_pids(mta)) == 2
    ctx = ssl.create_default_context(cafile=str(pki.ca))
    for i in range(12):
        with smtplib.SMTP(mta.host, mta.port, timeout=10) as s:
            s.starttls(context=ctx)
            s.sendmail("a@client.test", ["w@localhost"], f"Subject: {i}\r\n\r\nx\r\n")
    assert len(mta.wait_mail("w", 12)) == 12
    log = mta.log_text()
    assert "STARTTLS=server, relay=localhost [127.0.0.1], version=TLSv1.3, verify=NO" in log
    receivers = set(re.findall(r"mailward\[(\d+)\]: \w+: from=<a@client.test>", log))
    assert len(receivers) >= 1

    victim = next(iter(worker_pids(mta)))
    os.kill(victim, signal.SIGKILL)
    mta.wait_log(f"worker={victim}, stat=exited with status -9; restarted")  # (after 1 s if it was young)
    deadline = time.time() + 10
    while len(worker_pids(mta)) < 2 and time.time() < deadline:
        time.sleep(0.1)
    assert len(worker_pids(mta)) == 2 and victim not in worker_pids(mta)
    with smtplib.SMTP(mta.host, mta.port, timeout=10) as s:
        s.sendmail("a@client.test", ["w@localhost"], "Subject: after\r\n\r\nx\r\n")
    assert len(mta.wait_mail("w", 13)) == 13

    mta.proc.send_signal(signal.SIGHUP)
    time.sleep(0.5)
    assert mta.log_text().count("reload=ok") >= 2
    pids = worker_pids(mta)
    mta.stop()
    assert mta.proc.returncode == 0
    assert all(not os.path.exists(f"/proc/{p}") or open(f"/proc/{p}/stat").read().split()[2] == "Z"
               for p in pids)
