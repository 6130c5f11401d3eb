"""Truth table from the two source documents: every rule and example of the STARTTLS section of
"sendmail cf/README" (8.12.3) and the access map examples of "Securing Sendmail with TLS"."""

from __future__ import annotations

import pytest

from mailward.policy import (
    AccessMap,
    check_rcpt,
    check_tls_client,
    check_tls_rcpt,
    check_tls_server,
    srv_features,
    try_tls,
)
from mailward.tls.dn import xtext_encode
from mailward.tls.facts import ConnectionFacts, TLSFacts


def tls(verify="OK", bits=256, subject="", issuer="", cn=""):
    return TLSFacts(verify=verify, tls_version="TLSv1.3", cipher="TLS_AES_256_GCM_SHA384", cipher_bits=bits,
                    alg_bits=bits, cert_subject=subject, cert_issuer=issuer, cn_subject=cn)


PLAIN = TLSFacts()

# "sendmail cf/README, STARTTLS", "Allowing Connections": the example access map
SEED_EXAMPLE = """\
TLS_Srv:secure.example          ENCR:112
TLS_Clt:laptop.example          PERM+VERIFY:112
TLS_Rcpt:darth@endmail.org      ENCR:112+CN:smtp.endmail.org
"""


@pytest.mark.parametrize("server,facts,reply", [
    ("secure.example", PLAIN, "454 4.7.0 encryption too weak 0 less than 112"),
    ("mx.secure.example", PLAIN, "454 4.7.0 encryption too weak 0 less than 112"),   # parent domain
    ("secure.example", tls("NO", 256), ""),                                          # ENCR needs no cert
    ("secure.example", tls("NO", 56), "454 4.7.0 encryption too weak 56 less than 112"),
    ("other.example", PLAIN, ""),                                                    # no entry
])
def test_seed_tls_srv_encr(server, facts, reply):
    amap = AccessMap.from_text(SEED_EXAMPLE)
    decision = check_tls_server(amap, ConnectionFacts(server, "192.0.2.25", tls=facts))
    assert decision.reply == reply


@pytest.mark.parametrize("client,facts,reply", [
    ("host.laptop.example", tls("OK", 128), ""),
    ("host.laptop.example", tls("OK", 56), "503 5.7.0 encryption too weak 56 less than 112"),
    ("host.laptop.example", tls("NO"), "503 5.7.0 not authenticated"),
    ("host.laptop.example", tls("FAIL"), "503 5.7.0 authentication failed"),
    ("host.laptop.example", tls("TEMP"), "503 5.7.0 authentication failure TEMP"),
    ("desk.office.example", tls("NO"), ""),
])
def test_seed_tls_clt_perm_verify(client, facts, reply):
    amap = AccessMap.from_text(SEED_EXAMPLE)
    assert check_tls_client(amap, ConnectionFacts(client, "192.0.2.9", tls=facts), "STARTTLS").reply == reply


def test_seed_tls_clt_at_mail_without_starttls():
    amap = AccessMap.from_text(SEED_EXAMPLE)
    decision = check_tls_client(amap, ConnectionFacts("a.laptop.example", "192.0.2.9"), "MAIL")
    assert decision.reply == "503 5.7.0 authentication required"
    assert decision.args == ("", "MAIL")


@pytest.mark.parametrize("rcpt,facts,reply", [
    ("darth@endmail.org", tls("NO", 256, cn="smtp.endmail.org"), ""),
    ("darth@endmail.org", tls("NO", 256, cn="other.endmail.org"),
     "454 4.7.0 CN other.endmail.org does not match smtp.endmail.org"),
    ("darth@endmail.org", PLAIN, "454 4.7.0 encryption too weak 0 less than 112"),
    ("vader@endmail.org", PLAIN, ""),
])
def test_seed_tls_rcpt_cn(rcpt, facts, reply):
    amap = AccessMap.from_text(SEED_EXAMPLE)
    conn = ConnectionFacts("smtp.endmail.org", "192.0.2.30", tls=facts)
    assert check_tls_rcpt(amap, conn, rcpt).reply == reply


def test_seed_multiple_mx_tls_srv_is_not_enough_but_tls_rcpt_is():
    """secure.domain has MX 10 (itself) and MX 50 mail.other.domain: TLS_Srv only binds the
    first; TLS_Rcpt binds the recipient whatever MX takes it."""
    backup_in_clear = ConnectionFacts("mail.other.domain", "192.0.2.50")
    srv_only = AccessMap.from_text("TLS_Srv:secure.domain ENCR:112\n")
    assert not check_tls_server(srv_only, backup_in_clear).failed
    assert not check_tls_rcpt(srv_only, backup_in_clear, "user@secure.domain").failed
    by_rcpt = AccessMap.from_text("TLS_Rcpt:secure.domain ENCR:112\n")
    refused = check_tls_rcpt(by_rcpt, backup_in_clear, "<user@secure.domain>")
    assert refused.reply == "454 4.7.0 encryption too weak 0 less than 112"
    assert refused.action == "tempfail"  # deferred, not sent in clear
    backup_with_tls = ConnectionFacts("mail.other.domain", "192.0.2.50", tls=tls("NO", 256))
    assert not check_tls_rcpt(by_rcpt, backup_with_tls, "user@secure.domain").failed
    assert not check_tls_rcpt(by_rcpt, backup_in_clear, "user@elsewhere.domain").failed


