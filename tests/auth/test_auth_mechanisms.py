"""The mechanism cores over a real users file (cheap argon2id parameters): PLAIN (RFC 4616),
LOGIN, SCRAM-SHA-256 (RFC 5802/7677) against scramp's own client, EXTERNAL (RFC 4422
Appendix A). What the session sees: challenges, the identity, failed/temporary, and a reason
that never holds the password. Malformed input never raises."""

from __future__ import annotations

import asyncio
import base64

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scramp import ScramClient

from mailward.auth.users import UsersFileBackend
from tests.auth.conftest import users_file

PASSWORD = "Corr3ct horse ünïcode"


@pytest.fixture()
def backend(tmp_path):
    path = users_file(tmp_path, {"alice": PASSWORD, "bob@example.org": "bob pw"})
    return UsersFileBackend(path, mechanisms=("SCRAM-SHA-256", "PLAIN", "LOGIN", "EXTERNAL"))


def run(coro):
    return asyncio.run(coro)


async def steps(exchange, *responses):
    """Every step's result for the given responses, in order."""
    return [await exchange.step(r) for r in responses]


def assert_failed(step, *, temporary=False, secret=PASSWORD):
    assert step.failed and step.user is None and step.challenge is None
    assert step.temporary is temporary
    assert secret not in step.reason and step.reason


# ---- mechanisms offered

def test_mechanisms_in_configured_order_and_external_only_with_an_identity(backend):
    assert backend.mechanisms(external_identity=None) == ["SCRAM-SHA-256", "PLAIN", "LOGIN"]
    assert backend.mechanisms(external_identity="client.example") == ["SCRAM-SHA-256", "PLAIN", "LOGIN", "EXTERNAL"]


def test_a_mechanism_not_offered_fails_at_once(backend, tmp_path):
    step = run(backend.begin("CRAM-MD5").step(None))
    assert_failed(step)
    assert "not offered" in step.reason
    plain_only = UsersFileBackend(backend.path, mechanisms=("PLAIN",))
    assert_failed(run(plain_only.begin("LOGIN").step(None)))
    assert "not offered" in run(plain_only.begin("EXTERNAL", external_identity="x").step(b"")).reason


def test_unknown_mechanism_names_in_the_configuration_are_refused(tmp_path):
    with pytest.raises(ValueError, match="CRAM-MD5"):
        UsersFileBackend(users_file(tmp_path, {}), mechanisms=("PLAIN", "CRAM-MD5"))


# ---- PLAIN

def test_plain_with_initial_response(backend):
    step = run(backend.begin("PLAIN").step(f"\0alice\0{PASSWORD}".encode()))
    assert step.user == "alice" and not step.failed and step.authzid == ""


def test_plain_without_initial_response_gets_an_empty_challenge(backend):
    first, second = run(steps(backend.begin("plain"), None, f"\0alice\0{PASSWORD}".encode()))
    assert first.challenge == b"" and second.user == "alice"


def test_plain_authzid_equal_to_authcid_is_accepted_and_reported(backend):
    step = run(backend.begin("PLAIN").step(b"bob@example.org\0bob@example.org\0bob pw"))
    assert step.user == "bob@example.org" and step.authzid == "bob@example.org"


def test_plain_authzid_of_someone_else_is_refused_unless_proxying_is_allowed(backend, tmp_path):
    step = run(backend.begin("PLAIN").step(f"bob@example.org\0alice\0{PASSWORD}".encode()))
    assert_failed(step)
    assert "may not act as authzid=bob@example.org" in step.reason
    proxy = UsersFileBackend(backend.path, allow_proxy=True)
    step = run(proxy.begin("PLAIN").step(f"bob@example.org\0alice\0{PASSWORD}".encode()))
    assert step.user == "alice" and step.authzid == "bob@example.org"


def test_plain_wrong_password_and_unknown_user_fail_alike(backend):
    wrong = run(backend.begin("PLAIN").step(b"\0alice\0nope"))
    unknown = run(backend.begin("PLAIN").step(b"\0mallory\0nope"))
    assert_failed(wrong, secret="nope")
    assert_failed(unknown, secret="nope")
    assert wrong.reason == "PLAIN: authcid=alice: unknown user or wrong password"
    assert unknown.reason == "PLAIN: authcid=mallory: unknown user or wrong password"


