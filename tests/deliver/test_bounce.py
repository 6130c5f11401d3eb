"""DSN format (RFC 3464), parsed back with the email package; NOTIFY and RET rules (RFC 3461)."""

from __future__ import annotations

import email
import email.policy

import pytest

from mailward.deliver.bounce import RecipientReport, build_dsn, wants_notice

ORIGINAL = (b"Received: from c.test by mx.test; Thu, 26 Nov 2026 01:00:00 +0000\r\nFrom: a@c.test\r\n"
            b"To: bad@x.test\r\nSubject: hello\r\nMessage-ID: <m1@c.test>\r\n\r\nBody line\r\n.dot line\r\n")


def dsn(ret=None, action="failed", max_full=1 << 20, envid=None):
    params = {}
    if ret:
        params["RET"] = ret
    if envid:
        params["ENVID"] = envid
    reports = [RecipientReport("bad@x.test", action, "5.1.1" if action == "failed" else "2.0.0",
                               "550 5.1.1 <bad@x.test>... User unknown", "mx.x.test", "rfc822;Bad+2Bone@x.test",
                               1_000_000.0),
               RecipientReport("gone@x.test", action, "5.1.10" if action == "failed" else "2.0.0",
                               "556 5.1.10 Domain x.test does not accept mail (nullMX)")]
    raw = build_dsn(reporting_mta="mw.test", queue_id="Q1", sender="a@c.test", sender_params=params,
                    arrival=999_000.0, client="c.test [127.0.0.1]", reports=reports, original=ORIGINAL,
                    max_full=max_full, now=1_000_100.0)
    assert b"\n" not in raw.replace(b"\r\n", b"")  # CRLF only
    return raw, email.message_from_bytes(raw, policy=email.policy.default)


def test_failure_dsn_structure_and_fields():
    raw, msg = dsn(envid="env+2Bid")
    assert msg.get_content_type() == "multipart/report"
    assert msg.get_param("report-type") == "delivery-status"
    assert msg["To"].addresses[0].addr_spec == "a@c.test" and "MAILER-DAEMON@mw.test" in msg["From"]
    assert msg["Auto-Submitted"] == "auto-replied"
    text, status, original = msg.get_payload()
    assert text.get_content_type() == "text/plain"
    assert "<bad@x.test>" in text.get_content() and "User unknown" in text.get_content()
    assert status.get_content_type() == "message/delivery-status"
    per_message, rcpt1, rcpt2 = status.get_payload()
    assert per_message["Reporting-MTA"] == "dns; mw.test"
    assert per_message["Original-Envelope-Id"] == "env+id"
    assert rcpt1["Final-Recipient"] == "rfc822; bad@x.test" and rcpt1["Action"] == "failed"
    assert rcpt1["Status"] == "5.1.1" and rcpt1["Remote-MTA"] == "dns; mx.x.test"
    assert rcpt1["Original-Recipient"] == "rfc822; Bad+one@x.test"
    assert rcpt1["Diagnostic-Code"] == "SMTP; 550 5.1.1 <bad@x.test>... User unknown"
    assert rcpt2["Status"] == "5.1.10"
    # RET absent on a failure: the whole original, byte for byte
    assert original.get_content_type() == "message/rfc822"
    assert ORIGINAL in raw


def test_ret_hdrs_returns_headers_only():
    raw, msg = dsn(ret="HDRS")
    part = msg.get_payload()[2]
    assert part.get_content_type() == "text/rfc822-headers"
    assert b"Subject: hello\r\n" in raw and b"Body line" not in raw


def test_big_original_returned_as_headers_even_with_ret_full():
    raw, msg = dsn(ret="FULL", max_full=10)
    assert msg.get_payload()[2].get_content_type() == "text/rfc822-headers"


def test_success_notice_defaults_to_headers():
    raw, msg = dsn(action="relayed")
    assert msg["Subject"] == "Return receipt"
    assert msg.get_payload()[1].get_payload()[1]["Action"] == "relayed"
    assert msg.get_payload()[2].get_content_type() == "text/rfc822-headers"


@pytest.mark.parametrize("notify, action, wanted", [
    (None, "failed", True), (None, "delayed", True), (None, "delivered", False),
    ("NEVER", "failed", False), ("SUCCESS", "failed", False), ("SUCCESS", "relayed", True),
    ("FAILURE,DELAY", "delayed", True), ("failure", "failed", True), ("DELAY", "delivered", False)])
def test_notify_rules(notify, action, wanted):
    params = {} if notify is None else {"NOTIFY": notify}
    assert wants_notice(params, action) is wanted
