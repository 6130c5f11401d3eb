"""Per-role limits, end to end: a real ``mailward serve`` with an mx, a submission and a
submissions listener, ``[server]`` limits for port 25 and ``[submission]`` overrides for the
other two. Each limit is seen as a client sees it (SIZE in EHLO, the 452/552/421 replies, a
connection closed by its timer) and logged; port 25 keeps its own values; a SIGHUP that changes
an override applies to the next connection; ``server.workers = 2`` gives the same answers."""

from __future__ import annotations

import signal
import time

import pytest

from mailward.config import default_config_text
from tests.conftest import MTA
from tests.submission.attack_kit import ALICE, Raw, auth_plain, implicit, log_since, tls
from tests.submission.conftest import Submission, submission_settings, write_routes

SERVER = {"max_message_size": 10000, "max_recipients": 2, "max_connections_per_client": 2,
          "idle_timeout": 30.0, "client_limit_exceptions": []}
SUBMISSION = {"auth_failure_delay": 0.0, "max_message_size": 50000, "max_recipients": 4,
              "max_connections_per_client": 4, "max_connections": 6, "idle_timeout": 1.5}


def start(tmp_path_factory, pki, users_file, workers: int = 1) -> Submission:
    settings, ports = submission_settings(pki, users_file, server=dict(SERVER, workers=workers),
                                          submission=SUBMISSION)
    mta = MTA(tmp_path_factory.mktemp("role-limits"), settings)
    write_routes(mta)
    mta.start()
    return Submission(mta, *ports)


@pytest.fixture(scope="module")
def srv(tmp_path_factory, pki, users_file):
    s = start(tmp_path_factory, pki, users_file)
    yield s
    s.mta.kill9()


def size_of(ehlo: str) -> int:
    return int(next(line for line in ehlo.splitlines() if line.startswith("SIZE")).split()[1])


def submission_client(s: Submission, pki, source: str = "127.0.0.1") -> Raw:
    c = Raw(s.submission, source=source)
    c.ehlo()
    c.starttls(tls(pki))
    c.ehlo()
    return c


def test_size_is_the_roles(srv, pki):
    with Raw(srv.mx) as mx:
        assert size_of(mx.ehlo()) == 10000
    with submission_client(srv, pki) as c:
        assert size_of(c.ehlo()) == 50000
    with implicit(srv, pki) as c:
        assert size_of(c.ehlo()) == 50000
        assert auth_plain(c, "alice", ALICE)[0] == 235
        assert c.cmd("MAIL FROM:<alice@example.org> SIZE=40000")[0] == 250
        assert c.cmd("RSET")[0] == 250
        code, text = c.cmd("MAIL FROM:<alice@example.org> SIZE=60000")
        assert (code, text[:5]) == (552, "5.3.4"), text
    with Raw(srv.mx) as mx:
        mx.ehlo()
        assert mx.cmd("MAIL FROM:<a@client.test> SIZE=40000")[0] == 552


def test_a_40k_message_is_accepted_on_submission_not_on_port_25(srv, pki):
    body = b"From: alice@example.org\r\nSubject: big\r\n\r\n" + (b"x" * 76 + b"\r\n") * 500   # ~39 KB
    with submission_client(srv, pki) as c:
        assert auth_plain(c, "alice", ALICE)[0] == 235
        assert c.cmd("MAIL FROM:<alice@example.org>")[0] == 250
        assert c.cmd("RCPT TO:<user@localhost>")[0] == 250
        assert c.cmd("DATA")[0] == 354
        c.send(body + b".\r\n")
        assert c.reply()[0] == 250
    with Raw(srv.mx) as mx:
        mx.ehlo()
        assert mx.cmd("MAIL FROM:<a@client.test>")[0] == 250
        assert mx.cmd("RCPT TO:<user@localhost>")[0] == 250
        assert mx.cmd("DATA")[0] == 354
        mx.send(body + b".\r\n")
        code, text = mx.reply()
        assert (code, text[:5]) == (552, "5.3.4"), text


