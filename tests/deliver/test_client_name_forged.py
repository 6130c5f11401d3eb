"""A client name is used only when its forward lookup confirms it (sendmail: "IP name possibly
forged"; Postfix: ``unknown``). A real mailward whose resolver is the test DNS server (NSD on
loopback, with the reverse zone of conftest.py) receives from 127.0.0.3, whose PTR claims
mx.sink.test (an address of another host), and from 127.0.0.4, whose PTR good.client.test is
confirmed. Relaying by client name must be refused to the first and granted to the second."""

from __future__ import annotations

import smtplib

import pytest

MESSAGE = b"From: <a@x.test>\r\nTo: <u@far.example>\r\nSubject: relay?\r\n\r\nbody\r\n"


def settings(dns_server, tmp_path) -> dict:
    (tmp_path / "routes").write_text("far.example discard:\n")
    return {"server": {"reverse_lookup": True},
            "local": {"domains": ["localhost"]},
            "policy": {"relay_domains": ["sink.test", "client.test"]},
            "delivery": {"resolver": [dns_server], "route_file": str(tmp_path / "routes")}}


def send_from(mta, source: str) -> tuple[int, bytes]:
    with smtplib.SMTP(timeout=10, source_address=(source, 0)) as s:
        s.connect(mta.host, mta.port)
        s.ehlo("client.example")
        s.mail("a@x.test")
        return s.rcpt("u@far.example")


def test_forged_reverse_name_does_not_relay(make_mta, dns_server, tmp_path):
    mta = make_mta(settings(dns_server, tmp_path))
    code, text = send_from(mta, "127.0.0.3")
    assert code == 550 and b"Relaying denied" in text, (code, text)
    log = mta.log_text()
    assert "relay=mx.sink.test [127.0.0.3] (may be forged)" in log, log


def test_confirmed_reverse_name_relays_and_is_shown(make_mta, dns_server, tmp_path):
    mta = make_mta(settings(dns_server, tmp_path))
    code, _ = send_from(mta, "127.0.0.4")
    assert code == 250


@pytest.mark.parametrize("source", ["127.0.0.5", "127.0.0.9"])
def test_unverifiable_or_missing_reverse_name_is_the_address(make_mta, dns_server, tmp_path, source):
    """127.0.0.5 claims `localhost`, which the resolver cannot confirm; 127.0.0.9 has no PTR:
    both are `[addr]` for policy, so neither relays by name."""
    mta = make_mta(settings(dns_server, tmp_path))
    code, _ = send_from(mta, source)
    assert code == 550


def test_received_header_marks_a_forged_name(make_mta, dns_server, tmp_path):
    s = settings(dns_server, tmp_path)
    s["local"]["domains"] = ["localhost", "mx.test"]
    mta = make_mta(s)
    with smtplib.SMTP(timeout=10, source_address=("127.0.0.3", 0)) as c:
        c.connect(mta.host, mta.port)
        c.sendmail("a@x.test", ["postmaster@localhost"], MESSAGE)
    (path,) = mta.wait_mail("postmaster", 1)
    text = path.read_text()
    assert "Received: from client.example (mx.sink.test [127.0.0.3] (may be forged))" in text.replace("\n\t", " ") \
        or "(mx.sink.test [127.0.0.3] (may be forged))" in text, text
