"""MTA-STS discovery end to end: a real NSD serving the ``_mta-sts`` records, a real HTTPS
policy host with certificates from mailward's CA, the JSON cache on disk (RFC 8461 §3, §5.1;
failure types from RFC 8460 §4.3)."""

from __future__ import annotations

import asyncio
import json
import logging

import pytest

from conftest import start_policy_host
from mailward.dns import Resolver
from mailward.mtasts import FetchOptions, MtaSts, StsPolicy, mx_allowed
from mailward.mtasts.cache import PolicyCache
from policyhost import Answer


def policy(mode: str, *mx: str, max_age: int = 604800) -> bytes:
    lines = ["version: STSv1", f"mode: {mode}"] + [f"mx: {m}" for m in mx] + [f"max_age: {max_age}"]
    return ("\r\n".join(lines) + "\r\n").encode()


@pytest.fixture
def make(sts_dns, sts_pki, policy_host, tmp_path):
    """MtaSts objects as the delivery side builds them, on the test DNS and policy host."""
    def build(*, timeout: float = 3.0, max_size: int = 65536, port: int | None = None, dns: str | None = None,
              dns_timeout: float = 2.0, cache="cache.json", **kw) -> MtaSts:
        options = FetchOptions(ca_file=sts_pki.ca, timeout=timeout, max_size=max_size,
                               port=port or policy_host.port)
        return MtaSts(Resolver([dns or sts_dns], timeout=dns_timeout), options=options,
                      cache_file=tmp_path / cache if cache else "", **kw)
    return build


def run(coro):
    return asyncio.run(coro)


def test_enforce_is_fetched_then_served_from_the_cache(make, policy_host, tmp_path, caplog):
    policy_host.serve("enforce.sts.test", Answer(policy("enforce", "mx1.enforce.sts.test", "*.mail.enforce.sts.test")))
    before = policy_host.count("enforce.sts.test")
    sts = make()
    caplog.set_level(logging.DEBUG, logger="mailward")
    first = run(sts.policy_for("Enforce.STS.test."))
    assert first.source == "fetched" and first.error is None and first.failure is None
    assert first.policy.mode == "enforce" and first.policy.id == "enf20260101" and first.enforced
    assert first.policy.mx == ("mx1.enforce.sts.test", "*.mail.enforce.sts.test")
    assert ("mta_sts=enforce.sts.test, source=fetched, mode=enforce, id=enf20260101, max_age=604800, "
            "mx=mx1.enforce.sts.test|*.mail.enforce.sts.test") in caplog.messages
    second = run(sts.policy_for("enforce.sts.test"))
    assert second.source == "cache" and second.policy == first.policy
    assert policy_host.count("enforce.sts.test") == before + 1           # the id did not change: no fetch
    assert policy_host.paths[-1] == ("mta-sts.enforce.sts.test", "/.well-known/mta-sts.txt")
    assert mx_allowed(first, "mx1.enforce.sts.test") == (
        True, "MTA-STS enforce: mx1.enforce.sts.test matches mx mx1.enforce.sts.test")
    assert mx_allowed(first, "smtp.mail.enforce.sts.test.")[0]
    ok, reason = mx_allowed(first, "a.b.mail.enforce.sts.test")
    assert not ok and reason == ("MTA-STS enforce: a.b.mail.enforce.sts.test matches no mx of the policy "
                                 "(mx1.enforce.sts.test, *.mail.enforce.sts.test)")
    saved = json.loads((tmp_path / "cache.json").read_text())
    assert saved["policies"]["enforce.sts.test"]["id"] == "enf20260101"


def test_testing_mode_allows_but_says_report(make, policy_host):
    policy_host.serve("testing.sts.test", Answer(policy("testing", "mx1.testing.sts.test"),
                                                 content_type="text/plain; charset=utf-8"))
    result = run(make().policy_for("testing.sts.test"))
    assert result.source == "fetched" and result.policy.mode == "testing" and not result.enforced
    ok, reason = mx_allowed(result, "rogue.example")
    assert ok and "report only" in reason and reason.startswith("MTA-STS testing: rogue.example matches no mx")


