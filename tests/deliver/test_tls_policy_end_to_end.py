"""The sending side's TLS policy as sendmail 8.17 applies it, end to end: a real `mailward
serve` with the access map and route file a user writes, delivering to the recording
receivers (recorder.py) over real TLS; each test asserts what the receiver saw, the log
lines and the bounces, as "sendmail 8.17 as the sending MTA" shows them."""

from __future__ import annotations

import asyncio
import email
import email.policy
import re
import signal
import subprocess
import sys
import time

import pytest

from policy_run import all_routes, sender_settings, submit, to_lines, wait_results
from recorder import places
from tests.spool_view import queued

PLACE = {(p.kind, p.form): p for p in places()}


def mta_for(make_mta, pki, dns_server, mx_port, tmp_path, receivers, access: str, routes: str = "",
            settings: dict | None = None, **delivery):
    for r in receivers.values():
        r.clear()
    s = sender_settings(pki, dns_server, mx_port, tmp_path, access, all_routes() + routes, **delivery)
    for section, values in (settings or {}).items():
        s.setdefault(section, {}).update(values)
    return make_mta(s)


def deliver(mta, rcpt: str) -> str:
    submit(mta, [rcpt])
    return to_lines(wait_results(mta, [rcpt]), rcpt)[-1]


def line_without_qid(log: str, start: str) -> str:
    """The whole text of the log line that starts (after ``mailward[pid]: ``) with ``start``."""
    for line in log.splitlines():
        text = line.split("]: ", 1)[-1]
        if text.startswith(start):
            return text
    raise AssertionError(f"no line starting {start!r} in\n{log}")


def bounce(mta) -> email.message.Message:
    (path,) = mta.wait_mail("a", 1, timeout=10)
    return email.message_from_bytes(path.read_bytes(), policy=email.policy.default)


@pytest.mark.parametrize("form, relay", [("b", "[127.0.1.11] [127.0.1.11]"), ("n", "mx.ca-n.sweep.test [127.0.1.21]"),
                                         ("m", "mx.ca-m.sweep.test. [127.0.1.31]")])
def test_verified_delivery_logs_as_sendmail(make_mta, pki, dns_server, mx_port, tmp_path, receivers, form, relay):
    place = PLACE[("ca", form)]
    mta = mta_for(make_mta, pki, dns_server, mx_port, tmp_path, receivers, "")
    line = deliver(mta, f"u@{place.domain}")
    log = mta.log_text()
    tls_line = line_without_qid(log, "STARTTLS=client, relay=")
    assert re.fullmatch(rf"STARTTLS=client, relay={re.escape(place.server_name)}, version=TLSv1\.3, verify=OK, "
                        r"cipher=TLS_AES_\d+_GCM_SHA\d+, bits=(256/256|128/128)", tls_line), tls_line
    assert line_without_qid(log, "STARTTLS=client, cert-subject=") == (
        f"STARTTLS=client, cert-subject=/C=XX/O=Mailward+20Test/CN={place.host}, "
        f"cert-issuer=/C=XX/O=Mailward+20Test/CN=Test+20CA, verifymsg=ok")
    assert f"mailer=esmtp, relay={relay}, dsn=2.0.0, stat=Sent (2.0.0 Ok: queued as R" in line
    assert receivers[place.addr].messages


def test_self_signed_is_verify_fail_logged_and_still_delivered(make_mta, pki, dns_server, mx_port, tmp_path,
                                                               receivers):
    place = PLACE[("self", "b")]
    mta = mta_for(make_mta, pki, dns_server, mx_port, tmp_path, receivers, "")
    line = deliver(mta, f"u@{place.domain}")
    log = mta.log_text()
    assert line_without_qid(log, "STARTTLS: TLS cert verify:") == (
        f"STARTTLS: TLS cert verify: depth=0 /C=XX/O=Self Signed/CN={place.host}, state=0, "
        f"reason=self-signed certificate")
    assert "verify=FAIL" in line_without_qid(log, "STARTTLS=client, relay=[127.0.1.14]")
    assert line_without_qid(log, "STARTTLS=client, cert-subject=").endswith("verifymsg=self-signed certificate")
    assert "stat=Sent (" in line and receivers[place.addr].messages   # opportunistic by default


