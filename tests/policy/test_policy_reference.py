"""Truth table from sendmail 8.17's observed behaviour (sessions recorded against a real sendmail 8.17
receiving mail: the access map's TLS_Clt, TLS_Rcpt and relaying-by-certificate cases).

Each row: the access map in force, the connection facts, the check as the session runs it,
and the exact reply (and, where the reference logs one, the log text after the queue id).
"""

from __future__ import annotations

import pytest

from mailward.policy import (
    STARTTLS_NOT_AVAILABLE,
    AccessMap,
    check_connect,
    check_mail,
    check_rcpt,
    check_tls_client,
    srv_features,
)
from mailward.tls.facts import ConnectionFacts, TLSFacts

CA_ISSUER = "/C=XX/O=Oracle+20Test/CN=Oracle+20Test+20CA"
CLIENT_SUBJECT = "/C=XX/O=Oracle+20Test/CN=client.test"
SELF = "/C=XX/O=Self+20Signed/CN=selfsigned.test"
LOCAL = ("oracle.test", "localhost")


def tls(verify: str, subject: str = "", issuer: str = "", bits: int = 256) -> TLSFacts:
    return TLSFacts(verify=verify, tls_version="TLSv1.3", cipher="TLS_AES_256_GCM_SHA384", cipher_bits=bits,
                    alg_bits=bits, cert_subject=subject, cert_issuer=issuer,
                    cn_subject=subject.rpartition("CN=")[2])


FACTS = {
    "plain": TLSFacts(),
    "nocert": tls("NO"),
    "notreq": tls("NOT"),
    "self": tls("FAIL", SELF, SELF),
    "cacert": tls("OK", CLIENT_SUBJECT, CA_ISSUER),
    "other": tls("OK", "/C=XX/O=Oracle+20Test/CN=other-client.test", CA_ISSUER),
}


def conn(who: str, facts: str) -> ConnectionFacts:
    name, addr = {"localhost": ("localhost", "127.0.0.1"), "client": ("client.test", "127.0.0.2")}[who]
    return ConnectionFacts(name, addr, helo="client.test", tls=FACTS[facts])


def run(amap: AccessMap, who: str, facts: str, step: str):
    c = conn(who, facts)
    if step == "STARTTLS":
        return check_tls_client(amap, c, "STARTTLS")
    if step == "MAIL":
        return check_mail(amap, c, "<sender@client.test>")
    kind, _, rcpt = step.partition(" ")
    assert kind == "RCPT"
    return check_rcpt(amap, c, f"<{rcpt}>", LOCAL)


RELAY = "localhost [127.0.0.1]"
RELAY2 = "client.test [127.0.0.2]"
ENCR112 = "TLS_Clt:127.0.0.1 ENCR:112"
ENCR512 = "TLS_Clt:127.0.0.1 ENCR:512"
VERIFY = "TLS_Clt:localhost VERIFY"
PERMV = "TLS_Clt:127.0.0.1 PERM+VERIFY:128"
TEMPV = "TLS_Clt:127.0.0.1 TEMP+VERIFY"
CI_RELAY = f"CERTISSUER:{CA_ISSUER} RELAY"
CI_SUBJ = f"CERTISSUER:{CA_ISSUER} SUBJECT\nCERTSUBJECT:{CLIENT_SUBJECT} RELAY"
SRV_V_VERIFY = "Srv_Features:127.0.0.1 V\nTLS_Clt:127.0.0.1 VERIFY"