@pytest.mark.parametrize("message, why", [
    (b"alice" + PASSWORD.encode(), "0 NUL separators"),
    (b"\0alice" + PASSWORD.encode(), "1 NUL separators"),
    (b"\0alice\0" + PASSWORD.encode() + b"\0", "3 NUL separators"),
    (b"\0\0" + PASSWORD.encode(), "empty authcid"),
    (b"\0alice\0", "empty password"),
    (b"\0al\xffice\0" + PASSWORD.encode(), "authcid is not UTF-8"),
    (b"\0alice\0\xc3(" + PASSWORD.encode(), "password is not UTF-8"),
    (b"", "0 NUL separators"),
])
def test_plain_malformed_messages_fail_with_a_reason(backend, message, why):
    step = run(backend.begin("PLAIN").step(message))
    assert_failed(step)
    assert why in step.reason


def test_a_finished_exchange_stays_finished(backend):
    exchange = backend.begin("PLAIN")
    assert run(exchange.step(f"\0alice\0{PASSWORD}".encode())).user == "alice"
    assert_failed(run(exchange.step(f"\0alice\0{PASSWORD}".encode())))


# ---- LOGIN

def test_login_asks_username_then_password(backend):
    a, b, c = run(steps(backend.begin("LOGIN"), None, b"alice", PASSWORD.encode()))
    assert (a.challenge, b.challenge, c.user) == (b"Username:", b"Password:", "alice")


def test_login_initial_response_is_the_username(backend):
    a, b = run(steps(backend.begin("LOGIN"), b"bob@example.org", b"bob pw"))
    assert a.challenge == b"Password:" and b.user == "bob@example.org"


def test_login_failures(backend):
    assert_failed(run(steps(backend.begin("LOGIN"), None, b"alice", b"Wr0ngSecret"))[-1], secret="Wr0ngSecret")
    assert "empty user name" in run(steps(backend.begin("LOGIN"), None, b"", b"x"))[-1].reason
    assert "empty password" in run(steps(backend.begin("LOGIN"), None, b"alice", b""))[-1].reason
    assert "not UTF-8" in run(steps(backend.begin("LOGIN"), None, b"\xff", b"x"))[-1].reason


# ---- EXTERNAL

def test_external_succeeds_as_the_certificate_identity(backend):
    step = run(backend.begin("EXTERNAL", external_identity="bob@example.org").step(b""))
    assert step.user == "bob@example.org" and step.authzid == ""
    first, second = run(steps(backend.begin("EXTERNAL", external_identity="bob@example.org"), None,
                              b"bob@example.org"))
    assert first.challenge == b"" and second.user == "bob@example.org" and second.authzid == "bob@example.org"


def test_external_refuses_another_authzid_and_a_missing_identity(backend):
    step = run(backend.begin("EXTERNAL", external_identity="bob@example.org").step(b"admin"))
    assert_failed(step)
    assert "may not act as authzid=admin" in step.reason
    assert_failed(run(backend.begin("EXTERNAL").step(b"")))


def test_external_refuses_an_identity_that_is_not_a_user(backend):
    """A verified certificate names someone; only a user of the file is an account."""
    step = run(backend.begin("EXTERNAL", external_identity="client.example").step(b""))
    assert_failed(step)
    assert step.reason == "EXTERNAL: identity=client.example: unknown user"


# ---- SCRAM-SHA-256 with scramp's client

def scram_login(backend, user, password, *, tamper_proof=False):
    """A full SCRAM-SHA-256 exchange; returns (steps, client)."""
    client = ScramClient(["SCRAM-SHA-256"], user, password)
    exchange = backend.begin("SCRAM-SHA-256")
    results = []

    async def go():
        first = await exchange.step(client.get_client_first().encode())
        results.append(first)
        if first.challenge is None:
            return
        client.set_server_first(first.challenge.decode())
        final = client.get_client_final()
        if tamper_proof:
            head, proof = final.rsplit("p=", 1)
            raw = bytearray(base64.b64decode(proof))
            raw[0] ^= 1
            final = head + "p=" + base64.b64encode(bytes(raw)).decode()
        second = await exchange.step(final.encode())
        results.append(second)
        if second.challenge is None:
            return
        client.set_server_final(second.challenge.decode())   # raises unless the server proved the key
        results.append(await exchange.step(b""))

    asyncio.run(go())
    return results, client