def test_tls_srv_verify_defers_and_quits_inside_tls(make_mta, pki, dns_server, mx_port, tmp_path, receivers):
    place = PLACE[("self", "b")]
    mta = mta_for(make_mta, pki, dns_server, mx_port, tmp_path, receivers, "TLS_Srv:[127.0.1.14] VERIFY\n")
    line = deliver(mta, f"u@{place.domain}")
    assert line_without_qid(mta.log_text(), "ruleset=tls_server") == (
        "ruleset=tls_server, arg1=FAIL, relay=[127.0.1.14], reject=454 4.7.0 authentication failed")
    assert "relay=[127.0.1.14] [127.0.1.14], dsn=4.7.0, stat=Deferred: 454 4.7.0 authentication failed" in line
    (conn,) = receivers[place.addr].connections
    assert conn.verbs() == ["EHLO", "STARTTLS", "~QUIT"]      # no second EHLO, no MAIL
    assert len(queued(mta)) == 1                               # deferred: still queued


def test_perm_verify_bounces_at_once_with_sendmails_dsn(make_mta, pki, dns_server, mx_port, tmp_path, receivers):
    place = PLACE[("self", "n")]
    mta = mta_for(make_mta, pki, dns_server, mx_port, tmp_path, receivers, f"TLS_Srv:{place.host} PERM+VERIFY\n")
    line = deliver(mta, f"u@{place.domain}")
    assert "dsn=5.7.0" in line
    msg = bounce(mta)
    assert msg["Subject"] == "Returned mail: see transcript for details"
    text, status, _original = msg.get_payload()
    assert "(reason: 503 5.7.0 authentication failed)" in text.get_content()
    rcpt = status.get_payload()[1]
    assert rcpt["Action"] == "failed" and rcpt["Status"] == "5.7.0"
    assert rcpt["Diagnostic-Code"] == "SMTP; 503 5.7.0 authentication failed"
    assert not receivers[place.addr].saw("MAIL")


@pytest.mark.parametrize("value, text", [("ENCR:112", "encryption too weak 0 less than 112"),
                                         ("VERIFY", "other side does not support STARTTLS")])
def test_no_starttls_offered(make_mta, pki, dns_server, mx_port, tmp_path, receivers, value, text):
    place = PLACE[("plain", "b")]
    mta = mta_for(make_mta, pki, dns_server, mx_port, tmp_path, receivers, f"TLS_Srv:127.0.1.15 {value}\n")
    line = deliver(mta, f"u@{place.domain}")
    assert line_without_qid(mta.log_text(), "ruleset=tls_server") == (
        f"ruleset=tls_server, arg1=NONE, relay=[127.0.1.15], reject=454 4.7.0 {text}")
    assert f"stat=Deferred: 454 4.7.0 {text}" in line
    assert [c.verbs() for c in receivers[place.addr].connections] == [["EHLO", "QUIT"]]


def test_try_tls_no_sends_in_clear_with_a_notice(make_mta, pki, dns_server, mx_port, tmp_path, receivers):
    place = PLACE[("ca", "b")]
    mta = mta_for(make_mta, pki, dns_server, mx_port, tmp_path, receivers, "Try_TLS:[127.0.1.11] NO\n")
    line = deliver(mta, f"u@{place.domain}")
    assert line_without_qid(mta.log_text(), "ruleset=try_tls") == (
        f"ruleset=try_tls, arg1=[127.0.1.11], relay=[127.0.1.11], reject=550 5.7.1 u@{place.domain}... "
        f"do not try TLS with [127.0.1.11] [127.0.1.11]")
    assert "stat=Sent (" in line
    (conn,) = receivers[place.addr].connections
    # in clear from the start (the connection may stay open for the next message)
    assert conn.verbs()[:4] == ["EHLO", "MAIL", "RCPT", "DATA"] and conn.client_cert is None


def test_try_tls_no_with_tls_srv_verify_is_none(make_mta, pki, dns_server, mx_port, tmp_path, receivers):
    place = PLACE[("ca", "b")]
    mta = mta_for(make_mta, pki, dns_server, mx_port, tmp_path, receivers,
                  "Try_TLS:[127.0.1.11] NO\nTLS_Srv:[127.0.1.11] VERIFY\n")
    deliver(mta, f"u@{place.domain}")
    assert line_without_qid(mta.log_text(), "ruleset=tls_server") == (
        "ruleset=tls_server, arg1=NONE, relay=[127.0.1.11], reject=454 4.7.0 other side does not support STARTTLS")
    assert not receivers[place.addr].saw("MAIL")


