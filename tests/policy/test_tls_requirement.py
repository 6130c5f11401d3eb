"""Truth table of the sending side's one TLS decision (mailward.policy.tls_requirement.decide).

Each row: the answers of the sources → (source, level, action, testing, requiretls). The
precedence is the module docstring's: access map, DANE (RFC 7672), MTA-STS (RFC 8461),
REQUIRETLS (RFC 8689 §4.2.1), delivery.tls_floor.
"""

import pytest

from mailward.policy.tls_requirement import AccessView, DaneView, StsView, decide

MX = "mx.example.test"
NO_MAP = None
MAP_VERIFY = AccessView("TLS_Srv:mx.example.test", "VERIFY", "access:3")
MAP_ENCR = AccessView("TLS_Rcpt:example.test", "ENCR:128", "access:4")
MAP_NO = AccessView("Try_TLS:mx.example.test", "NO", "access:5")
OFF = DaneView()
DANE_OK = DaneView("secure", True, True, "1 usable TLSA record(s)")
DANE_UNUSABLE = DaneView("secure", True, False)
DANE_NONE = DaneView("none", True)
DANE_INSECURE = DaneView("insecure", True)
DANE_BOGUS = DaneView("bogus", True, detail="TLSA lookup failed: SERVFAIL")
DANE_MX_INSECURE = DaneView("secure", False, True)   # TLSA signed, but the MX RRset is not
MX_SECURE_ONLY = DaneView("none", True)
STS_OFF = StsView()
STS_ENF = StsView("enforce", True)
STS_ENF_MISS = StsView("enforce", False)
STS_TEST = StsView("testing", True)
STS_TEST_MISS = StsView("testing", False)
STS_NONE = StsView("none")
STS_ERR = StsView("error", detail="fetch failed")

ROWS = [
    # access map, dane, sts, requiretls, relaxed, floor → source, level, action, testing
    (MAP_VERIFY, DANE_OK, STS_ENF, False, "", "may", "access-map", "verify", "connect", False),
    (MAP_ENCR, DANE_OK, STS_OFF, False, "", "verify", "access-map", "encrypt", "connect", False),
    (MAP_NO, OFF, STS_ENF, False, "", "may", "access-map", "may", "connect", False),
    (NO_MAP, DANE_OK, STS_ENF, False, "", "may", "dane", "dane", "connect", False),
    (NO_MAP, DANE_UNUSABLE, STS_ENF, False, "", "may", "dane", "encrypt", "connect", False),
    (NO_MAP, DANE_BOGUS, STS_ENF, False, "", "may", "dane", "dane", "defer", False),
    (NO_MAP, DANE_NONE, STS_ENF, False, "", "may", "mta-sts", "sts", "connect", False),
    (NO_MAP, DANE_INSECURE, STS_ENF_MISS, False, "", "may", "mta-sts", "sts", "skip", False),
    (NO_MAP, DANE_MX_INSECURE, STS_OFF, False, "", "may", "floor", "may", "connect", False),
    (NO_MAP, OFF, STS_TEST, False, "", "may", "mta-sts", "sts", "connect", True),
    (NO_MAP, OFF, STS_TEST_MISS, False, "", "encrypt", "mta-sts", "sts", "connect", True),
    (NO_MAP, OFF, STS_NONE, False, "", "encrypt", "floor", "encrypt", "connect", False),
    (NO_MAP, OFF, STS_ERR, False, "", "verify", "floor", "verify", "connect", False),
    (NO_MAP, OFF, STS_OFF, False, "", "may", "floor", "may", "connect", False),
    # REQUIRETLS: DANE/STS keep their source; the access map does not decide
    (NO_MAP, DANE_OK, STS_OFF, True, "", "may", "dane", "dane", "connect", False),
    (MAP_NO, DANE_OK, STS_OFF, True, "", "may", "dane", "dane", "connect", False),
    (NO_MAP, OFF, STS_ENF, True, "", "may", "mta-sts", "sts", "connect", False),
    (NO_MAP, OFF, STS_TEST, True, "", "may", "mta-sts", "sts", "connect", False),     # testing enforced
    (NO_MAP, OFF, STS_TEST_MISS, True, "", "may", "mta-sts", "sts", "skip", False),
    (NO_MAP, MX_SECURE_ONLY, STS_OFF, True, "", "may", "requiretls", "verify", "connect", False),
    (NO_MAP, DANE_UNUSABLE, STS_OFF, True, "", "may", "requiretls", "verify", "connect", False),
    (NO_MAP, OFF, STS_OFF, True, "", "may", "requiretls", "verify", "bounce", False),
    (NO_MAP, DANE_MX_INSECURE, STS_NONE, True, "", "verify", "requiretls", "verify", "bounce", False),
    (NO_MAP, DANE_BOGUS, STS_ENF, True, "", "may", "dane", "dane", "defer", False),
    # TLS-Required: No (or a TLS report): DANE and MTA-STS not enforced; the floor still is
    (NO_MAP, DANE_OK, STS_ENF, False, "TLS-Required: No", "may", "floor", "may", "connect", False),
    (NO_MAP, DANE_BOGUS, STS_ENF_MISS, False, "TLS-Required: No", "encrypt", "floor", "encrypt", "connect", False),
    (MAP_VERIFY, DANE_OK, STS_OFF, False, "TLS-Required: No", "may", "access-map", "verify", "connect", False),
    # ... and ignored when the message carries REQUIRETLS too
    (NO_MAP, DANE_OK, STS_OFF, True, "TLS-Required: No", "may", "dane", "dane", "connect", False),
    (NO_MAP, OFF, STS_OFF, True, "TLS-Required: No", "may", "requiretls", "verify", "bounce", False),
]


