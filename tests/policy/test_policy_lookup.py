"""Lookup order, as sendmail's LookUpDomain / LookUpAddress / SearchList do it."""

from __future__ import annotations

from mailward.policy import AccessMap, check_connect, check_mail, check_tls_client, check_tls_rcpt, sendmail_addr
from mailward.policy.lookup import addr_keys, domain_keys, full_keys, user_keys
from mailward.tls.facts import ConnectionFacts, TLSFacts


def keys(decision):
    return [key for key, _ in decision.lookups]


def test_domain_keys():
    assert domain_keys("a.b.example") == ["a.b.example", "b.example", "example"]
    assert domain_keys("host.example.") == ["host.example", "example"]
    assert domain_keys("[192.0.2.1]") == ["[192.0.2.1]", "[192.0.2]", "[192.0]", "[192]"]
    assert domain_keys("[IPv6:2001:db8:0:0:0:0:0:1]")[:3] == [
        "[IPv6:2001:db8:0:0:0:0:0:1]", "[IPv6:2001:db8:0:0:0:0:0]", "[IPv6:2001:db8:0:0:0:0]"]
    assert domain_keys("") == []


def test_addr_keys_ipv4_and_ipv6():
    assert addr_keys("192.0.2.1") == ["192.0.2.1", "192.0.2", "192.0", "192"]
    assert addr_keys("IPv6:2001:db8:0:0:0:0:0:1") == [
        "IPv6:2001:db8:0:0:0:0:0:1", "IPv6:2001:db8:0:0:0:0:0", "IPv6:2001:db8:0:0:0:0", "IPv6:2001:db8:0:0:0",
        "IPv6:2001:db8:0:0", "IPv6:2001:db8:0", "IPv6:2001:db8", "IPv6:2001", "IPv6"]


def test_sendmail_addr_forms():
    assert sendmail_addr("2001:db8::1") == "IPv6:2001:db8:0:0:0:0:0:1"
    assert sendmail_addr("::1") == "IPv6:0:0:0:0:0:0:0:1"
    assert sendmail_addr("::ffff:192.0.2.1") == "192.0.2.1"
    assert sendmail_addr("192.0.2.1") == "192.0.2.1"
    assert sendmail_addr("not an address") == "not an address"


def test_full_and_user_keys_with_detail():
    assert full_keys("user+list@example.org") == ["user+list@example.org", "user+*@example.org", "user@example.org"]
    assert user_keys("user+list@") == ["user+list@", "user+*@", "user@"]
    assert full_keys("user@example.org") == ["user@example.org"]


def test_tls_clt_order_name_parents_addr_prefixes_bare_tag():
    decision = check_tls_client(AccessMap.from_text(""), ConnectionFacts("a.b.example", "192.0.2.1"), "STARTTLS")
    assert keys(decision) == ["TLS_Clt:a.b.example", "TLS_Clt:b.example", "TLS_Clt:example",
                              "TLS_Clt:[192.0.2.1]", "TLS_Clt:[192.0.2]", "TLS_Clt:[192.0]", "TLS_Clt:[192]",
                              "TLS_Clt:192.0.2.1", "TLS_Clt:192.0.2", "TLS_Clt:192.0", "TLS_Clt:192", "TLS_Clt:"]


def test_tls_tags_ignore_untagged_keys():
    amap = AccessMap.from_text("a.example REJECT\n192.0.2.1 REJECT\n")
    assert not check_tls_client(amap, ConnectionFacts("a.example", "192.0.2.1"), "MAIL").failed


def test_ipv6_client_lookup_and_compressed_key():
    amap = AccessMap.from_text("TLS_Clt:IPv6:2001:db8::5 ENCR:112\nTLS_Clt:IPv6:2001:db8:0:0:0:0:0 VERIFY\n")
    one = check_tls_client(amap, ConnectionFacts("[2001:db8::5]", "2001:db8::5"), "MAIL")
    assert one.reply == "454 4.7.0 encryption too weak 0 less than 112"
    assert one.entry.line == 1
    other = check_tls_client(amap, ConnectionFacts("h.example", "2001:db8::6"), "MAIL")
    assert other.reply == "454 4.7.0 authentication required"
    assert other.entry.line == 2