def test_mode_none_is_no_policy(make, policy_host):
    policy_host.serve("none.sts.test", Answer(policy("none", max_age=86400)))
    result = run(make().policy_for("none.sts.test"))
    assert result.source == "fetched" and result.policy.mode == "none" and not result.enforced
    assert mx_allowed(result, "anything.example") == (True, "MTA-STS policy mode none")


def test_changed_id_refetches(make, policy_host, tmp_path):
    PolicyCache(tmp_path / "cache.json").put(
        "changed.sts.test", StsPolicy("testing", ("old.changed.sts.test",), 604800, "old1", 1e10 - 10))
    policy_host.serve("changed.sts.test", Answer(policy("enforce", "mx1.changed.sts.test")))
    before = policy_host.count("changed.sts.test")
    sts = make(clock=lambda: 1e10)
    result = run(sts.policy_for("changed.sts.test"))
    assert result.source == "fetched" and result.policy.id == "new2" and result.policy.mode == "enforce"
    assert policy_host.count("changed.sts.test") == before + 1
    assert json.loads((tmp_path / "cache.json").read_text())["policies"]["changed.sts.test"]["id"] == "new2"


def test_unchanged_id_after_restart_is_not_fetched(make, policy_host):
    policy_host.serve("same.sts.test", Answer(policy("enforce", "mx1.same.sts.test")))
    before = policy_host.count("same.sts.test")
    assert run(make().policy_for("same.sts.test")).source == "fetched"
    again = run(make().policy_for("same.sts.test"))          # a new object: the file is the cache
    assert again.source == "cache" and again.policy.mode == "enforce"
    assert policy_host.count("same.sts.test") == before + 1


BIG = policy("enforce", "mx1.big.sts.test") + b"x-padding: " + b"p" * 70000 + b"\r\n"
FAILURES = [
    ("wrongname", Answer(policy("enforce", "mx")), {}, "sts-webpki-invalid", "mta-sts.wrongname.sts.test"),
    ("untrusted", Answer(policy("enforce", "mx")), {}, "sts-webpki-invalid", "does not validate"),
    ("notfound", Answer(b"no\n", 404), {}, "sts-policy-fetch-error", "HTTP 404"),
    ("redirect", Answer(b"", 301, headers={"Location": "https://elsewhere.test/"}), {}, "sts-policy-fetch-error",
     "HTTP 301 Moved Permanently to https://elsewhere.test/: redirect (not followed"),
    ("ctype", Answer(policy("enforce", "mx"), content_type="text/html"), {}, "sts-policy-invalid",
     "Content-Type 'text/html' is not text/plain"),
    ("big", Answer(BIG), {}, "sts-policy-fetch-error", "larger than max_policy_size (65536)"),
    ("bigstream", Answer(BIG, length=False), {}, "sts-policy-fetch-error",
     "policy larger than max_policy_size (65536 bytes)"),
    ("slow", Answer(policy("enforce", "mx"), delay=2.5), {"timeout": 1.0}, "sts-policy-fetch-error",
     "no answer within 1 seconds"),
    ("malformed", Answer(b"version: STSv1\nmode: enforce\nmx: mx1.malformed.sts.test\nmax_age: soon\n"), {},
     "sts-policy-invalid", "line 4: max_age 'soon' is not a number of seconds"),
    ("noaddr", None, {}, "sts-policy-fetch-error", "cannot resolve mta-sts.noaddr.sts.test"),
]


@pytest.mark.parametrize("label, answer, options, failure, text", FAILURES, ids=[f[0] for f in FAILURES])
def test_fetch_failures(make, policy_host, caplog, label, answer, options, failure, text):
    domain = f"{label}.sts.test"
    if answer is not None:
        policy_host.serve(domain, answer)
    caplog.set_level(logging.INFO, logger="mailward")
    result = run(make(**options).policy_for(domain))
    assert (result.policy, result.source, result.failure) == (None, "none", failure)
    assert text in result.error, result.error
    assert mx_allowed(result, "any.example") == (True, "no MTA-STS policy")
    assert any(m.startswith(f"mta_sts={domain}, failure={failure}, kept=none, error: ") for m in caplog.messages)