# (block, map, who, facts, step, reply, log fragment or None)
ROWS = [
    ("b_tls_nocert", "", "localhost", "nocert", "STARTTLS", "", None),
    ("b_tls_nocert", "", "localhost", "nocert", "MAIL", "250 2.1.0 <sender@client.test>... Sender ok", None),
    ("b_tls_nocert", "", "localhost", "nocert", "RCPT root@oracle.test",
     "250 2.1.5 <root@oracle.test>... Recipient ok", None),
    ("c_tls_selfsigned", "", "localhost", "self", "MAIL", "250 2.1.0 <sender@client.test>... Sender ok", None),
    ("d1_encr112_plain", ENCR112, "localhost", "plain", "MAIL", "454 4.7.0 encryption too weak 0 less than 112",
     f"ruleset=check_mail, arg1=<sender@client.test>, relay={RELAY}, reject=454 4.7.0 encryption too weak 0 "
     "less than 112"),
    ("d1_encr112_tls", ENCR112, "localhost", "nocert", "STARTTLS", "", None),
    ("d1_encr112_tls", ENCR112, "localhost", "nocert", "MAIL", "250 2.1.0 <sender@client.test>... Sender ok", None),
    ("d1_encr112_tls", ENCR112, "localhost", "nocert", "RCPT root@oracle.test",
     "250 2.1.5 <root@oracle.test>... Recipient ok", None),
    ("d1_encr512_tls", ENCR512, "localhost", "nocert", "STARTTLS", "454 4.7.0 encryption too weak 256 less than 512",
     f"ruleset=tls_client, arg1=NO, arg2=STARTTLS, relay={RELAY}, reject=454 4.7.0 encryption too weak 256 "
     "less than 512"),
    ("d1_encr512_tls_raw", ENCR512, "localhost", "nocert", "MAIL", "454 4.7.0 encryption too weak 256 less than 512",
     None),
    ("d2_verify_plain", VERIFY, "localhost", "plain", "MAIL", "454 4.7.0 authentication required",
     f"ruleset=check_mail, arg1=<sender@client.test>, relay={RELAY}, reject=454 4.7.0 authentication required"),
    ("d2_verify_nocert", VERIFY, "localhost", "nocert", "STARTTLS", "454 4.7.0 not authenticated",
     f"ruleset=tls_client, arg1=NO, arg2=STARTTLS, relay={RELAY}, reject=454 4.7.0 not authenticated"),
    ("d2_verify_self", VERIFY, "localhost", "self", "STARTTLS", "454 4.7.0 authentication failed",
     f"ruleset=tls_client, arg1=FAIL, arg2=STARTTLS, relay={RELAY}, reject=454 4.7.0 authentication failed"),
    ("d2_verify_cacert", VERIFY, "localhost", "cacert", "STARTTLS", "", None),
    ("d2_verify_cacert", VERIFY, "localhost", "cacert", "MAIL", "250 2.1.0 <sender@client.test>... Sender ok", None),
    ("d3_permverify_plain", PERMV, "localhost", "plain", "MAIL", "503 5.7.0 authentication required",
     f"ruleset=check_mail, arg1=<sender@client.test>, relay={RELAY}, reject=503 5.7.0 authentication required"),
    ("d3_permverify_nocert", PERMV, "localhost", "nocert", "STARTTLS", "503 5.7.0 not authenticated",
     f"ruleset=tls_client, arg1=NO, arg2=STARTTLS, relay={RELAY}, reject=503 5.7.0 not authenticated"),
    ("d3_permverify_self", PERMV, "localhost", "self", "STARTTLS", "503 5.7.0 authentication failed",
     f"ruleset=tls_client, arg1=FAIL, arg2=STARTTLS, relay={RELAY}, reject=503 5.7.0 authentication failed"),
    ("d3_permverify_cacert", PERMV, "localhost", "cacert", "STARTTLS", "", None),
    ("d3_permverify_cacert", PERMV, "localhost", "cacert", "RCPT root@oracle.test",
     "250 2.1.5 <root@oracle.test>... Recipient ok", None),
    ("d3_tempverify_nocert", TEMPV, "localhost", "nocert", "STARTTLS", "403 4.7.0 not authenticated",
     f"ruleset=tls_client, arg1=NO, arg2=STARTTLS, relay={RELAY}, reject=403 4.7.0 not authenticated"),
    ("d4_relay_from_127.0.0.1", CI_RELAY, "localhost", "plain", "RCPT user@remote.example",
     "250 2.1.5 <user@remote.example>... Recipient ok", None),
    ("d4_relay_plain", CI_RELAY, "client", "plain", "RCPT user@remote.example",
     "550 5.7.1 <user@remote.example>... Relaying denied",
     f"ruleset=check_rcpt, arg1=<user@remote.example>, relay={RELAY2}, reject=550 5.7.1 <user@remote.example>... "
     "Relaying denied"),
    ("d4_relay_nocert", CI_RELAY, "client", "nocert", "RCPT user@remote.example",
     "550 5.7.1 <user@remote.example>... Relaying denied", None),
    ("d4_relay_self", CI_RELAY, "client", "self", "RCPT user@remote.example",
     "550 5.7.1 <user@remote.example>... Relaying denied", None),
    ("d4_relay_cacert", CI_RELAY, "client", "cacert", "RCPT user@remote.example",
     "250 2.1.5 <user@remote.example>... Recipient ok", None),
    ("d4_local_from_127.0.0.2", CI_RELAY, "client", "plain", "RCPT root@oracle.test",
     "250 2.1.5 <root@oracle.test>... Recipient ok", None),
    ("d5_subject_match", CI_SUBJ, "client", "cacert", "RCPT user@remote.example",
     "250 2.1.5 <user@remote.example>... Recipient ok", None),
    ("d5_subject_other", CI_SUBJ, "client", "other", "RCPT user@remote.example",
     "550 5.7.1 <user@remote.example>... Relaying denied",
     f"ruleset=check_rcpt, arg1=<user@remote.example>, relay={RELAY2}, reject=550 5.7.1 <user@remote.example>... "
     "Relaying denied"),
    ("e_srvfeat_V_plus_verify", SRV_V_VERIFY, "localhost", "notreq", "STARTTLS",
     "454 4.7.0 no authentication requested",
     f"ruleset=tls_client, arg1=NOT, arg2=STARTTLS, relay={RELAY}, reject=454 4.7.0 no authentication requested"),
    ("e_srvfeat_V_cacert", "Srv_Features:127.0.0.1 V", "localhost", "notreq", "MAIL",
     "250 2.1.0 <sender@client.test>... Sender ok", None),
]