def test_first_match_wins_specific_before_parent_and_name_before_addr():
    amap = AccessMap.from_text("TLS_Clt:example ENCR:512\nTLS_Clt:b.example ENCR:64\nTLS_Clt:192.0.2.1 VERIFY\n"
                               "TLS_Clt: PERM+VERIFY\n")
    tls = TLSFacts(verify="NO", tls_version="TLSv1.3", cipher_bits=128, alg_bits=128)
    decision = check_tls_client(amap, ConnectionFacts("a.b.example", "192.0.2.1", tls=tls), "STARTTLS")
    assert not decision.failed and decision.entry.line == 2
    decision = check_tls_client(amap, ConnectionFacts("other.test", "192.0.2.1", tls=tls), "STARTTLS")
    assert decision.entry.line == 3
    decision = check_tls_client(amap, ConnectionFacts("other.test", "192.0.2.9", tls=tls), "STARTTLS")
    assert decision.entry.line == 4 and decision.reply == "503 5.7.0 not authenticated"


def test_tls_rcpt_order():
    decision = check_tls_rcpt(AccessMap.from_text(""), ConnectionFacts("mx", "192.0.2.1"), "<u+x@a.example>")
    assert keys(decision) == ["TLS_Rcpt:u+x@a.example", "TLS_Rcpt:u+*@a.example", "TLS_Rcpt:u@a.example",
                              "TLS_Rcpt:u+x@", "TLS_Rcpt:u+*@", "TLS_Rcpt:u@", "TLS_Rcpt:a.example",
                              "TLS_Rcpt:example", "TLS_Rcpt:"]


def test_tls_rcpt_user_before_domain_before_default():
    amap = AccessMap.from_text("TLS_Rcpt: ENCR:1024\nTLS_Rcpt:example ENCR:256\nTLS_Rcpt:u@ ENCR:128\n"
                               "TLS_Rcpt:u@a.example ENCR:64\n")
    tls = TLSFacts(verify="NO", tls_version="TLSv1.3", cipher_bits=100, alg_bits=100)
    conn = ConnectionFacts("mx", "192.0.2.1", tls=tls)
    assert check_tls_rcpt(amap, conn, "u@a.example").entry.line == 4
    assert check_tls_rcpt(amap, conn, "u@b.example").entry.line == 3
    assert check_tls_rcpt(amap, conn, "v@b.example").entry.line == 2
    assert check_tls_rcpt(amap, conn, "v@b.test").entry.line == 1


def test_connect_tagged_then_untagged_per_level():
    decision = check_connect(AccessMap.from_text(""), ConnectionFacts("h.example", "192.0.2.1"))
    assert keys(decision)[:4] == ["Connect:h.example", "h.example", "Connect:example", "example"]
    assert keys(decision)[4:6] == ["Connect:192.0.2.1", "192.0.2.1"]


def test_from_order_full_user_domain():
    decision = check_mail(AccessMap.from_text(""), ConnectionFacts("h", "192.0.2.1"), "<u@a.example>")
    from_keys = [k for k in keys(decision) if not k.startswith("TLS_Clt")]
    assert from_keys == ["From:u@a.example", "u@a.example", "From:u@", "u@", "From:a.example", "a.example",
                         "From:example", "example"]


def test_keys_are_case_insensitive():
    amap = AccessMap.from_text("tls_clt:MX.EXAMPLE verify\n")
    decision = check_tls_client(amap, ConnectionFacts("mx.Example", "192.0.2.1"), "MAIL")
    assert decision.reply == "454 4.7.0 authentication required"