def test_recipients_per_message_are_the_roles(srv, pki):
    with submission_client(srv, pki) as c:
        assert auth_plain(c, "alice", ALICE)[0] == 235
        assert c.cmd("MAIL FROM:<alice@example.org>")[0] == 250
        assert [c.cmd(f"RCPT TO:<u{i}@localhost>")[0] for i in range(5)] == [250, 250, 250, 250, 452]
    with Raw(srv.mx) as mx:
        mx.ehlo()
        assert mx.cmd("MAIL FROM:<a@client.test>")[0] == 250
        assert [mx.cmd(f"RCPT TO:<u{i}@localhost>")[0] for i in range(3)] == [250, 250, 452]


def test_connections_per_client_are_counted_per_role(srv, pki):
    """Two on port 25 fill the client's mx share; its four submission places are its own."""
    offset = len(srv.mta.log_text())
    mx = [Raw(srv.mx, source="127.0.0.3") for _ in range(2)]
    try:
        with Raw(srv.mx, source="127.0.0.3", greet=False) as third:
            code, text = third.reply()
            assert (code, text[:5]) == (421, "4.7.0"), text
        sub = [Raw(srv.submission, source="127.0.0.3") for _ in range(4)]
        try:
            assert all(c.greeting[0] == 220 for c in sub)
            with Raw(srv.submissions, tls(pki), source="127.0.0.3", greet=False) as fifth:
                code, text = fifth.reply()
                assert (code, text[:5]) == (421, "4.7.0"), text
        finally:
            for c in sub:
                c.close()
    finally:
        for c in mx:
            c.close()
    log = srv.mta.wait_log("role=submissions")
    assert "relay=[127.0.0.3], reject=421 4.7.0 too many connections from you, role=submissions" \
        in log[offset:], log[offset:]


def test_submission_connections_in_all(srv, pki):
    """submission.max_connections = 6 across addresses; port 25 still takes its own."""
    held = [Raw(srv.submission, source=f"127.0.0.{10 + i}") for i in range(6)]
    try:
        with Raw(srv.submission, source="127.0.0.30", greet=False) as seventh:
            code, text = seventh.reply()
            assert (code, text[:5]) == (421, "4.3.2"), text
        with Raw(srv.mx, source="127.0.0.30") as mx:
            assert mx.greeting[0] == 220
    finally:
        for c in held:
            c.close()
    time.sleep(0.3)   # the server sees the closes
    with Raw(srv.submission, source="127.0.0.30") as again:
        assert again.greeting[0] == 220


def test_idle_timeout_is_the_roles(srv, pki):
    with submission_client(srv, pki) as c, Raw(srv.mx) as mx:
        mx.ehlo()
        started = time.monotonic()
        code, text = c.reply()   # said and closed by its 1.5 s timer
        assert code == 421, text
        assert c.gone()
        assert 1.0 < time.monotonic() - started < 10
        assert mx.cmd("NOOP")[0] == 250   # port 25's 30 s timer still runs


def test_sighup_changes_the_override_for_new_connections(tmp_path_factory, pki, users_file):
    s = start(tmp_path_factory, pki, users_file)
    try:
        mta = s.mta
        mta.settings["submission"]["max_message_size"] = 70000
        mta.config.write_text(default_config_text(mta.settings))
        before = mta.log_text().count("reload=ok")
        mta.proc.send_signal(signal.SIGHUP)
        deadline = time.time() + 15
        while mta.log_text().count("reload=ok") <= before and time.time() < deadline:
            time.sleep(0.05)
        with submission_client(s, pki) as c:
            assert size_of(c.ehlo()) == 70000
        with Raw(s.mx) as mx:
            assert size_of(mx.ehlo()) == 10000
    finally:
        s.mta.kill9()


def test_with_two_workers(tmp_path_factory, pki, users_file):
    s = start(tmp_path_factory, pki, users_file, workers=2)
    try:
        offset = len(s.mta.log_text())
        with submission_client(s, pki) as c:
            assert size_of(c.ehlo()) == 50000
            assert auth_plain(c, "alice", ALICE)[0] == 235
        with Raw(s.mx) as mx:
            assert size_of(mx.ehlo()) == 10000
        assert "AUTH=server" in s.mta.wait_log("AUTH=server")[offset:]
        assert "Traceback" not in log_since(s, 0)
    finally:
        s.mta.kill9()
