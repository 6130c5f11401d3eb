"""Type=notify: a real `mailward serve` tells the service manager READY=1 once it accepts,
RELOADING=1 (with MONOTONIC_USEC) then READY=1 around SIGHUP, STOPPING=1 on SIGTERM; only the
main process talks (systemd's NotifyAccess=main), with one process or a master and workers."""

from __future__ import annotations

import os
import signal
import smtplib
import time

import pytest

from mailward.service import notify
from tests.service.notify_listener import NotifyListener


@pytest.mark.parametrize("workers", [1, 2])
def test_ready_reloading_stopping_from_the_main_process(make_mta, tmp_path, monkeypatch, workers):
    listener = NotifyListener(str(tmp_path / "notify.sock"))
    monkeypatch.setenv("NOTIFY_SOCKET", listener.env)
    try:
        mta = make_mta({"server": {"workers": workers}})
        pid, fields = listener.expect("READY=1")
        assert pid == mta.proc.pid
        with smtplib.SMTP(mta.host, mta.port, timeout=10) as s:   # ready means it answers
            assert s.noop()[0] == 250

        before = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
        mta.proc.send_signal(signal.SIGHUP)
        pid, fields = listener.expect("RELOADING=1")
        assert pid == mta.proc.pid
        assert before <= int(fields["MONOTONIC_USEC"]) <= time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
        assert listener.expect("READY=1")[0] == mta.proc.pid
        mta.wait_log("reload=ok")

        mta.stop()
        assert listener.expect("STOPPING=1")[0] == mta.proc.pid
        assert mta.proc.returncode == 0
        assert {p for p, _ in listener.seen} == {mta.proc.pid}     # no worker spoke
    finally:
        listener.close()


def test_abstract_namespace_socket(monkeypatch):
    name = f"\0mailward-test-{os.getpid()}-{time.monotonic_ns()}".encode()
    listener = NotifyListener(name)
    monkeypatch.setenv("NOTIFY_SOCKET", listener.env)
    try:
        assert notify.ready("accepting")
        pid, fields = listener.expect("READY=1", timeout=2)
        assert pid == os.getpid() and fields["STATUS"] == "accepting"
    finally:
        listener.close()


def test_without_a_service_manager_nothing_is_sent(monkeypatch, tmp_path):
    monkeypatch.delenv("NOTIFY_SOCKET", raising=False)
    assert notify.ready() is False
    monkeypatch.setenv("NOTIFY_SOCKET", str(tmp_path / "gone.sock"))   # manager gone: mail goes on
    assert notify.stopping() is False