def test_bare_cn_on_a_bracketed_route_compares_with_the_literal(make_mta, pki, dns_server, mx_port, tmp_path,
                                                                receivers):
    place = PLACE[("ca", "b")]
    mta = mta_for(make_mta, pki, dns_server, mx_port, tmp_path, receivers, "TLS_Srv:127.0.1.11 VERIFY+CN\n")
    deliver(mta, f"u@{place.domain}")
    assert line_without_qid(mta.log_text(), "ruleset=tls_server") == (
        f"ruleset=tls_server, arg1=OK, relay=[127.0.1.11], reject=454 4.7.0 CN {place.host} does not match "
        f"[127.0.1.11]")


def test_two_host_route_moves_on_after_a_tls_srv_refusal(make_mta, pki, dns_server, mx_port, tmp_path, receivers):
    mta = mta_for(make_mta, pki, dns_server, mx_port, tmp_path, receivers, "TLS_Srv:[127.0.1.15] ENCR:112\n",
                  "two.route.test esmtp:[127.0.1.15]:[127.0.1.11]\n")
    line = deliver(mta, "u@two.route.test")
    assert [c.verbs() for c in receivers["127.0.1.15"].connections] == [["EHLO", "QUIT"]]
    assert len(receivers["127.0.1.11"].messages) == 1
    assert "relay=[127.0.1.11] [127.0.1.11], dsn=2.0.0, stat=Sent (" in line
    assert "ruleset=tls_server, arg1=NONE, relay=[127.0.1.15], reject=454 4.7.0 encryption too weak 0 less than " \
           "112" in mta.log_text()


@pytest.mark.parametrize("value", ["ENCR:112", "PERM+ENCR:112"])
def test_tls_rcpt_refusal_is_rset_then_next_host_unless_perm(make_mta, pki, dns_server, mx_port, tmp_path,
                                                              receivers, value):
    mta = mta_for(make_mta, pki, dns_server, mx_port, tmp_path, receivers, f"TLS_Rcpt:two.route.test {value}\n",
                  "two.route.test esmtp:[127.0.1.15]:[127.0.1.11]\n")
    line = deliver(mta, "u@two.route.test")
    assert [c.verbs() for c in receivers["127.0.1.15"].connections] == [["EHLO", "MAIL", "RSET", "QUIT"]]
    code = "503 5.7.0" if value.startswith("PERM") else "454 4.7.0"
    assert f"ruleset=tls_rcpt, arg1=u@two.route.test, relay=[127.0.1.15], reject={code} encryption too weak 0 " \
           f"less than 112" in mta.log_text()
    if value.startswith("PERM"):
        assert receivers["127.0.1.11"].connections == [] and "dsn=5.7.0" in line
        assert bounce(mta).get_payload()[1].get_payload()[1]["Status"] == "5.7.0"
    else:
        assert len(receivers["127.0.1.11"].messages) == 1 and "stat=Sent (" in line


def test_expiry_after_tls_srv_deferrals_keeps_the_remote_reason(make_mta, pki, dns_server, mx_port, tmp_path,
                                                                 receivers):
    place = PLACE[("self", "b")]
    mta = mta_for(make_mta, pki, dns_server, mx_port, tmp_path, receivers, "TLS_Srv:[127.0.1.14] VERIFY\n",
                  retry_first=0.3, retry_max=0.3, give_up_after=1.0)
    submit(mta, [f"u@{place.domain}"])
    msg = bounce(mta)
    rcpt = msg.get_payload()[1].get_payload()[1]
    assert rcpt["Status"] == "4.4.7" and rcpt["Action"] == "failed"
    assert rcpt["Diagnostic-Code"] == "SMTP; 454 4.7.0 authentication failed"
    assert "Message could not be delivered for" in msg.get_payload()[0].get_content()
    assert not receivers[place.addr].saw("MAIL")


