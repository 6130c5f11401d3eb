"""DovecotBackend against a real Dovecot (2.3) auth service started in a tmp folder: only its
auth service runs (no protocols, no network listener); alice's password is {PLAIN}, carol's
{SHA512-CRYPT}. PLAIN and LOGIN succeed and fail as Dovecot decides; a Dovecot that is
stopped, or a socket that is not there, is a temporary failure (454), and the backend
connects again once Dovecot is back."""

from __future__ import annotations

import asyncio
import itertools
import time

import pytest

from mailward.auth.build import backend_from_config
from mailward.auth.dovecot import DovecotBackend, escape, parse_handshake_line, Handshake, unescape
from mailward.config import from_dict


def run(coro):
    return asyncio.run(coro)


_clients = itertools.count(1)


def client_addr() -> str:
    """A new client address each time: Dovecot delays a client that failed before (its auth
    penalty, by remote address), and one test's failures must not slow the next."""
    n = next(_clients)
    return f"127.0.{n // 250}.{n % 250 + 1}"


async def plain(backend, user, password, **kw):
    kw.setdefault("remote_addr", client_addr())
    return await backend.begin("PLAIN", **kw).step(f"\0{user}\0{password}".encode())


async def login(backend, user, password):
    exchange = backend.begin("LOGIN", remote_addr=client_addr(), local_addr="127.0.0.1")
    return [await exchange.step(None), await exchange.step(user.encode()), await exchange.step(password.encode())]


def with_backend(dovecot, body, **kw):
    async def go():
        backend = DovecotBackend(dovecot.socket, timeout=kw.pop("timeout", 10), **kw)
        await backend.start()
        try:
            return await body(backend)
        finally:
            await backend.close()
    return run(go())


def test_mechanisms_are_what_dovecot_announces(dovecot):
    async def body(backend):
        return (backend.mechanisms(external_identity=None),
                backend.mechanisms(external_identity="client.example"))

    assert with_backend(dovecot, body) == (["PLAIN", "LOGIN"], ["PLAIN", "LOGIN"])
    assert with_backend(dovecot, body, mechanisms=("LOGIN", "PLAIN", "EXTERNAL")) == (
        ["LOGIN", "PLAIN"], ["LOGIN", "PLAIN", "EXTERNAL"])


def test_plain_success_and_failures(dovecot):
    async def body(backend):
        return await asyncio.gather(plain(backend, "alice", "alice pw"), plain(backend, "carol", "carol pw"),
                                    plain(backend, "alice", "wrong pw", remote_addr="127.0.9.9"),
                                    plain(backend, "nobody", "x"),
                                    plain(backend, "alice", "alice pw", remote_addr="127.0.0.2",
                                          local_addr="127.0.0.1", secured=False))

    ok_alice, ok_carol, wrong, unknown, clear = with_backend(dovecot, body)
    assert ok_alice.user == "alice" and ok_carol.user == "carol" and clear.user == "alice"
    for step in (wrong, unknown):
        assert step.failed and not step.temporary and step.user is None
        assert "pw" not in step.reason.replace("password", "")
    assert wrong.reason == "PLAIN: Dovecot: user=alice: authentication failed"
    assert unknown.reason == "PLAIN: Dovecot: user=nobody: authentication failed"
    log = dovecot.log.read_text()
    assert "passwd-file(alice,127.0.9.9" in log   # rip= reached Dovecot (its penalty, its log)
    # what Dovecot received (auth_debug), with and without TLS
    assert "client in: AUTH\t3\tPLAIN\tservice=smtp\tsecured\trip=127.0.9.9\tresp=<hidden>" in log
    assert "\tPLAIN\tservice=smtp\tlip=127.0.0.1\trip=127.0.0.2\tresp=<hidden>" in log


def test_plain_without_initial_response_and_login(dovecot):
    async def body(backend):
        exchange = backend.begin("PLAIN", remote_addr=client_addr())
        first = await exchange.step(None)
        second = await exchange.step(b"\0carol\0carol pw")
        return first, second, await login(backend, "alice", "alice pw"), await login(backend, "alice", "nope")

    first, second, good, bad = with_backend(dovecot, body)
    assert first.challenge == b"" and second.user == "carol"
    assert [s.challenge for s in good[:2]] == [b"Username:", b"Password:"] and good[2].user == "alice"
    assert bad[2].failed and not bad[2].temporary