def test_fetch_failure_keeps_a_fresh_cached_policy(make, policy_host, tmp_path, caplog):
    old = StsPolicy("enforce", ("mx1.cached.sts.test",), 604800, "k0", 1e10 - 100)
    PolicyCache(tmp_path / "cache.json").put("cached.sts.test", old)
    policy_host.serve("cached.sts.test", Answer(b"gone\n", 500))
    caplog.set_level(logging.INFO, logger="mailward")
    result = run(make(clock=lambda: 1e10).policy_for("cached.sts.test"))
    assert result.policy == old and result.source == "cache" and result.enforced
    assert result.failure == "sts-policy-fetch-error" and "HTTP 500" in result.error
    assert not mx_allowed(result, "evil.example")[0]
    assert any(m.startswith("mta_sts=cached.sts.test, failure=sts-policy-fetch-error, kept=cache") for m in caplog.messages)


@pytest.mark.parametrize("label, problem", [("notxt", None), ("twotxt", "2 STSv1 records"),
                                            ("badtxt", "invalid STSv1 record")])
def test_no_valid_record_is_no_policy(make, policy_host, label, problem):
    before = policy_host.count(f"{label}.sts.test")
    result = run(make().policy_for(f"{label}.sts.test"))
    assert (result.policy, result.source, result.failure) == (None, "none", None)
    assert (problem in result.error) if problem else result.error is None
    assert policy_host.count(f"{label}.sts.test") == before


def test_other_txt_records_and_extensions_are_ignored(make, policy_host):
    policy_host.serve("othertxt.sts.test", Answer(policy("enforce", "mx1.othertxt.sts.test")))
    result = run(make().policy_for("othertxt.sts.test"))
    assert result.source == "fetched" and result.policy.id == "o1"


def test_cache_survives_a_restart_with_dns_and_https_down(make, sts_pki, tmp_path):
    own = start_policy_host(sts_pki)                     # a host of its own, stopped below
    try:
        own.serve("restart.sts.test", Answer(policy("enforce", "mx1.restart.sts.test")))
        assert run(make(port=own.port).policy_for("restart.sts.test")).source == "fetched"
    finally:
        own.stop()
    dead = f"127.0.0.1:{own.port}"                       # nothing answers DNS there
    result = run(make(port=own.port, dns=dead, dns_timeout=0.5).policy_for("restart.sts.test"))
    assert result.source == "cache" and result.enforced and "TXT lookup" in result.error
    assert mx_allowed(result, "mx1.restart.sts.test")[0] and not mx_allowed(result, "mx.attacker.example")[0]
    # DNS up, the id unchanged, the policy host gone: still the cached policy, no fetch tried
    result = run(make(port=own.port).policy_for("restart.sts.test"))
    assert result.source == "cache" and result.error is None and result.enforced


def test_corrupt_cache_file_is_logged_and_ignored(make, policy_host, tmp_path, caplog):
    (tmp_path / "cache.json").write_text('{"version": 1, "policies": {"enforce.sts.test": ')
    policy_host.serve("enforce.sts.test", Answer(policy("enforce", "mx1.enforce.sts.test")))
    caplog.set_level(logging.INFO, logger="mailward")
    result = run(make().policy_for("enforce.sts.test"))
    assert result.source == "fetched"
    warnings = [m for m in caplog.messages if m.startswith("mta_sts=cache, file=")]
    assert len(warnings) == 1 and "not JSON" in warnings[0] and "the cache starts empty" in warnings[0]
    assert json.loads((tmp_path / "cache.json").read_text())["policies"]["enforce.sts.test"]["mode"] == "enforce"


def test_wrong_entries_in_the_cache_are_dropped_one_by_one(tmp_path, caplog):
    good = {"mode": "enforce", "mx": ["a.example"], "max_age": 600, "id": "1", "fetched_at": 1e10}
    (tmp_path / "c.json").write_text(json.dumps({"version": 1, "policies": {
        "good.example": good, "bad.example": dict(good, mode="strict"), "age.example": dict(good, max_age="x")}}))
    caplog.set_level(logging.INFO, logger="mailward")
    cache = PolicyCache(tmp_path / "c.json", clock=lambda: 1e10 + 1)
    assert cache.domains() == ["good.example"]
    assert sum("entry" in m and "ignored" in m for m in caplog.messages) == 2


