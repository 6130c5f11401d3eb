"""Ordinary access entries (Connect:, From:, To:, untagged) and relaying."""

from __future__ import annotations

import pytest

from mailward.policy import AccessMap, check_connect, check_mail, check_rcpt
from mailward.tls.facts import ConnectionFacts

MAP = """\
# ordinary entries
Connect:spam.example          REJECT
Connect:192.0.2.66            ERROR:"550 Go away"
Connect:198.51.100            ERROR:4.7.1:451 Try later
discard.example               DISCARD
Connect:friends.example       RELAY
10.1                          RELAY
From:spammer@bad.example      REJECT
From:bulk@                    ERROR:5.7.1:550 No bulk mail
From:bad.example              OK
From:toss.example             DISCARD
bad2.example                  550 5.7.0 Not from you
To:blocked@oracle.test        REJECT
To:gone@oracle.test           ERROR:"550 5.1.6 Moved away"
To:partner.example            RELAY
To:nowhere.example            ERROR:"451 4.4.1 Try again"
"""
LOCAL = ["oracle.test"]


@pytest.fixture(scope="module")
def amap():
    return AccessMap.from_text(MAP, "access")


def c(name, addr):
    return ConnectionFacts(name, addr)


@pytest.mark.parametrize("name,addr,action,reply", [
    ("mx.spam.example", "203.0.113.5", "reject", "550 5.7.1 Access denied"),
    ("[192.0.2.66]", "192.0.2.66", "reject", "550 5.0.0 Go away"),
    ("h.test", "198.51.100.9", "tempfail", "451 4.7.1 Try later"),
    ("a.discard.example", "203.0.113.6", "discard", ""),
    ("mx.friends.example", "203.0.113.7", "relay", ""),
    ("x.test", "10.1.2.3", "relay", ""),
    ("x.test", "203.0.113.8", "continue", ""),
])
def test_connect(amap, name, addr, action, reply):
    decision = check_connect(amap, c(name, addr))
    assert (decision.action, decision.reply) == (action, reply)
    if decision.failed:
        assert decision.log_fragment == f"ruleset=check_relay, arg1={name}, arg2={addr}, relay=" + (
            name if name.startswith("[") else f"{name} [{addr}]") + f", reject={reply}"


@pytest.mark.parametrize("sender,action,reply", [
    ("<spammer@bad.example>", "reject", "550 5.7.1 <spammer@bad.example>... Access denied"),
    ("<bulk@anywhere.example>", "reject", "550 5.7.1 <bulk@anywhere.example>... No bulk mail"),
    ("<bulk+news@anywhere.example>", "reject", "550 5.7.1 <bulk+news@anywhere.example>... No bulk mail"),
    ("<other@bad.example>", "ok", "250 2.1.0 <other@bad.example>... Sender ok"),
    ("<x@a.toss.example>", "discard", "250 2.1.0 <x@a.toss.example>... Sender ok"),
    ("<x@bad2.example>", "reject", "550 5.7.0 <x@bad2.example>... Not from you"),
    ("<>", "continue", "250 2.1.0 <>... Sender ok"),
    ("someone@good.example", "continue", "250 2.1.0 <someone@good.example>... Sender ok"),
])
def test_mail(amap, sender, action, reply):
    decision = check_mail(amap, c("h.test", "203.0.113.1"), sender)
    assert (decision.action, decision.reply) == (action, reply)


@pytest.mark.parametrize("rcpt,client,action,reply", [
    ("blocked@oracle.test", "203.0.113.1", "reject", "550 5.2.1 <blocked@oracle.test>... Mailbox disabled for this "
     "recipient"),
    ("gone@oracle.test", "203.0.113.1", "reject", "550 5.1.6 <gone@oracle.test>... Moved away"),
    ("root@oracle.test", "203.0.113.1", "continue", "250 2.1.5 <root@oracle.test>... Recipient ok"),
    ("postmaster", "203.0.113.1", "continue", "250 2.1.5 <postmaster>... Recipient ok"),
    ("u@partner.example", "203.0.113.1", "relay", "250 2.1.5 <u@partner.example>... Recipient ok"),
    ("u@mx.partner.example", "203.0.113.1", "relay", "250 2.1.5 <u@mx.partner.example>... Recipient ok"),
    ("u@nowhere.example", "203.0.113.1", "tempfail", "451 4.4.1 Try again"),
    ("u@remote.example", "203.0.113.1", "reject", "550 5.7.1 <u@remote.example>... Relaying denied"),
    ("u@remote.example", "10.1.9.9", "relay", "250 2.1.5 <u@remote.example>... Recipient ok"),
    ("u@remote.example", "127.0.0.1", "relay", "250 2.1.5 <u@remote.example>... Recipient ok"),
    ("u@remote.example", "::1", "relay", "250 2.1.5 <u@remote.example>... Recipient ok"),
])
def test_rcpt(amap, rcpt, client, action, reply):
    decision = check_rcpt(amap, c("h.test", client), rcpt, LOCAL)
    assert (decision.action, decision.reply) == (action, reply)


def test_relay_by_client_name(amap):
    decision = check_rcpt(amap, c("mx.friends.example", "203.0.113.7"), "u@remote.example", LOCAL)
    assert decision.action == "relay"
    assert decision.entry.key == "connect:friends.example"


def test_relay_domains_setting():
    amap = AccessMap.from_text("")
    assert check_rcpt(amap, c("h.test", "203.0.113.1"), "u@sub.relayed.example", LOCAL,
                      relay_domains=["relayed.example"]).action == "relay"
    assert check_rcpt(amap, c("h.test", "192.168.4.2"), "u@remote.example", LOCAL,
                      relay_domains=["192.168"]).action == "relay"
    assert check_rcpt(amap, c("h.test", "192.169.4.2"), "u@remote.example", LOCAL,
                      relay_domains=["192.168"]).failed


def test_to_ok_does_not_allow_relaying():
    amap = AccessMap.from_text("To:remote.example OK\n")
    assert check_rcpt(amap, c("h.test", "203.0.113.1"), "u@remote.example", LOCAL).failed


def test_rcpt_log_fragment(amap):
    decision = check_rcpt(amap, c("h.test", "203.0.113.1"), "<u@remote.example>", LOCAL)
    assert decision.log_fragment == ("ruleset=check_rcpt, arg1=<u@remote.example>, relay=h.test [203.0.113.1], "
                                     "reject=550 5.7.1 <u@remote.example>... Relaying denied")
