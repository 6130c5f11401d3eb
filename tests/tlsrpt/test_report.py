"""The aggregate report's JSON (RFC 8460 §4.4), validated by a schema written from §4.4's field
definitions and compared with the shape of §4.4's own example."""

from __future__ import annotations

import json

import jsonschema
import pytest

from mailward.tlsrpt.report import build_report, report_id, report_json
from mailward.tlsrpt.store import FailureKey, PolicyCounts, PolicyKey
from rpt_schema import RFC_EXAMPLE, shape, validate

STS = PolicyKey("sts", ("version: STSv1", "mode: testing", "mx: *.mail.company-y.example", "max_age: 86400"),
                "*.mail.company-y.example")


def example_counts() -> dict:
    return {STS: PolicyCounts(5326, {
        FailureKey("certificate-expired", "2001:db8:abcd:0012::1", "mx1.mail.company-y.example"): 100,
        FailureKey("starttls-not-supported", "2001:db8:abcd:0013::1", "mx2.mail.company-y.example",
                   receiving_ip="203.0.113.56"): 200,
        FailureKey("validation-failure", "198.51.100.62", "mx-backup.mail.company-y.example",
                   receiving_ip="203.0.113.58", failure_reason_code="X509_V_ERR_PROXY_PATH_LENGTH_EXCEEDED"): 3})}


def build(policies=None, **kw) -> dict:
    args = dict(organization="Company-X", contact="sts-reporting@company-x.example", submitter="mx.company-x.example",
                domain="company-y.example", day="2016-04-01", policies=example_counts() if policies is None else policies)
    args.update(kw)
    return build_report(**args)


def test_the_schema_accepts_the_rfc_example_and_bites():
    validate(RFC_EXAMPLE)
    broken = json.loads(json.dumps(RFC_EXAMPLE))
    del broken["policies"][0]["summary"]
    with pytest.raises(jsonschema.ValidationError):
        validate(broken)
    broken = json.loads(json.dumps(RFC_EXAMPLE))
    broken["policies"][0]["failure-details"][0]["result-type"] = "certificate-old"
    with pytest.raises(jsonschema.ValidationError):
        validate(broken)
    broken = json.loads(json.dumps(RFC_EXAMPLE))
    broken["policies"][0]["failure-details"][0]["sending-mta-ip"] = "mx.example"
    with pytest.raises(jsonschema.ValidationError):
        validate(broken)
    broken = json.loads(json.dumps(RFC_EXAMPLE))
    broken["date-range"]["end-datetime"] = "2016-04-01 23:59:59"
    with pytest.raises(jsonschema.ValidationError):
        validate(broken)


def test_the_example_counts_give_the_example_report():
    report = build()
    validate(report)
    assert report["organization-name"] == "Company-X"
    assert report["date-range"] == {"start-datetime": "2016-04-01T00:00:00Z", "end-datetime": "2016-04-01T23:59:59Z"}
    assert report["contact-info"] == "sts-reporting@company-x.example"
    (entry,) = report["policies"]
    assert entry["policy"] == RFC_EXAMPLE["policies"][0]["policy"]
    assert entry["summary"] == {"total-successful-session-count": 5326, "total-failure-session-count": 303}
    # same failure groups as the example (order aside; additional-information is not recorded)
    want = [{k: v for k, v in f.items() if k != "additional-information"}
            for f in RFC_EXAMPLE["policies"][0]["failure-details"]]
    key = lambda f: f["result-type"]  # noqa: E731
    assert sorted(entry["failure-details"], key=key) == sorted(want, key=key)
    # and the same structure, key for key, as the example
    example = json.loads(json.dumps(RFC_EXAMPLE))
    del example["policies"][0]["failure-details"][1]["additional-information"]
    got = json.loads(report_json(report))
    got["policies"][0]["failure-details"].sort(key=key)
    example["policies"][0]["failure-details"].sort(key=key)
    assert shape(got) == shape(example)


def test_every_policy_type_and_the_empty_fields():
    policies = {
        PolicyKey("tlsa", ("3 1 1 0123456789abcdef",), "mx.example.net"): PolicyCounts(7),
        PolicyKey("no-policy-found"): PolicyCounts(2, {FailureKey("starttls-not-supported"): 1}),
        PolicyKey("sts", ("version: STSv1", "mode: enforce"), "mx.example.net"):
            PolicyCounts(0, {FailureKey("sts-webpki-invalid", receiving_mx_helo="mx.example.net"): 4}),
    }
    report = build(policies, domain="example.net")
    validate(report)
    by_type = {p["policy"]["policy-type"]: p for p in report["policies"]}
    assert set(by_type) == {"tlsa", "sts", "no-policy-found"}
    none = by_type["no-policy-found"]
    assert none["policy"] == {"policy-type": "no-policy-found", "policy-domain": "example.net"}
    assert none["failure-details"] == [{"result-type": "starttls-not-supported", "failed-session-count": 1}]
    assert "failure-details" not in by_type["tlsa"]           # no failures: no details
    assert by_type["sts"]["failure-details"][0]["receiving-mx-helo"] == "mx.example.net"


def test_the_report_id_is_stable_and_distinct():
    a = build()["report-id"]
    assert a == build()["report-id"] == report_id("mx.company-x.example", "company-y.example", "2016-04-01")
    assert a != build(day="2016-04-02")["report-id"] != build(domain="other.example")["report-id"]
    assert json.loads(report_json(build()))["report-id"] == a
