"""mailward's own CA output used by the server: CA folder (ca_path) with hash links,
revocation lists, and a missing CRL for one issuer that must not fail every certificate."""

from __future__ import annotations

import shutil
import smtplib
import ssl

from mailward.ca import authority, rehash, revocation


def send(mta, ca, cert, key, user):
    ctx = ssl.create_default_context(cafile=str(ca))
    ctx.load_cert_chain(str(cert), str(key))
    with smtplib.SMTP(mta.host, mta.port, timeout=10) as s:
        s.starttls(context=ctx)
        s.sendmail("a@client.test", [f"{user}@localhost"], "Subject: ca\r\n\r\nx\r\n")
    return mta.wait_mail(user)[0].read_text()


def test_ca_path_crl_and_missing_crl(make_mta, pki, tmp_path):
    ca = tmp_path / "ca"
    authority.init_ca(ca, "Rev CA", subject="/O=Rev")
    good, bad = tmp_path / "good", tmp_path / "bad"
    for d in (good, bad):
        d.mkdir()
        authority.issue(ca, d.name + ".test", None, d / "c.pem", d / "k.pem", usage="client")
    revocation.revoke(ca, bad / "c.pem")
    crl = revocation.make_crl(ca)
    capath = tmp_path / "capath"
    capath.mkdir()
    shutil.copy(ca / "ca.pem", capath / "rev.pem")
    shutil.copy(pki.other_ca, capath / "other.pem")  # trusted, but no CRL for it
    rehash.rehash(capath)
    mta = make_mta({"tls": {"cert_file": str(pki.server_cert), "key_file": str(pki.server_key),
                            "ca_path": str(capath), "crl_file": str(crl)}})
    assert "verify=OK)" in send(mta, pki.ca, good / "c.pem", good / "k.pem", "good")
    assert "verify=FAIL)" in send(mta, pki.ca, bad / "c.pem", bad / "k.pem", "bad")
    assert "verifymsg=certificate revoked" in mta.wait_log("certificate revoked")
    # issued by a trusted CA with no CRL in the file: still OK (no 'unable to get CRL' failure)
    assert "verify=OK)" in send(mta, pki.ca, pki.other_cert, pki.other_key, "other")
