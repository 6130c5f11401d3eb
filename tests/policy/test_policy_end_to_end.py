"""The access map in a real mailward server, over real TLS sessions (smtplib on loopback,
certificates from mailward's own CA tool): the reference file's d/e scenarios end to end."""

from __future__ import annotations

import smtplib
import ssl
import time

import pytest

from mailward.ca.show import show
from tests.conftest import tls_settings


def ctx(pki, cert=None, key=None) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=str(pki.ca))
    if cert:
        context.load_cert_chain(str(cert), str(key))
    return context


def start(make_mta, pki, access: str, **tls_extra):
    mta = make_mta(start=False, settings={
        "tls": tls_settings(pki, **tls_extra),
        "local": {"domains": ["localhost", "mx.test"]},
        "policy": {"access_map": "access"},
    })
    (mta.base / "access").write_text(access)
    return mta.start()


def session(mta, context=None, source="127.0.0.1"):
    """EHLO, optional STARTTLS + EHLO; returns the open smtplib connection."""
    s = smtplib.SMTP(mta.host, mta.port, local_hostname="client.test", timeout=10,
                     source_address=(source, 0))
    s.ehlo()
    if context is not None:
        s.starttls(context=context)
        s.ehlo()
    return s


def mail_rcpt(s, rcpt="user@localhost"):
    mail = s.mail("sender@client.test")
    rcpt_reply = s.rcpt(rcpt)
    s.quit()
    return (mail[0], mail[1].decode()), (rcpt_reply[0], rcpt_reply[1].decode())


def test_encr112_refused_in_clear_accepted_over_tls(make_mta, pki):
    mta = start(make_mta, pki, "TLS_Clt:127.0.0.1 ENCR:112\n")
    mail, rcpt = mail_rcpt(session(mta))
    assert mail == (454, "4.7.0 encryption too weak 0 less than 112")
    log = mta.wait_log("ruleset=check_mail")
    assert ("ruleset=check_mail, arg1=<sender@client.test>, relay=localhost [127.0.0.1], "
            "reject=454 4.7.0 encryption too weak 0 less than 112") in log
    mail, rcpt = mail_rcpt(session(mta, ctx(pki)))
    assert mail[0] == 250 and rcpt[0] == 250


def test_encr512_fails_after_starttls_at_mail_and_rcpt(make_mta, pki):
    mta = start(make_mta, pki, "TLS_Clt:127.0.0.1 ENCR:512\n")
    mail, rcpt = mail_rcpt(session(mta, ctx(pki)))
    assert mail == (454, "4.7.0 encryption too weak 256 less than 512")
    assert rcpt == (454, "4.7.0 encryption too weak 256 less than 512")
    assert ("ruleset=tls_client, arg1=NO, arg2=STARTTLS, relay=localhost [127.0.0.1], "
            "reject=454 4.7.0 encryption too weak 256 less than 512") in mta.wait_log("ruleset=tls_client")


@pytest.mark.parametrize("cert,expected", [
    ("self", (454, "4.7.0 authentication failed")),
    ("none", (454, "4.7.0 not authenticated")),
    ("ca", (250, "2.1.0 <sender@client.test>... Sender ok")),
])
def test_verify_self_signed_refused_ca_signed_accepted(make_mta, pki, cert, expected):
    mta = start(make_mta, pki, "TLS_Clt:localhost VERIFY\n")
    files = {"self": (pki.selfsigned_cert, pki.selfsigned_key), "ca": (pki.client_cert, pki.client_key),
             "none": (None, None)}[cert]
    mail, _ = mail_rcpt(session(mta, ctx(pki, *files)))
    assert mail == expected


@pytest.mark.parametrize("rhs,expected", [("PERM+VERIFY:128", 503), ("TEMP+VERIFY", 403)])
def test_perm_and_temp_codes(make_mta, pki, rhs, expected):
    mta = start(make_mta, pki, f"TLS_Clt:127.0.0.1 {rhs}\n")
    mail, _ = mail_rcpt(session(mta, ctx(pki)))
    assert mail[0] == expected
    assert mail[1].endswith(" not authenticated")


def test_certissuer_relay_only_with_the_trusted_certificate(make_mta, pki):
    issuer = show(pki.client_cert).cert_issuer
    mta = start(make_mta, pki, f"CERTISSUER:{issuer} RELAY\n")
    # from 127.0.0.2: not the hard-wired local relay client
    _, rcpt = mail_rcpt(session(mta, None, "127.0.0.2"), "user@remote.example")
    assert rcpt == (550, "5.7.1 <user@remote.example>... Relaying denied")
    _, rcpt = mail_rcpt(session(mta, ctx(pki, pki.other_cert, pki.other_key), "127.0.0.2"), "user@remote.example")
    assert rcpt[0] == 550  # a certificate from a CA the server does not trust: verify=FAIL
    _, rcpt = mail_rcpt(session(mta, ctx(pki, pki.client_cert, pki.client_key), "127.0.0.2"),
                        "user@remote.example")
    assert rcpt == (250, "2.1.5 <user@remote.example>... Recipient ok")


def test_srv_features_V_gives_verify_not_and_no_authentication_requested(make_mta, pki):
    mta = start(make_mta, pki, "Srv_Features:127.0.0.1 V\nTLS_Clt:127.0.0.1 VERIFY\n")
    mail, _ = mail_rcpt(session(mta, ctx(pki, pki.client_cert, pki.client_key)))
    assert mail == (454, "4.7.0 no authentication requested")
    log = mta.wait_log("ruleset=tls_client")
    assert "verify=NOT" in log
    assert "ruleset=tls_client, arg1=NOT, arg2=STARTTLS" in log


def test_srv_features_S_hides_starttls(make_mta, pki):
    mta = start(make_mta, pki, "Srv_Features:127.0.0.1 S\n")
    s = session(mta)
    assert not s.has_extn("starttls")
    assert s.docmd("STARTTLS") == (503, b"5.5.0 TLS not available")
    s.quit()


def test_map_change_is_picked_up_and_a_bad_map_keeps_the_old_one(make_mta, pki):
    mta = start(make_mta, pki, "TLS_Clt:127.0.0.1 ENCR:112\n")
    assert mail_rcpt(session(mta))[0][0] == 454
    access = mta.base / "access"
    access.write_text("TLS_Clt:127.0.0.1 ENCR:112\nTLS_Clt:x VERFY\n")
    time.sleep(1.2)
    assert mail_rcpt(session(mta))[0][0] == 454  # this session triggers the (failed) reload
    mta.wait_log("access:2: unknown TLS requirement 'VERFY'")
    access.write_text("TLS_Clt:127.0.0.2 ENCR:112\n")
    time.sleep(1.2)
    session(mta).quit()  # the first session after the change reloads
    assert mail_rcpt(session(mta))[0][0] == 250
