"""SMTP AUTH brute force against a real ``mailward serve``: the growing delay and the per-address
failure limit across connections, parallel guesses and parallel honest logins, IPv4 and IPv6,
a reload, a dropped exchange, other clients kept responsive, and unknown-user vs wrong-password
timing (printed; ``pytest -s`` shows the figures). Shared helpers: attack_kit.py."""

from __future__ import annotations

import signal
import socket
import statistics
import threading
import time

import pytest

from mailward.config.render import default_config_text
from tests.submission.conftest import (
    Submission,
    make_submission,
    submission_settings,
    write_routes,
)

from tests.submission import attack_kit
from tests.submission.attack_kit import (
    ALICE,
    Raw,
    auth_plain,
    b64,
    implicit,
    plain,
    tls,
)

# the shared module-scoped fixtures (a users file, a running server), made once per module
users = attack_kit.users
srv = attack_kit.srv


# ---- brute force ---------------------------------------------------------------------------

def test_dropped_mid_auth_leaks_nothing(make_mta, pki, users):
    """Connections dropped at every point of an exchange (after a 334, while the password is
    checked, during the failure delay) free their slot; failures already tried count."""
    s = make_submission(make_mta, pki, users, server={"max_connections_per_client": 3},
                        submission={"auth_failure_delay": 0.5, "max_auth_failures": 7})
    for _ in range(3):
        for step in ("after 334", "during the check", "during the delay"):
            c = implicit(s, pki)
            if step == "after 334":
                assert c.cmd("AUTH LOGIN " + b64("alice"))[0] == 334
            elif step == "during the check":
                c.send(f"AUTH PLAIN {plain('alice', 'wrong')}\r\n".encode())
            else:
                c.send(f"AUTH PLAIN {plain('alice', 'wrong')}\r\n".encode())
                time.sleep(0.3)
            c.close()
    time.sleep(1.0)
    with implicit(s, pki) as c:        # a slot is free: no 421 at connect
        assert c.greeting[0] == 220
        # the six guesses counted, the three exchanges left after a 334 did not: one more fails ...
        assert auth_plain(c, "alice", "wrong")[0] == 535
    with implicit(s, pki) as c:        # ... and the address is at its limit of 7
        assert auth_plain(c, "alice", ALICE)[0] == 421
    assert "Traceback" not in s.mta.log_text()


def test_failure_limit_holds_against_parallel_connections(make_mta, pki, users):
    """Many connections from one address guessing at the same moment get no more than
    submission.max_auth_failures guesses between them."""
    s = make_submission(make_mta, pki, users, server={"max_connections_per_client": 20},
                        submission={"auth_failure_delay": 0.0, "max_auth_failures": 3})
    clients = [implicit(s, pki) for _ in range(10)]
    for i, c in enumerate(clients):
        c.send(f"AUTH PLAIN {plain('alice', f'guess {i}')}\r\n".encode())
    codes = sorted(c.reply()[0] for c in clients)
    for c in clients:
        c.close()
    print(f"\n10 parallel guesses, max_auth_failures=3: replies {codes}")
    assert codes.count(535) <= 3 and set(codes) <= {535, 421}, codes


def test_parallel_logins_that_do_not_fail_are_not_cut_off(make_mta, pki, users):
    """Many clients behind one address (an office's NAT) logging in at once with their right
    passwords: more attempts in progress than max_auth_failures only wait, none gets 421."""
    s = make_submission(make_mta, pki, users, server={"max_connections_per_client": 20},
                        submission={"auth_failure_delay": 0.0, "max_auth_failures": 2})
    clients = [implicit(s, pki) for _ in range(8)]
    for c in clients:
        c.send(f"AUTH PLAIN {plain('alice', ALICE)}\r\n".encode())
    codes = [c.reply()[0] for c in clients]
    for c in clients:
        c.close()
    assert codes == [235] * 8, codes


def test_delay_grows_across_connections(make_mta, pki, users):
    """The delay before a 535 counts the address's failures, not only the session's: a new
    connection per guess does not reset it."""
    s = make_submission(make_mta, pki, users, submission={"auth_failure_delay": 0.4, "max_auth_failures": 10})
    times = []
    for i in range(3):
        with implicit(s, pki) as c:
            start = time.monotonic()
            assert auth_plain(c, "alice", f"guess {i}")[0] == 535
            times.append(time.monotonic() - start)
    print(f"\ndelays of three failures in three connections (0.4 s step): {[round(t, 2) for t in times]}")
    assert times[0] >= 0.4 and times[1] >= 0.8 and times[2] >= 1.2, times