@pytest.mark.parametrize("access,dane,sts,requiretls,relaxed,floor,source,level,action,testing", ROWS)
def test_truth_table(access, dane, sts, requiretls, relaxed, floor, source, level, action, testing):
    req = decide(mx=MX, access=access, dane=dane, sts=sts, requiretls=requiretls, relaxed=relaxed, floor=floor)
    assert (req.source, req.level, req.action, req.testing) == (source, level, action, testing), req
    assert req.requiretls == requiretls
    assert req.consulted[-1][0] == source            # the last source consulted is the one that decided
    assert req.detail


def test_requiretls_to_a_routed_host_needs_a_verified_certificate():
    req = decide(mx="smarthost.example", requiretls=True, routed=True)
    assert (req.source, req.level, req.action) == ("requiretls", "verify", "connect")
    assert decide(mx="smarthost.example", requiretls=False, routed=True).source == "floor"


def test_needs_tls_and_label():
    assert decide(mx=MX, dane=DANE_OK).needs_tls
    assert not decide(mx=MX, sts=STS_TEST).needs_tls            # testing: failures do not stop delivery
    assert not decide(mx=MX).needs_tls
    assert decide(mx=MX, floor="encrypt").needs_tls
    assert not decide(mx=MX, access=MAP_VERIFY).needs_tls        # the map's own checks apply
    assert decide(mx=MX, dane=DANE_OK, requiretls=True).label == "policy=dane, level=dane, requiretls"
    assert decide(mx=MX, sts=STS_TEST).label == "policy=mta-sts, level=sts, sts=testing"


def test_consulted_in_order():
    req = decide(mx=MX, dane=DANE_NONE, sts=STS_NONE, floor="encrypt")
    assert [s for s, _ in req.consulted] == ["access-map", "dane", "mta-sts", "requiretls", "floor"]


def test_unknown_dane_state_fails_closed():
    assert decide(mx=MX, dane=DaneView("weird", True)).action == "defer"


def test_bad_floor_is_may():
    assert decide(mx=MX, floor="bogus").level == "may"


# ---- mailward policy test --role client --domain D --offline ... (what an administrator runs) ----
def _cli(capsys, *argv) -> tuple[int, str, str]:
    from mailward.cli import main
    rc = main(["policy", "test", "--role", "client", "-c", "/nonexistent/mailward.toml", *argv])
    out = capsys.readouterr()
    return rc, out.out, out.err


def test_cli_offline_sts_with_requiretls(capsys):
    rc, out, _ = _cli(capsys, "--domain", "example.com", "--offline", "mx=mx.example.com", "mx-secure=no",
                      "tlsa=insecure", "sts=enforce", "sts-mx=*.example.com", "--requiretls")
    assert rc == 0
    assert out.splitlines()[0] == ("domain example.com: access map (none); delivery.tls_floor may; "
                                   "message: REQUIRETLS; offline answers")
    assert "== TLS decision for mx.example.com" in out
    assert "  1. access-map no Try_TLS/TLS_Srv/TLS_Rcpt entry" in out
    assert "  2. dane       MX RRset of mx.example.com not DNSSEC-secure" in out
    assert "  3. mta-sts    enforce: " in out and "→ decides" in out
    assert "  decision: policy=mta-sts, level=sts, requiretls" in out
    assert "REQUIRETLS must be offered after STARTTLS and is sent on MAIL" in out


def test_cli_offline_each_mx_and_the_map(capsys, tmp_path):
    amap = tmp_path / "access"
    amap.write_text("TLS_Srv:mx2.example.com VERIFY\n")
    rc, out, _ = _cli(capsys, "--map", str(amap), "--domain", "example.com", "--floor", "encrypt",
                      "--offline", "mx=mx1.example.com,mx2.example.com,mx3.other.net", "mx-secure=yes",
                      "tlsa=none", "sts=enforce", "sts-mx=*.example.com")
    assert rc == 0
    blocks = out.split("== TLS decision for ")[1:]
    assert "decision: policy=mta-sts, level=sts" in blocks[0]
    assert "decision: policy=access-map, level=verify" in blocks[1]
    assert f"1. access-map entry tls_srv:mx2.example.com VERIFY ({amap}:1) → decides" in blocks[1]
    assert "delivery: do not use this MX" in blocks[2]


def test_cli_offline_dane_bogus_and_floor(capsys):
    rc, out, _ = _cli(capsys, "--domain", "d.example", "--offline", "mx-secure=yes", "tlsa=bogus")
    assert rc == 0 and "decision: policy=dane, level=dane" in out and "delivery: defer" in out
    rc, out, _ = _cli(capsys, "--domain", "d.example", "--floor", "verify", "--tls-required-no",
                      "--offline", "mx-secure=yes", "tlsa=secure")
    assert "not enforced (TLS-Required: No)" in out and "decision: policy=floor, level=verify" in out


def test_cli_offline_bad_item(capsys):
    rc, _, err = _cli(capsys, "--domain", "d.example", "--offline", "tlsa=maybe")
    assert rc == 2 and err.startswith("mailward: --offline 'tlsa=maybe': tlsa is one of")