def test_scram_full_exchange_with_the_server_signature_checked(backend):
    results, _ = scram_login(backend, "alice", PASSWORD)
    assert [r.challenge is not None for r in results] == [True, True, False]
    assert results[1].challenge.startswith(b"v=")
    assert results[-1].user == "alice"


def test_scram_without_initial_response_starts_with_an_empty_challenge(backend):
    client = ScramClient(["SCRAM-SHA-256"], "alice", PASSWORD)
    exchange = backend.begin("SCRAM-SHA-256")
    assert run(exchange.step(None)).challenge == b""
    assert run(exchange.step(client.get_client_first().encode())).challenge.startswith(b"r=")


def test_scram_wrong_password(backend):
    results, _ = scram_login(backend, "alice", "N0tIt-secret")
    assert_failed(results[-1], secret="N0tIt-secret")
    assert results[-1].reason == "SCRAM-SHA-256: authcid=alice: wrong password"


def test_scram_wrong_proof(backend):
    results, _ = scram_login(backend, "alice", PASSWORD, tamper_proof=True)
    assert_failed(results[-1])
    assert "wrong password" in results[-1].reason


def test_scram_unknown_user_looks_like_a_known_one_until_the_proof(backend):
    known, _ = scram_login(backend, "alice", "guess")
    unknown, _ = scram_login(backend, "mallory", "guess")
    again, _ = scram_login(backend, "mallory", "guess")

    def salt(step):
        return dict(kv.split("=", 1) for kv in step.challenge.decode().split(","))["s"]

    assert len(base64.b64decode(salt(unknown[0]))) == len(base64.b64decode(salt(known[0])))
    assert salt(unknown[0]) == salt(again[0])   # the same decoy salt each time: not a tell
    assert_failed(unknown[-1])
    assert "unknown user" in unknown[-1].reason


@pytest.mark.parametrize("client_first", [b"", b"garbage", b"n,,", b"x,,n=alice,r=abc", b"n,a=bob,n=alice,r=abc",
                                          b"p=tls-unique,,n=alice,r=abc", b"n,,n=al\xffice,r=abc", b"n,,n=,r=abc"])
def test_scram_malformed_client_first_fails(backend, client_first):
    assert_failed(run(backend.begin("SCRAM-SHA-256").step(client_first)))


def test_scram_malformed_client_final_and_trailing_data_fail(backend):
    client = ScramClient(["SCRAM-SHA-256"], "alice", PASSWORD)
    exchange = backend.begin("SCRAM-SHA-256")
    run(exchange.step(client.get_client_first().encode()))
    assert_failed(run(exchange.step(b"c=biws,r=wrongnonce,p=AAAA")))
    results = []

    async def go():
        client2 = ScramClient(["SCRAM-SHA-256"], "alice", PASSWORD)
        ex = backend.begin("SCRAM-SHA-256")
        first = await ex.step(client2.get_client_first().encode())
        client2.set_server_first(first.challenge.decode())
        await ex.step(client2.get_client_final().encode())
        results.append(await ex.step(b"unexpected"))

    asyncio.run(go())
    assert_failed(results[0])
    assert "data after the server-final" in results[0].reason


# ---- nothing a client sends makes a step raise or succeed by accident

@settings(max_examples=60, deadline=None)
@given(mech=st.sampled_from(["PLAIN", "LOGIN", "SCRAM-SHA-256", "EXTERNAL", "DIGEST-MD5"]),
       responses=st.lists(st.one_of(st.none(), st.binary(max_size=80)), min_size=1, max_size=4))
def test_arbitrary_input_never_raises(tmp_path_factory, mech, responses):
    backend = _fuzz_backend(tmp_path_factory)
    exchange = backend.begin(mech, external_identity="client.example")

    async def go():
        out = []
        for r in responses:
            step = await exchange.step(r)
            out.append(step)
            if step.challenge is None:
                break
        return out

    for step in asyncio.run(go()):
        assert isinstance(step.reason, str)
        if step.user is not None:   # only EXTERNAL can succeed without a secret
            assert mech == "EXTERNAL" and step.user == "client.example"


_FUZZ = {}


def _fuzz_backend(factory):
    if "b" not in _FUZZ:
        path = users_file(factory.mktemp("fuzz"), {"alice": PASSWORD})
        _FUZZ["b"] = UsersFileBackend(path, mechanisms=("SCRAM-SHA-256", "PLAIN", "LOGIN", "EXTERNAL"))
    return _FUZZ["b"]