@pytest.mark.parametrize("rhs,facts,server,reply", [
    ("VERIFY+CN", tls(cn="mx.example"), "mx.example", ""),
    ("VERIFY+CN", tls(cn="MX.Example"), "mx.example", ""),  # case-insensitive, as sendmail
    ("VERIFY+CN", tls(cn="wrong.example"), "mx.example", "454 4.7.0 CN wrong.example does not match mx.example"),
    ("VERIFY+CN", tls("NO", cn="mx.example"), "mx.example", "454 4.7.0 not authenticated"),
    ("ENCR:128+CS:/C=XX/CN=mx.example", tls("NO", subject="/C=XX/CN=mx.example"), "mx.example", ""),
    ("ENCR:128+CS:/C=XX/CN=mx.example", tls("NO", subject="/C=XX/CN=evil.example"), "mx.example",
     "454 4.7.0 Cert Subject /C=XX/CN=evil.example does not match /C=XX/CN=mx.example"),
    ("VERIFY+CI:/C=XX/CN=CA++CN:mx.example", tls(issuer="/C=XX/CN=CA", cn="mx.example"), "mx.example", ""),
    ("VERIFY+CI:/C=XX/CN=CA++CN:mx.example", tls(issuer="/C=XX/CN=Other", cn="mx.example"), "mx.example",
     "454 4.7.0 Cert Issuer /C=XX/CN=Other does not match /C=XX/CN=CA"),
    ("VERIFY+CI:/C=XX/CN=CA++CN:mx.example", tls(issuer="/C=XX/CN=CA", cn="mail.example"), "mx.example",
     "454 4.7.0 CN mail.example does not match mx.example"),
    ("PERM+VERIFY:256+CN", tls(bits=128, cn="mx.example"), "mx.example",
     "503 5.7.0 encryption too weak 128 less than 256"),
    ("TEMP+ENCR:112", PLAIN, "mx.example", "403 4.7.0 encryption too weak 0 less than 112"),
    ("VERIFY", PLAIN, "mx.example", "454 4.7.0 other side does not support STARTTLS"),
    ("OK", PLAIN, "mx.example", ""),
])
def test_tls_requirements_and_extensions(rhs, facts, server, reply):
    amap = AccessMap.from_text(f"TLS_Srv:{server} {rhs}\n")
    assert check_tls_server(amap, ConnectionFacts(server, "192.0.2.1", tls=facts)).reply == reply


def test_tls_server_after_try_tls_no_is_clear():
    amap = AccessMap.from_text("TLS_Srv:mx.example VERIFY\nTry_TLS:mx.example NO\n")
    conn = ConnectionFacts("mx.example", "192.0.2.1")
    assert not try_tls(amap, "mx.example", "192.0.2.1")
    assert check_tls_server(amap, conn, tls_disabled=True).reply == "454 4.7.0 STARTTLS disabled locally"


def test_software_always_fails_even_with_ok_override():
    amap = AccessMap.from_text("TLS_Srv:mx.example OK\nTLS_Rcpt:u@x.example PERM+ENCR:1\n")
    broken = ConnectionFacts("mx.example", "192.0.2.1", tls=TLSFacts(verify="SOFTWARE"))
    assert check_tls_server(amap, broken).reply == "454 4.7.0 TLS handshake failed."
    assert check_tls_rcpt(amap, broken, "u@x.example").reply == "503 5.7.0 TLS handshake failed."


def test_bare_tag_default_and_override():
    amap = AccessMap.from_text("TLS_Clt: VERIFY\nTLS_Clt:trusted.example OK\n")
    assert check_tls_client(amap, ConnectionFacts("a.example", "192.0.2.1", tls=tls("NO")), "STARTTLS").failed
    assert not check_tls_client(amap, ConnectionFacts("h.trusted.example", "192.0.2.2", tls=tls("NO")),
                                "STARTTLS").failed


# "sendmail cf/README, STARTTLS", "Disabling STARTTLS And Setting SMTP Server Features"
FEATURES = "Try_TLS:broken.server NO\nSrv_Features:my.domain v\nSrv_Features: V\n"


@pytest.mark.parametrize("name,addr,expected", [
    ("broken.server", "192.0.2.1", False),
    ("mx.broken.server", "192.0.2.1", False),   # "or any host in that domain"
    ("good.server", "192.0.2.2", True),
])
def test_seed_try_tls(name, addr, expected):
    assert try_tls(AccessMap.from_text(FEATURES), name, addr) is expected


def test_try_tls_by_address_and_default():
    amap = AccessMap.from_text("Try_TLS:192.0.2 NO\nTry_TLS: NO\nTry_TLS:ok.example YES\n")
    assert not try_tls(amap, "x.example", "192.0.2.7")
    assert not try_tls(amap, "x.example", "198.51.100.1")
    assert try_tls(amap, "mx.ok.example", "198.51.100.1")