@pytest.mark.parametrize("block,map_text,who,facts,step,reply,log", ROWS,
                         ids=[f"{r[0]}-{r[4]}" for r in ROWS])
def test_reference_row(block, map_text, who, facts, step, reply, log):
    amap = AccessMap.from_text(map_text, "access")
    decision = run(amap, who, facts, step)
    assert decision.reply == reply
    assert decision.failed == (reply[:1] in ("4", "5"))
    if log is not None:
        assert decision.log_fragment == log
    elif not decision.failed:
        assert decision.log_fragment == ""


@pytest.mark.parametrize("letters,offer,ask_cert", [
    ("V", True, False),   # e_srvfeat_V_*: no certificate requested → verify=NOT
    ("v", True, True),    # e_srvfeat_v_*: certificate requested
    ("S", False, None),   # e_srvfeat_S: STARTTLS not offered
])
def test_srv_features_reference(letters, offer, ask_cert):
    amap = AccessMap.from_text(f"Srv_Features:127.0.0.1 {letters}\n")
    features = srv_features(amap, conn("localhost", "plain"))
    assert (features.offer_starttls, features.request_client_cert) == (offer, ask_cert)
    assert features.entry is not None and features.entry.line == 1


def test_starttls_refused_reply_text():
    # e_srvfeat_S: STARTTLS when it was not offered
    assert STARTTLS_NOT_AVAILABLE == "503 5.5.0 TLS not available"


def test_no_map_accepts_everything_but_software():
    amap = AccessMap.from_text("")
    for facts in FACTS:
        assert not check_tls_client(amap, conn("localhost", facts), "STARTTLS").failed
        assert check_connect(amap, conn("localhost", facts)).action == "continue"
    broken = ConnectionFacts("localhost", "127.0.0.1", tls=TLSFacts(verify="SOFTWARE"))
    decision = check_tls_client(amap, broken, "STARTTLS")
    assert decision.reply == "454 4.7.0 TLS handshake failed."
    assert check_tls_client(amap, broken, "STARTTLS", tls_perm_err=True).reply == "554 5.7.0 TLS handshake failed."


def test_tls_perm_err_makes_unprefixed_permanent():
    amap = AccessMap.from_text(ENCR112)
    decision = check_mail(amap, conn("localhost", "plain"), "<sender@client.test>", tls_perm_err=True)
    assert decision.reply == "554 5.7.0 encryption too weak 0 less than 112"
    assert decision.action == "reject"
    # TEMP+ and PERM+ are not affected by tls_perm_err
    amap = AccessMap.from_text(TEMPV)
    assert check_tls_client(amap, conn("localhost", "nocert"), "STARTTLS", True).reply.startswith("403 4.7.0")