@pytest.mark.parametrize("workers, sighup", [(1, False), (2, False), (2, True)])
def test_the_map_delivery_uses_is_the_map_on_disk(make_mta, pki, dns_server, mx_port, tmp_path, receivers,
                                                  workers, sighup):
    """A delivering process (the master with several workers) picks up a changed access map
    within a second or two, with or without SIGHUP and without any client connecting."""
    place = PLACE[("self", "b")]
    mta = mta_for(make_mta, pki, dns_server, mx_port, tmp_path, receivers, "", settings={"server": {"workers": workers}})
    assert "stat=Sent (" in deliver(mta, f"u@{place.domain}")          # the empty map: opportunistic
    receivers[place.addr].clear()
    with open(tmp_path / "access", "a") as f:
        f.write("TLS_Srv:[127.0.1.14] VERIFY\n")
    if sighup:
        mta.proc.send_signal(signal.SIGHUP)
    time.sleep(2.2)
    line = deliver(mta, f"v@{place.domain}")
    assert "stat=Deferred: 454 4.7.0 authentication failed" in line
    assert not receivers[place.addr].saw("MAIL")


ROUTES = [("esmtp:[127.0.1.11]", ["[127.0.1.11]", "[127.0.1]", "[127.0]", "[127]", "127.0.1.11", "127.0.1",
                                  "127.0", "127", ""]),
          ("esmtp:mx.ca-n.sweep.test", ["mx.ca-n.sweep.test", "ca-n.sweep.test", "sweep.test", "test",
                                        "[127.0.1.21]", "[127.0.1]", "[127.0]", "[127]", "127.0.1.21", "127.0.1",
                                        "127.0", "127", ""])]


@pytest.mark.parametrize("route, expected", ROUTES)
def test_policy_test_prints_the_keys_delivery_looks_up(dns_server, tmp_path, route, expected):
    """The order is sendmail 8.17's, and `mailward policy test --route` prints the very list
    that delivery's tls_server check looks up for the hop the route gives."""
    from mailward.deliver.routes import next_hops, parse_target
    from mailward.dns import Resolver
    from mailward.policy.accessmap import AccessMap
    from mailward.policy.deliver import DeliveryPolicy
    from mailward.policy.holder import AccessMapHolder
    from mailward.tls.facts import ConnectionFacts

    (hop,) = asyncio.run(next_hops(parse_target(route, "test"), "x.test", Resolver([dns_server], timeout=3), 25))
    holder = AccessMapHolder(None, AccessMap.from_text(""))
    delivery = [k for k, _ in DeliveryPolicy(holder).tls_server(ConnectionFacts(hop.name, hop.addr)).lookups]
    assert delivery == [f"TLS_Srv:{k}" for k in expected]
    (tmp_path / "access").write_text("")
    out = subprocess.run([sys.executable, "-m", "mailward", "policy", "test", "--map", str(tmp_path / "access"),
                          "--role", "client", "--route", route, "--server-addr", hop.addr],
                         capture_output=True, text=True, check=True).stdout
    section = out.split("== tls_server", 1)[1].split("==", 1)[0]
    printed = [line.split()[1] for line in section.splitlines() if line.strip().startswith("lookup")]
    assert printed == delivery


def test_error_and_discard_mailers(make_mta, pki, dns_server, mx_port, tmp_path, receivers):
    """sendmail's error mailer (bounce or defer with the route's reply) and discard mailer."""
    mta = mta_for(make_mta, pki, dns_server, mx_port, tmp_path, receivers, "",
                  "gone.route.test error:5.1.1:550 User has moved\nlater.route.test error:4.3.2:451 Try later\n"
                  "void.route.test discard:\n")
    submit(mta, ["u@gone.route.test", "u@later.route.test", "u@void.route.test"])
    log = wait_results(mta, ["u@gone.route.test", "u@later.route.test", "u@void.route.test"])
    assert "mailer=error, dsn=5.1.1, stat=User has moved" in to_lines(log, "u@gone.route.test")[0]
    assert "mailer=error, dsn=4.3.2, stat=Deferred: 451 4.3.2 Try later" in to_lines(log, "u@later.route.test")[0]
    assert "mailer=discard, dsn=2.0.0, stat=Sent" in to_lines(log, "u@void.route.test")[0]
    rcpt = bounce(mta).get_payload()[1].get_payload()[1]
    assert rcpt["Final-Recipient"] == "rfc822; u@gone.route.test"
    assert rcpt["Diagnostic-Code"] == "SMTP; 550 5.1.1 User has moved"
    assert not any(r.connections for r in receivers.values())