def test_many_exchanges_share_one_connection(dovecot):
    async def body(backend):
        results = await asyncio.gather(*(plain(backend, "carol", "carol pw") for _ in range(20)))
        return results, backend._conn._next_id

    results, last_id = with_backend(dovecot, body)
    assert all(r.user == "carol" for r in results) and last_id == 20


def test_mechanism_dovecot_does_not_offer_is_not_sent(dovecot):
    async def body(backend):
        refused = await backend.begin("SCRAM-SHA-256").step(b"n,,n=alice,r=abc")
        return refused, await plain(backend, "alice", "alice pw")   # the connection is still good

    refused, after = with_backend(dovecot, body)
    assert refused.failed and not refused.temporary and "does not offer" in refused.reason
    assert after.user == "alice"


def test_a_response_too_long_for_dovecot_fails_alone(dovecot):
    async def body(backend):
        long = await plain(backend, "alice", "x" * 13000)
        return long, await plain(backend, "alice", "alice pw")

    long, after = with_backend(dovecot, body)
    assert long.failed and not long.temporary and "too long for Dovecot" in long.reason
    assert after.user == "alice"


def test_missing_socket_is_a_temporary_failure(tmp_path):
    async def go():
        backend = DovecotBackend(tmp_path / "no-such-socket", timeout=2)
        await backend.start()
        mechs = backend.mechanisms(external_identity=None)
        step = await plain(backend, "alice", "alice pw")
        await backend.close()
        return mechs, step

    mechs, step = run(go())
    assert mechs == []
    assert step.failed and step.temporary and "cannot connect" in step.reason


def test_dovecot_stopped_then_back(dovecot):
    async def go():
        backend = DovecotBackend(dovecot.socket, timeout=5)
        await backend.start()
        before = await plain(backend, "alice", "alice pw")
        dovecot.stop()
        await asyncio.sleep(0.2)
        during = await plain(backend, "alice", "alice pw")
        mechs_during = backend.mechanisms(external_identity=None)   # the last known list
        dovecot.start()
        after = await plain(backend, "alice", "alice pw")
        await backend.close()
        return before, during, mechs_during, after

    before, during, mechs_during, after = run(go())
    assert before.user == "alice"
    assert during.failed and during.temporary and "Dovecot" in during.reason
    assert mechs_during == ["PLAIN", "LOGIN"]
    assert after.user == "alice"


def test_no_answer_in_time_is_a_temporary_failure(tmp_path):
    """A socket that accepts and says nothing (not Dovecot): the handshake times out."""
    path = tmp_path / "silent"

    async def go():
        server = await asyncio.start_unix_server(lambda r, w: None, path=str(path))
        backend = DovecotBackend(path, timeout=0.5)
        start = time.monotonic()
        step = await plain(backend, "alice", "alice pw")
        elapsed = time.monotonic() - start
        await backend.close()
        server.close()
        return step, elapsed

    step, elapsed = run(go())
    assert step.failed and step.temporary and "timeout" in step.reason
    assert elapsed < 3


def test_built_from_the_configuration(dovecot):
    backend = backend_from_config(from_dict({"auth": {"backend": "dovecot", "dovecot_socket": str(dovecot.socket),
                                                      "mechanisms": ["PLAIN"]}}))

    async def go():
        await backend.start()
        try:
            return backend.mechanisms(external_identity=None), await plain(backend, "carol", "carol pw")
        finally:
            await backend.close()

    mechs, step = run(go())
    assert mechs == ["PLAIN"] and step.user == "carol"


def test_protocol_details():
    assert unescape(escape("a\tb\nc\x01d\0")) == "a\tb\nc\x01d\0"
    assert "\t" not in escape("a\tb") and "\n" not in escape("a\nb")
    hs = Handshake()
    for line in ("VERSION\t1\t2", "MECH\tPLAIN\tplaintext", "MECH\tOTP\tprivate", "SPID\t1", "CUID\t2",
                 "COOKIE\tabc"):
        assert not parse_handshake_line(line, hs)
    assert parse_handshake_line("DONE", hs)
    assert hs.mechanisms == {"PLAIN": {"plaintext"}, "OTP": {"private"}}
    with pytest.raises(Exception, match="version 2"):
        parse_handshake_line("VERSION\t2\t0", Handshake())
