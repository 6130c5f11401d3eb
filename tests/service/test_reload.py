"""SIGHUP reads the whole configuration again: what can change live changes, what needs a
restart is named, a broken file changes nothing, and no session is dropped. Real servers."""

from __future__ import annotations

import os
import signal
import smtplib
import stat
import time

import pytest

from mailward.config import default_config_text


def rewrite(mta, **sections) -> None:
    for section, values in sections.items():
        mta.settings.setdefault(section, {}).update(values)
    mta.config.write_text(default_config_text(mta.settings))


def hup_and_wait(mta, text: str = "reload=ok", count: int = 1) -> str:
    before = mta.log_text().count(text)
    mta.proc.send_signal(signal.SIGHUP)
    deadline = time.time() + 15
    while time.time() < deadline:
        log = mta.log_text()
        if log.count(text) >= before + count:
            return log
        time.sleep(0.05)
    raise AssertionError(f"{text!r} not logged {count} more time(s):\n{mta.log_text()}")


@pytest.mark.parametrize("workers", [1, 2])
def test_a_new_local_user_is_accepted_after_sighup(make_mta, workers):
    mta = make_mta({"server": {"workers": workers}, "local": {"users": ["alice"]}})
    with smtplib.SMTP(mta.host, mta.port, timeout=10) as s:
        s.ehlo("client.test")
        s.mail("a@client.test")
        assert s.rcpt("bob@localhost")[0] == 550
    rewrite(mta, local={"users": ["alice", "bob"]})
    hup_and_wait(mta, count=1 + (workers if workers > 1 else 0))   # the master, then each worker
    for _ in range(workers * 2):   # every worker takes connections in turn: ask each
        with smtplib.SMTP(mta.host, mta.port, timeout=10) as s:
            s.sendmail("a@client.test", ["bob@localhost"], "Subject: after reload\r\n\r\nhi\r\n")
    assert "Subject: after reload" in mta.wait_mail("bob", workers * 2)[0].read_text()
    assert mta.proc.poll() is None


def test_settings_that_need_a_restart_are_named_and_kept(make_mta):
    mta = make_mta()
    old_port = mta.port
    rewrite(mta, server={"listen": [f"127.0.0.1:{old_port + 1}"], "max_recipients": 1},
            spool={"directory": "elsewhere"})
    log = hup_and_wait(mta)
    assert "reload: server.listen changed; restart to apply" in log
    assert "reload: spool.directory changed; restart to apply" in log
    assert "max_recipients changed" not in log
    with smtplib.SMTP(mta.host, old_port, timeout=10) as s:   # still on the old address
        s.ehlo("client.test")
        s.mail("a@client.test")
        assert s.rcpt("one@localhost")[0] == 250
        assert s.rcpt("two@localhost")[0] == 452                # the new limit is live
    assert not (mta.base / "elsewhere").exists()


def test_a_broken_file_keeps_everything_running(make_mta):
    mta = make_mta({"local": {"users": ["alice"]}})
    good = mta.config.read_text()
    mta.config.write_text(good.replace("[local]", "[local]\nusers = [\"bob\"\n"))   # not TOML
    log = hup_and_wait(mta, "reload=failed")
    line = next(x for x in log.splitlines() if "reload=failed" in x)
    assert str(mta.config) in line and "kept=the running configuration" in line
    assert "Traceback" not in log
    mta.config.write_text(good.replace("accept_unknown_users = false", "accept_unknown_users = \"maybe\""))
    assert "local.accept_unknown_users" in hup_and_wait(mta, "reload=failed").splitlines()[-1]
    with smtplib.SMTP(mta.host, mta.port, timeout=10) as s:
        s.ehlo("client.test")
        s.mail("a@client.test")
        assert s.rcpt("alice@localhost")[0] == 250
        assert s.rcpt("bob@localhost")[0] == 550
    assert mta.proc.poll() is None


@pytest.mark.parametrize("workers", [1, 2])
def test_an_open_session_survives_a_reload(make_mta, workers):
    mta = make_mta({"server": {"workers": workers}, "local": {"users": ["alice"]}})
    s = smtplib.SMTP(mta.host, mta.port, timeout=10)
    s.ehlo("client.test")
    s.mail("a@client.test")
    assert s.rcpt("alice@localhost")[0] == 250
    rewrite(mta, local={"users": ["alice", "carol"]}, server={"hostname": "renamed.test"})
    hup_and_wait(mta, count=1 + (workers if workers > 1 else 0))
    assert s.rcpt("carol@localhost")[0] == 250          # the next command asks the new table
    code, reply = s.data(b"Subject: across the reload\r\n\r\nstill here\r\n")
    assert code == 250, reply
    assert s.noop()[0] == 250
    s.quit()
    assert "Subject: across the reload" in mta.wait_mail("carol")[0].read_text()
    with smtplib.SMTP(mta.host, mta.port, timeout=10) as fresh:
        assert b"renamed.test" in fresh.ehlo()[1]


def test_sighup_reopens_the_log_file_after_logrotate(make_mta):
    mta = make_mta()
    rotated = mta.log.with_name("mailward.log.1")
    os.rename(mta.log, rotated)
    mta.proc.send_signal(signal.SIGHUP)
    mta.wait_log("reload=ok")
    assert stat.S_IMODE(mta.log.stat().st_mode) == 0o640 & ~current_umask()
    assert "reload=ok" not in rotated.read_text()


def current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask
