"""The access map inside the running server, scenario by scenario as sendmail 8.17 answers
them (as observed; sendmail cf/README, STARTTLS: TLS_Clt with ENCR and VERIFY, relaying by
CERTISSUER and CERTSUBJECT, Srv_Features — the test names follow the observed scenarios):
the same replies at the same commands, and the same log lines."""

from __future__ import annotations

import smtplib
import socket
import ssl

import pytest

from tests.conftest import tls_settings


def policy_mta(make_mta, pki, tmp_path, access: str, **policy):
    amap = tmp_path / "access"
    amap.write_text(access + "\n")
    settings = {"tls": tls_settings(pki), "policy": {"access_map": str(amap), **policy},
                "local": {"domains": ["localhost", "mx.test"]}}
    return make_mta(settings)


class Client:
    def __init__(self, mta, source="127.0.0.1"):
        self.smtp = smtplib.SMTP(timeout=10, local_hostname="client.test", source_address=(source, 0))
        self.smtp._host = mta.host  # smtplib takes the TLS server name from here
        self.smtp.connect(mta.host, mta.port)
        self.smtp.ehlo()

    def starttls(self, pki, cert=None, key=None):
        ctx = ssl.create_default_context(cafile=str(pki.ca))
        if cert:
            ctx.load_cert_chain(str(cert), str(key))
        self.smtp.starttls(context=ctx)
        self.smtp.ehlo()
        return self

    def mail(self):
        code, text = self.smtp.mail("sender@client.test")
        return f"{code} {text.decode()}"

    def rcpt(self, rcpt="user@localhost"):
        code, text = self.smtp.rcpt(rcpt)
        return f"{code} {text.decode()}"


def test_d1_encr112_plain_rejected_at_mail(make_mta, pki, tmp_path):
    mta = policy_mta(make_mta, pki, tmp_path, "TLS_Clt:127.0.0.1 ENCR:112")
    assert Client(mta).mail() == "454 4.7.0 encryption too weak 0 less than 112"
    mta.wait_log("ruleset=check_mail, arg1=<sender@client.test>, relay=localhost [127.0.0.1], "
                 "reject=454 4.7.0 encryption too weak 0 less than 112")


def test_d1_encr112_tls_accepted(make_mta, pki, tmp_path):
    mta = policy_mta(make_mta, pki, tmp_path, "TLS_Clt:127.0.0.1 ENCR:112")
    c = Client(mta).starttls(pki)
    assert c.mail().startswith("250 2.1.0")
    assert c.rcpt().startswith("250 2.1.5")


def test_d1_encr512_rejected_at_mail_and_rcpt_logged_once_as_tls_client(make_mta, pki, tmp_path):
    mta = policy_mta(make_mta, pki, tmp_path, "TLS_Clt:127.0.0.1 ENCR:512")
    c = Client(mta).starttls(pki)
    assert c.mail() == "454 4.7.0 encryption too weak 256 less than 512"
    assert c.rcpt() == "454 4.7.0 encryption too weak 256 less than 512"
    log = mta.wait_log("ruleset=tls_client")
    assert ("ruleset=tls_client, arg1=NO, arg2=STARTTLS, relay=localhost [127.0.0.1], "
            "reject=454 4.7.0 encryption too weak 256 less than 512") in log


@pytest.mark.parametrize("how,expected,arg1", [
    ("plain", "454 4.7.0 authentication required", None),
    ("nocert", "454 4.7.0 not authenticated", "NO"),
    ("self", "454 4.7.0 authentication failed", "FAIL"),
    ("cacert", "250 2.1.0 <sender@client.test>... Sender ok", None),
])
def test_d2_verify(make_mta, pki, tmp_path, how, expected, arg1):
    mta = policy_mta(make_mta, pki, tmp_path, "TLS_Clt:localhost VERIFY")
    c = Client(mta)
    if how == "nocert":
        c.starttls(pki)
    elif how == "self":
        c.starttls(pki, pki.selfsigned_cert, pki.selfsigned_key)
    elif how == "cacert":
        c.starttls(pki, pki.client_cert, pki.client_key)
    assert c.mail() == expected
    if arg1:
        mta.wait_log(f"ruleset=tls_client, arg1={arg1}, arg2=STARTTLS, relay=localhost [127.0.0.1], "
                     f"reject={expected}")


@pytest.mark.parametrize("access,how,expected", [
    ("TLS_Clt:127.0.0.1 PERM+VERIFY:128", "plain", "503 5.7.0 authentication required"),
    ("TLS_Clt:127.0.0.1 PERM+VERIFY:128", "nocert", "503 5.7.0 not authenticated"),
    ("TLS_Clt:127.0.0.1 PERM+VERIFY:128", "cacert", "250 2.1.0 <sender@client.test>... Sender ok"),
    ("TLS_Clt:127.0.0.1 TEMP+VERIFY", "nocert", "403 4.7.0 not authenticated"),
])
def test_d3_temp_and_perm(make_mta, pki, tmp_path, access, how, expected):
    mta = policy_mta(make_mta, pki, tmp_path, access)
    c = Client(mta)
    if how == "nocert":
        c.starttls(pki)
    elif how == "cacert":
        c.starttls(pki, pki.client_cert, pki.client_key)
    assert c.mail() == expected


ISSUER = "/C=XX/O=Mailward+20Test/CN=Test+20CA"
SUBJECT = "/C=XX/O=Mailward+20Test/CN=client.test"


@pytest.mark.parametrize("how,ok", [("plain", False), ("nocert", False), ("self", False), ("cacert", True)])
def test_d4_relay_by_certificate_issuer(make_mta, pki, tmp_path, how, ok):
    mta = policy_mta(make_mta, pki, tmp_path, f"CERTISSUER:{ISSUER} RELAY")
    c = Client(mta, source="127.0.0.2")
    if how == "nocert":
        c.starttls(pki)
    elif how == "self":
        c.starttls(pki, pki.selfsigned_cert, pki.selfsigned_key)
    elif how == "cacert":
        c.starttls(pki, pki.client_cert, pki.client_key)
    assert c.mail().startswith("250")
    reply = c.rcpt("user@remote.example")
    if ok:
        assert reply.startswith("250 2.1.5")
    else:
        assert reply == "550 5.7.1 <user@remote.example>... Relaying denied"
        mta.wait_log("ruleset=check_rcpt, arg1=<user@remote.example>, relay=[127.0.0.2], "
                     "reject=550 5.7.1 <user@remote.example>... Relaying denied")
    assert Client(mta, source="127.0.0.2").rcpt("user@localhost").startswith("503")  # control: needs MAIL


def test_d4_loopback_relays_as_sendmail_hard_wires_it(make_mta, pki, tmp_path):
    mta = policy_mta(make_mta, pki, tmp_path, "")
    c = Client(mta)
    c.mail()
    assert c.rcpt("user@remote.example").startswith("250 2.1.5")


@pytest.mark.parametrize("cert,ok", [("client", True), ("other", False)])
def test_d5_relay_by_certificate_subject(make_mta, pki, tmp_path, cert, ok):
    from mailward.ca import authority
    other_cert, other_key = tmp_path / "oc.pem", tmp_path / "oc-key.pem"
    authority.issue(pki.dir / "ca", "other-client.test", ["other-client.test"], other_cert, other_key,
                    usage="client")
    mta = policy_mta(make_mta, pki, tmp_path, f"CERTISSUER:{ISSUER} SUBJECT\nCERTSUBJECT:{SUBJECT} RELAY")
    c = Client(mta, source="127.0.0.2")
    if cert == "client":
        c.starttls(pki, pki.client_cert, pki.client_key)
    else:
        c.starttls(pki, other_cert, other_key)
    c.mail()
    reply = c.rcpt("user@remote.example")
    assert reply.startswith("250 2.1.5") if ok else reply == "550 5.7.1 <user@remote.example>... Relaying denied"


def raw_ehlo(mta) -> bytes:
    s = socket.create_connection((mta.host, mta.port), timeout=5)
    s.recv(1000)
    s.sendall(b"EHLO client.test\r\n")
    data = b""
    while not data.endswith(b"250 HELP\r\n"):
        data += s.recv(4000)
    s.sendall(b"STARTTLS\r\n")
    data += s.recv(1000)
    s.close()
    return data


def test_e_srv_features_S_does_not_offer_starttls(make_mta, pki, tmp_path):
    mta = policy_mta(make_mta, pki, tmp_path, "Srv_Features:127.0.0.1 S")
    data = raw_ehlo(mta)
    assert b"STARTTLS\r\n" not in data.split(b"250 HELP\r\n")[0]
    assert data.endswith(b"503 5.5.0 TLS not available\r\n")


def test_e_srv_features_V_does_not_request_a_cert(make_mta, pki, tmp_path):
    mta = policy_mta(make_mta, pki, tmp_path, "Srv_Features:127.0.0.1 V")
    c = Client(mta).starttls(pki, pki.client_cert, pki.client_key)
    c.mail()
    c.rcpt()
    mta.wait_log("verify=NOT, cipher=")


def test_e_srv_features_V_plus_verify(make_mta, pki, tmp_path):
    mta = policy_mta(make_mta, pki, tmp_path, "Srv_Features:127.0.0.1 V\nTLS_Clt:127.0.0.1 VERIFY")
    c = Client(mta).starttls(pki, pki.client_cert, pki.client_key)
    assert c.mail() == "454 4.7.0 no authentication requested"
    mta.wait_log("ruleset=tls_client, arg1=NOT, arg2=STARTTLS, relay=localhost [127.0.0.1], "
                 "reject=454 4.7.0 no authentication requested")


def test_access_map_change_is_picked_up_without_restart(make_mta, pki, tmp_path):
    mta = policy_mta(make_mta, pki, tmp_path, "")
    assert Client(mta).mail().startswith("250")
    (tmp_path / "access").write_text("TLS_Clt:127.0.0.1 ENCR:112\n")
    import time
    time.sleep(1.2)
    assert Client(mta).mail() == "454 4.7.0 encryption too weak 0 less than 112"


@pytest.mark.parametrize("entry,greeting", [
    ("Connect:127.0.0.1 REJECT", b"550 5.7.1 Access denied"),
    ('Connect:127.0.0.1 ERROR:"421 come back later"', b"421 4.0.0 come back later"),
])
def test_connect_entries_refuse_at_the_greeting(make_mta, pki, tmp_path, entry, greeting):
    mta = policy_mta(make_mta, pki, tmp_path, entry)
    s = socket.create_connection((mta.host, mta.port), timeout=5)
    first = s.recv(1000)
    assert first.startswith(greeting), first
    if greeting.startswith(b"5"):
        s.sendall(b"EHLO c\r\n")
        assert s.recv(1000).startswith(b"503 5.5.1")
        s.sendall(b"QUIT\r\n")
        assert s.recv(1000).startswith(b"221")


def test_domains_routed_local_are_accepted_without_relaying(make_mta, pki, tmp_path):
    routes = tmp_path / "routes"
    routes.write_text("virtual.example local\n")
    mta = make_mta({"delivery": {"route_file": str(routes)}})
    c = Client(mta, source="127.0.0.2")
    c.mail()
    assert c.rcpt("someone@virtual.example").startswith("250 2.1.5")
    assert c.rcpt("someone@remote.example") == "550 5.7.1 <someone@remote.example>... Relaying denied"
