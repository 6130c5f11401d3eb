"""Property tests: any facts against any valid map give a well-formed decision, never a crash."""

from __future__ import annotations

from tests.fuzzing import examples  # noqa: E402
from hypothesis import given, settings
from hypothesis import strategies as st

from mailward.policy import (
    AccessMap,
    check_connect,
    check_mail,
    check_rcpt,
    check_tls_client,
    check_tls_rcpt,
    check_tls_server,
    first_failure,
    srv_features,
    try_tls,
)
from mailward.tls.facts import VERIFY_VALUES, ConnectionFacts, TLSFacts

MAP = AccessMap.from_text("""\
TLS_Clt:example VERIFY:128+CN
TLS_Clt:192.0 TEMP+ENCR:256
TLS_Clt: PERM+VERIFY+CI:/C=XX/CN=CA
TLS_Srv:mx.example VERIFY+CN++CS:/C=XX/CN=mx.example
TLS_Rcpt:example ENCR:112
TLS_Rcpt:u@ OK
Connect:example REJECT
Connect:10 RELAY
From:a@ ERROR:"451 later"
To:b.example RELAY
CERTISSUER:/C=XX/CN=CA SUBJECT
CERTSUBJECT:/C=XX/CN=a.example RELAY
Try_TLS:example NO
Srv_Features: V S x
""")

labels = st.text(alphabet="abcxe.-[]:0123456789", min_size=0, max_size=20)
addrs = st.one_of(st.ip_addresses().map(str), labels)
facts = st.builds(
    lambda name, addr, verify, bits, subject, issuer, cn: ConnectionFacts(
        name, addr, tls=TLSFacts(verify=verify, tls_version="TLSv1.3" if verify != "NONE" else "",
                                 cipher_bits=bits, alg_bits=bits, cert_subject=subject, cert_issuer=issuer,
                                 cn_subject=cn)),
    labels, addrs, st.sampled_from(VERIFY_VALUES), st.integers(0, 512),
    st.sampled_from(["", "/C=XX/CN=a.example", "/C=XX/CN=b"]), st.sampled_from(["", "/C=XX/CN=CA", "/C=YY"]),
    st.sampled_from(["", "example", "mx.example"]))
mailboxes = st.builds(lambda u, d: f"{u}@{d}" if d else u, labels, labels)


@settings(max_examples=examples(300), deadline=None)
@given(facts, mailboxes, mailboxes)
def test_checks_always_give_well_formed_decisions(conn, sender, rcpt):
    decisions = [
        check_connect(MAP, conn), check_tls_client(MAP, conn, "STARTTLS"), check_tls_client(MAP, conn, "MAIL"),
        check_mail(MAP, conn, sender), check_rcpt(MAP, conn, rcpt, ["local.example"]),
        check_tls_server(MAP, conn), check_tls_rcpt(MAP, conn, rcpt),
    ]
    for decision in decisions:
        if decision.failed:
            assert decision.reply[:3].isdigit() and decision.reply[0] in "45"
            assert decision.log_fragment.startswith(f"ruleset={decision.ruleset}, ")
        assert all(isinstance(key, str) for key, _ in decision.lookups)
    assert first_failure(*decisions).failed == any(d.failed for d in decisions)
    assert isinstance(try_tls(MAP, conn.peer_name, conn.peer_addr), bool)
    assert srv_features(MAP, conn).offer_starttls is False  # bare tag: S for everyone