@pytest.mark.parametrize("name,addr,request_cert", [
    ("host.my.domain", "192.0.2.1", True),
    ("my.domain", "192.0.2.1", True),
    ("elsewhere.example", "192.0.2.2", False),
])
def test_seed_srv_features(name, addr, request_cert):
    features = srv_features(AccessMap.from_text(FEATURES), ConnectionFacts(name, addr))
    assert features.request_client_cert is request_cert
    assert features.offer_starttls


def test_srv_features_unknown_letters_are_recorded():
    features = srv_features(AccessMap.from_text("Srv_Features: V A p\n"), ConnectionFacts("x", "192.0.2.1"))
    assert features.request_client_cert is False
    assert features.ignored == "Ap"


# "sendmail cf/README, STARTTLS", "Relaying": CERTISSUER / CERTSUBJECT and the +XX encoding
DARTH = "/C=US/ST=California/O=endmail.org/OU=private/CN=Darth Mail (Cert)/Email=darth+cert@endmail.org"
DARTH_812 = "/C=US/ST=California/O=endmail.org/OU=private/CN=Darth+20Mail+20+28Cert+29/Email=darth+2Bcert@endmail.org"
DARTH_817 = ("/C=US/ST=California/O=endmail.org/OU=private/CN=Darth+20Mail+20+28Cert+29/"
             "Email=darth+5C+2Bcert@endmail.org")
DEATHSTAR = "/C=US/ST=California/O=endmail.org/OU=private/CN=DeathStar/Email=deathstar@endmail.org"


def test_seed_dn_encoding():
    assert xtext_encode(DARTH) == DARTH_812


def client(issuer, subject=DEATHSTAR, verify="OK"):
    return ConnectionFacts("laptop.remote.example", "198.51.100.7", tls=tls(verify, subject=subject, issuer=issuer))


@pytest.mark.parametrize("entry_form,cert_form", [(DARTH_812, DARTH_812), (DARTH_812, DARTH_817),
                                                  (DARTH_817, DARTH_817), (DARTH_817, DARTH_812)])
def test_seed_certissuer_relay_both_dn_forms(entry_form, cert_form):
    amap = AccessMap.from_text(f"CERTISSUER:{entry_form}\tRELAY\n")
    decision = check_rcpt(amap, client(cert_form), "<user@remote.example>", ["local.example"])
    assert decision.action == "relay"
    assert decision.reply == "250 2.1.5 <user@remote.example>... Recipient ok"
    assert decision.entry.line == 1


def test_seed_certissuer_needs_verified_cert():
    amap = AccessMap.from_text(f"CERTISSUER:{DARTH_812}\tRELAY\n")
    for verify in ("FAIL", "NO", "NOT"):
        decision = check_rcpt(amap, client(DARTH_812, verify=verify), "<user@remote.example>", ["local.example"])
        assert decision.reply == "550 5.7.1 <user@remote.example>... Relaying denied"


def test_seed_certissuer_subject_then_certsubject():
    amap = AccessMap.from_text(f"CERTISSUER:{DARTH_812}\tSUBJECT\nCERTSUBJECT:{DEATHSTAR}\t\tRELAY\n")
    ok = check_rcpt(amap, client(DARTH_812), "user@remote.example", ["local.example"])
    assert ok.action == "relay" and ok.entry.line == 2
    other = client(DARTH_812, subject=DEATHSTAR.replace("DeathStar", "XWing"))
    assert check_rcpt(amap, other, "user@remote.example", ["local.example"]).failed


def test_cert_regex_rewrites_before_lookup():
    amap = AccessMap.from_text("CERTISSUER:/O=endmail.org RELAY\n")
    decision = check_rcpt(amap, client(DARTH_812), "user@remote.example", ["local.example"],
                          cert_regex_issuer=r"(/O=[^/]*)")
    assert decision.action == "relay"
    assert check_rcpt(amap, client(DARTH_812), "user@remote.example", ["local.example"]).failed


# "Securing Sendmail with TLS": "ENCR:112" for a server, "TLS_Clt:desktop.example:net VERIFY:80" for a client
def test_seed_002_examples():
    amap = AccessMap.from_text("TLS_Srv:mail.example.com ENCR:112\nTLS_Clt:desktop.example:net VERIFY:80\n")
    assert len(amap) == 2
    weak = ConnectionFacts("mail.example.com", "192.0.2.1", tls=tls("NO", 40))
    assert check_tls_server(amap, weak).reply == "454 4.7.0 encryption too weak 40 less than 112"
    desk = ConnectionFacts("desktop.example:net", "192.0.2.2", tls=tls("OK", 64))
    assert check_tls_client(amap, desk, "STARTTLS").reply == "454 4.7.0 encryption too weak 64 less than 80"
    assert not check_tls_client(amap, ConnectionFacts("desktop.example:net", "192.0.2.2", tls=tls("OK", 128)),
                                "STARTTLS").failed
