"""Client-side TLS on delivery: opportunistic STARTTLS, verify results, a failed handshake
(verify=SOFTWARE) and the fallback to clear, and the access map's Try_TLS / TLS_Srv /
TLS_Rcpt ("sendmail cf/README, STARTTLS"), against aiosmtpd sinks with real TLS on 127.0.0.x."""

from __future__ import annotations

import asyncio
import ssl

import pytest

from harness import Harness, Sink, message, run


def server_ssl(pki, *, broken: bool = False) -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(pki.server_cert, pki.server_key)
    if broken:  # no protocol version in common with mailward (TLSv1.2+): the handshake fails
        ctx.minimum_version = ctx.maximum_version = ssl.TLSVersion.TLSv1
    return ctx


def harness(tmp_path, dns_server, mx_port, pki, access: str = "", **delivery):
    settings = {"delivery": delivery, "tls": {"ca_file": str(pki.ca)}}
    if access:
        (tmp_path / "access").write_text(access)
        settings["policy"] = {"access_map": str(tmp_path / "access")}
    return Harness(tmp_path / "h", dns_server, mx_port, settings)


def deliver(h: Harness, rcpt: str, *, before_stop=None):
    async def main():
        qid = h.send("a@localhost", [rcpt], message("tls"))
        await h.start()
        await h.settle()
        if before_stop:
            await before_stop(qid)
        await h.stop()
        return qid
    return run(main)


def test_starttls_when_offered_and_the_client_log_line(tmp_path, dns_server, mx_port, pki):
    h = harness(tmp_path, dns_server, mx_port, pki)
    with Sink("127.0.0.71", mx_port, tls=server_ssl(pki)) as sink:
        deliver(h, "u@sink.test")
    assert sink.messages[0]["tls"] is True
    line = next(x for x in h.log.lines if "STARTTLS=client" in x)
    assert line.startswith("") and "STARTTLS=client, relay=mx.sink.test, version=TLSv1.3, verify=OK, cipher=" in line
    assert line.endswith("bits=256/256") or line.endswith("bits=128/128")


def test_unknown_ca_is_verify_fail_but_still_delivered(tmp_path, dns_server, mx_port, pki):
    settings = {"delivery": {}, "tls": {"ca_file": str(pki.other_ca)}}
    h = Harness(tmp_path / "h", dns_server, mx_port, settings)
    with Sink("127.0.0.71", mx_port, tls=server_ssl(pki)) as sink:
        deliver(h, "u@sink.test")
    assert sink.messages[0]["tls"] is True and "verify=FAIL" in h.log.text()


def test_failed_handshake_is_software_then_clear_retry(tmp_path, dns_server, mx_port, pki):
    h = harness(tmp_path, dns_server, mx_port, pki)
    with Sink("127.0.0.71", mx_port, tls=server_ssl(pki, broken=True)) as sink:
        deliver(h, "u@sink.test")
    text = h.log.text()
    assert "STARTTLS=client, relay=mx.sink.test, error=handshake failed" in text and "verify=SOFTWARE" in text
    assert "ruleset=tls_server, arg1=SOFTWARE" in text
    assert len(sink.messages) == 1 and sink.messages[0]["tls"] is False


def test_failed_handshake_no_clear_retry_when_tls_srv_requires_encryption(tmp_path, dns_server, mx_port, pki):
    h = harness(tmp_path, dns_server, mx_port, pki, access="TLS_Srv:mx.sink.test ENCR:112\n")
    with Sink("127.0.0.71", mx_port, tls=server_ssl(pki, broken=True)) as sink:
        qid = deliver(h, "u@sink.test")
    assert sink.messages == []
    assert h.spool.load(qid).recipients[0].state == "deferred"
    assert "ruleset=tls_server, arg1=CLEAR" in h.log.text()


def test_fallback_off_defers(tmp_path, dns_server, mx_port, pki):
    h = harness(tmp_path, dns_server, mx_port, pki, tls_fallback_to_clear=False)
    with Sink("127.0.0.71", mx_port, tls=server_ssl(pki, broken=True)) as sink:
        qid = deliver(h, "u@sink.test")
    assert sink.messages == [] and h.spool.load(qid).recipients[0].state == "deferred"


def test_try_tls_no_sends_in_clear(tmp_path, dns_server, mx_port, pki):
    h = harness(tmp_path, dns_server, mx_port, pki, access="Try_TLS:sink.test NO\n")
    with Sink("127.0.0.71", mx_port, tls=server_ssl(pki)) as sink:
        deliver(h, "u@sink.test")
    assert sink.messages[0]["tls"] is False and "STARTTLS=client" not in h.log.text()


def test_tls_srv_perm_bounces(tmp_path, dns_server, mx_port, pki):
    h = harness(tmp_path, dns_server, mx_port, pki, access="TLS_Srv:mx.sink.test PERM+VERIFY\n",
                starttls=False)
    with Sink("127.0.0.71", mx_port) as sink:
        deliver(h, "u@sink.test")
    assert sink.messages == []
    rcpt = h.dsn("a").get_payload()[1].get_payload()[1]
    assert rcpt["Status"] == "5.7.0"


def test_seed_multiple_mx_tls_rcpt_never_in_clear_to_the_backup(tmp_path, dns_server, mx_port, pki):
    """Seed 004: TLS_Rcpt:secure.domain ENCR:112 keeps mail off a clear-text backup MX."""
    h = harness(tmp_path, dns_server, mx_port, pki, access="TLS_Rcpt:secure.test ENCR:112\n")
    with Sink("127.0.0.52", mx_port) as backup:   # the primary (127.0.0.51) is down
        async def later(qid):
            assert h.spool.load(qid).recipients[0].state == "deferred"
            with Sink("127.0.0.51", mx_port, tls=server_ssl(pki)) as primary:
                h.runner.flush()
                for _ in range(100):
                    if not h.spool.ids():
                        break
                    await asyncio.sleep(0.05)
                assert primary.messages and primary.messages[0]["tls"] is True
        deliver(h, "user@secure.test", before_stop=later)
    assert backup.messages == []
    text = h.log.text()
    assert "ruleset=tls_rcpt, arg1=user@secure.test, relay=backup.secure.test, " \
           "reject=454 4.7.0 encryption too weak 0 less than 112" in text
    assert "relay=primary.secure.test. [127.0.0.51], dsn=2.0.0, stat=Sent" in text


@pytest.mark.parametrize("access, state", [("TLS_Rcpt:secure.test PERM+ENCR:112\n", "bounced")])
def test_tls_rcpt_perm_bounces_that_recipient(tmp_path, dns_server, mx_port, pki, access, state):
    h = harness(tmp_path, dns_server, mx_port, pki, access=access)
    with Sink("127.0.0.52", mx_port) as backup:
        deliver(h, "user@secure.test")
    assert backup.messages == []
    assert h.dsn("a").get_payload()[1].get_payload()[1]["Status"] == "5.7.0"
