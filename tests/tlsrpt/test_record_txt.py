"""The _smtp._tls TXT record (RFC 8460 §3) as a table: TXT strings → the rua URIs used, or
None (the domain does not implement TLSRPT)."""

from __future__ import annotations

import pytest

from mailward.tlsrpt.record_txt import parse_record, record_name, select

TABLE = [
    # one record, the forms §3 allows
    (["v=TLSRPTv1; rua=mailto:reports@example.net"], ("mailto:reports@example.net",)),
    (["v=TLSRPTv1;rua=https://reporting.example.net/v1/tlsrpt"], ("https://reporting.example.net/v1/tlsrpt",)),
    (["v=TLSRPTv1; rua=mailto:a@example.net,https://r.example.net/x"], ("mailto:a@example.net", "https://r.example.net/x")),
    (["v=TLSRPTv1; rua=mailto:a@example.net , mailto:b@example.net;"], ("mailto:a@example.net", "mailto:b@example.net")),
    (["v=TLSRPTv1 ;\trua=mailto:a@example.net"], ("mailto:a@example.net",)),              # WSP around ";"
    (["v=TLSRPTv1; rua=mailto:a@example.net; ext-1=value"], ("mailto:a@example.net",)),   # an extension
    (["v=TLSRPTv1; rua=mailto:a@example.net,mailto:a@example.net"], ("mailto:a@example.net",)),
    # percent-encoding: "," and ";" must be encoded inside a URI; the address is decoded
    (["v=TLSRPTv1; rua=mailto:tls%2Breports@example.net"], ("mailto:tls+reports@example.net",)),
    (["v=TLSRPTv1; rua=https://r.example.net/a%2Cb%3Bc?x=%20"], ("https://r.example.net/a,b;c?x=%20",)),
    (["v=TLSRPTv1; rua=mailto:a@example.net?subject=x"], ("mailto:a@example.net",)),
    # a scheme RFC 8460 does not define is not used (the others are)
    (["v=TLSRPTv1; rua=mailto:a@example.net,ftp://f.example.net/x"], ("mailto:a@example.net",)),
    (["v=TLSRPTv1; rua=ftp://f.example.net/x"], ()),
    # other TXT records at the name are not TLSRPT records and do not count
    (["v=spf1 -all", "v=TLSRPTv1; rua=mailto:a@example.net"], ("mailto:a@example.net",)),
    # not exactly one TLSRPT record: none (§3)
    (["v=TLSRPTv1; rua=mailto:a@example.net", "v=TLSRPTv1; rua=mailto:b@example.net"], None),
    ([], None),
    (["v=spf1 -all"], None),
    # invalid records: none
    (["v=TLSRPTv1"], None),                                           # no field
    (["v=TLSRPTv1;"], None),
    (["v=TLSRPTv1; ext=1"], None),                                    # no rua
    (["v=TLSRPTv1; rua="], None),
    (["v=TLSRPTv1; rua=mailto:a@example.net; rua=mailto:b@example.net"], None),   # rua twice
    (["v=TLSRPTv1; rua=reports@example.net"], None),                  # not a URI
    (["v=TLSRPTv1; rua=mailto:not an address"], None),
    (["v=TLSRPTv1; rua=mailto:nobody"], None),
    (["v=TLSRPTv1; rua=https:/nohost"], None),
    (["v=TLSRPTv1; rua=mailto:a@example.net; =x"], None),             # empty extension name
    (["v=TLSRPTv1; rua=mailto:a@example.net; e=x=y"], None),          # "=" in an extension value
    (["v=TLSRPTv10; rua=mailto:a@example.net"], None),               # another version
    (["V=TLSRPTv1; rua=mailto:a@example.net"], None),                # %s: case-sensitive
    ([" v=TLSRPTv1; rua=mailto:a@example.net"], None),
    (["v=TLSRPTv1 rua=mailto:a@example.net"], None),
]


@pytest.mark.parametrize("texts,rua", TABLE, ids=[" | ".join(t) or "(none)" for t, _ in TABLE])
def test_record(texts, rua):
    record = select(texts)
    if rua is None:
        assert record is None
    else:
        assert record is not None and record.rua == rua


def test_ignored_schemes_are_kept_aside():
    record = parse_record("v=TLSRPTv1; rua=mailto:a@example.net,gopher://g.example.net")
    assert record.rua == ("mailto:a@example.net",) and record.ignored == ("gopher://g.example.net",)


def test_record_name():
    assert record_name("example.net.") == "_smtp._tls.example.net"