def test_expired_cache_is_not_used(make, policy_host, tmp_path):
    now = [1e10]
    policy_host.serve("refresh.sts.test", Answer(policy("enforce", "mx1.refresh.sts.test", max_age=100)))
    sts = make(clock=lambda: now[0])
    before = policy_host.count("refresh.sts.test")
    assert run(sts.policy_for("refresh.sts.test")).source == "fetched"
    now[0] += 99
    assert run(sts.policy_for("refresh.sts.test")).source == "cache"
    now[0] += 2                                          # past max_age
    assert run(sts.policy_for("refresh.sts.test")).source == "fetched"
    assert policy_host.count("refresh.sts.test") == before + 2


def test_refresh_due_fetches_before_expiry(make, policy_host):
    now = [1e10]
    policy_host.serve("refresh.sts.test", Answer(policy("testing", "mx1.refresh.sts.test", max_age=86400)))
    sts = make(clock=lambda: now[0], refresh_after=3600)
    before = policy_host.count("refresh.sts.test")
    assert run(sts.policy_for("refresh.sts.test")).source == "fetched"
    assert sts.due() == [] and run(sts.refresh_due()) == {}
    now[0] += 3600
    assert sts.due() == ["refresh.sts.test"]
    policy_host.serve("refresh.sts.test", Answer(policy("enforce", "mx1.refresh.sts.test", max_age=86400)))
    results = run(sts.refresh_due())
    assert results["refresh.sts.test"].source == "fetched" and results["refresh.sts.test"].policy.mode == "enforce"
    assert policy_host.count("refresh.sts.test") == before + 2      # same id, fetched again
    assert sts.cache.get("refresh.sts.test").fetched_at == now[0] and sts.due() == []
    # a refresh that fails keeps the cached policy
    now[0] += 3600
    policy_host.serve("refresh.sts.test", Answer(b"", 503))
    failed = run(sts.refresh_due())["refresh.sts.test"]
    assert failed.source == "cache" and failed.failure == "sts-policy-fetch-error" and failed.enforced
    assert sts.cache.get("refresh.sts.test").mode == "enforce"


def test_overlapping_lookups_share_one_fetch(make, policy_host):
    policy_host.serve("cmd.sts.test", Answer(policy("enforce", "mx1.cmd.sts.test"), delay=0.3))
    before = policy_host.count("cmd.sts.test")
    sts = make(cache="")

    async def many():
        return await asyncio.gather(*(sts.policy_for("cmd.sts.test") for _ in range(5)))
    results = run(many())
    assert {r.source for r in results} == {"fetched"} and policy_host.count("cmd.sts.test") == before + 1


def test_disabled_looks_nothing_up(make, policy_host):
    before = policy_host.count("enforce.sts.test")
    result = run(make(enabled=False).policy_for("enforce.sts.test"))
    assert (result.policy, result.source) == (None, "none") and policy_host.count("enforce.sts.test") == before


def test_a_failed_fetch_is_not_retried_before_fetch_retry(make, policy_host):
    now = [1e10]
    policy_host.serve("notfound.sts.test", Answer(b"no\n", 404))
    sts = make(clock=lambda: now[0], fetch_retry=300)
    before = policy_host.count("notfound.sts.test")
    first = run(sts.policy_for("notfound.sts.test"))
    now[0] += 299
    second = run(sts.policy_for("notfound.sts.test"))
    assert policy_host.count("notfound.sts.test") == before + 1          # the policy host was spared
    assert (second.source, second.failure, second.error) == ("none", first.failure, first.error)
    now[0] += 1
    run(sts.policy_for("notfound.sts.test"))
    assert policy_host.count("notfound.sts.test") == before + 2
    every = make(cache="", fetch_retry=0)
    run(every.policy_for("notfound.sts.test"))
    run(every.policy_for("notfound.sts.test"))
    assert policy_host.count("notfound.sts.test") == before + 4