def ipv6_loopback() -> bool:
    try:
        with socket.socket(socket.AF_INET6) as sock:
            sock.bind(("::1", 0))
        return True
    except OSError:
        return False


@pytest.mark.skipif(not ipv6_loopback(), reason="no IPv6 loopback")
def test_limit_per_address_on_ipv4_and_ipv6(make_mta, pki, users):
    settings, ports = submission_settings(pki, users, submission={"auth_failure_delay": 0.0,
                                                                  "max_auth_failures": 2})
    with socket.socket(socket.AF_INET6) as sock:
        sock.bind(("::1", 0))
        v6 = sock.getsockname()[1]
    settings["server"]["listen"].append(f"[::1]:{v6} submissions")
    mta = make_mta(settings, start=False)
    write_routes(mta)
    s = Submission(mta.start(), *ports)
    for _ in range(2):
        with Raw(v6, tls(pki), host="::1") as c:
            c.ehlo()
            assert auth_plain(c, "alice", "wrong")[0] == 535
    with Raw(v6, tls(pki), host="::1") as c:
        c.ehlo()
        assert auth_plain(c, "alice", ALICE)[0] == 421
    with implicit(s, pki) as c:         # 127.0.0.1 is another address: not refused
        assert auth_plain(c, "alice", ALICE)[0] == 235
    assert "relay=[::1]" in s.mta.wait_log("too many failures")


def test_limit_survives_a_reload(make_mta, pki, users):
    """SIGHUP, even one that changes the limits, does not forget the failures counted."""
    s = make_submission(make_mta, pki, users, submission={"auth_failure_delay": 0.0, "max_auth_failures": 3})
    for _ in range(2):
        with implicit(s, pki) as c:
            assert auth_plain(c, "alice", "wrong")[0] == 535
    settings = dict(s.mta.settings)
    settings["submission"] = dict(settings["submission"], max_auth_failures=2)
    s.mta.config.write_text(default_config_text(settings))
    offset = len(s.mta.log_text())
    s.mta.proc.send_signal(signal.SIGHUP)
    deadline = time.time() + 10
    while "reload=ok" not in s.mta.log_text()[offset:] and time.time() < deadline:
        time.sleep(0.05)
    assert "reload=ok" in s.mta.log_text()[offset:], s.mta.log_text()[offset:]
    with implicit(s, pki) as c:
        assert auth_plain(c, "alice", ALICE)[0] == 421


def test_failure_delay_does_not_block_other_clients(make_mta, pki, users):
    """While 6 connections guess passwords (each answer delayed, each guess an argon2id
    check), another client's EHLO is answered at once: the delay and the checks are off the
    event loop."""
    s = make_submission(make_mta, pki, users, server={"max_connections_per_client": 20},
                        submission={"auth_failure_delay": 0.1, "max_auth_failures": 10000})
    stop = time.monotonic() + 3.0
    guesses = []

    def attacker(n: int) -> None:
        with implicit(s, pki) as c:
            while time.monotonic() < stop:
                code = auth_plain(c, "alice", f"guess {n}")[0]
                guesses.append(code)

    threads = [threading.Thread(target=attacker, args=(n,)) for n in range(6)]
    for t in threads:
        t.start()
    time.sleep(0.5)
    latencies = []
    while time.monotonic() < stop - 0.3:
        with Raw(s.mx, source="127.0.0.2") as c:
            start = time.monotonic()
            c.ehlo()
            latencies.append(time.monotonic() - start)
        time.sleep(0.05)
    for t in threads:
        t.join(30)
    print(f"\nEHLO latency during the attack: {len(latencies)} samples, median "
          f"{statistics.median(latencies) * 1000:.1f} ms, max {max(latencies) * 1000:.1f} ms; "
          f"{len(guesses)} guesses answered")
    assert max(latencies) < 0.5, latencies
    assert set(guesses) == {535}


def test_unknown_user_and_wrong_password_take_the_same_time(srv, pki):
    times: dict[str, list[float]] = {"unknown user": [], "wrong password": []}
    with implicit(srv, pki) as c:
        auth_plain(c, "alice", "warm up")
        for i in range(8):
            for kind, user in (("unknown user", f"nobody{i}"), ("wrong password", "alice")):
                start = time.monotonic()
                assert auth_plain(c, user, "not the password")[0] == 535
                times[kind].append(time.monotonic() - start)
    unknown, wrong = (statistics.median(times[k]) for k in ("unknown user", "wrong password"))
    print(f"\nPLAIN 535 times (median of 8): unknown user {unknown * 1000:.1f} ms, wrong password "
          f"{wrong * 1000:.1f} ms")
    assert abs(unknown - wrong) < max(0.03, 0.3 * min(unknown, wrong)), times
