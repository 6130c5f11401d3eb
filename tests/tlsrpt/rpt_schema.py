"""A JSON Schema of the aggregate report, written from the field definitions of RFC 8460 §4.4
(and §4.3 for the result types), and the report of §4.4's example."""

from __future__ import annotations

import copy

import jsonschema

RFC3339 = r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})$"
COUNT = {"type": "integer", "minimum": 0}
TEXT = {"type": "string", "minLength": 1}
IP = {"type": "string", "anyOf": [{"format": "ipv4"}, {"format": "ipv6"}]}

RESULT_TYPES = ["starttls-not-supported", "certificate-host-mismatch", "certificate-expired",
                "certificate-not-trusted", "validation-failure", "tlsa-invalid", "dnssec-invalid",
                "dane-required", "sts-policy-fetch-error", "sts-policy-invalid", "sts-webpki-invalid"]

SCHEMA = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "type": "object",
    "required": ["organization-name", "date-range", "contact-info", "report-id", "policies"],
    "additionalProperties": False,
    "properties": {
        "organization-name": TEXT,
        "date-range": {
            "type": "object", "additionalProperties": False,
            "required": ["start-datetime", "end-datetime"],
            "properties": {"start-datetime": {"type": "string", "pattern": RFC3339},
                           "end-datetime": {"type": "string", "pattern": RFC3339}}},
        "contact-info": TEXT,
        "report-id": TEXT,
        "policies": {"type": "array", "items": {
            "type": "object", "additionalProperties": False, "required": ["policy", "summary"],
            "properties": {
                "policy": {
                    "type": "object", "additionalProperties": False,
                    "required": ["policy-type", "policy-domain"],
                    "properties": {
                        "policy-type": {"enum": ["tlsa", "sts", "no-policy-found"]},
                        "policy-string": {"type": "array", "items": {"type": "string"}},
                        "policy-domain": TEXT,
                        # the example gives a list; a single pattern is read as a string by some
                        "mx-host": {"anyOf": [TEXT, {"type": "array", "items": TEXT}]}}},
                "summary": {
                    "type": "object", "additionalProperties": False,
                    "required": ["total-successful-session-count", "total-failure-session-count"],
                    "properties": {"total-successful-session-count": COUNT,
                                   "total-failure-session-count": COUNT}},
                "failure-details": {"type": "array", "items": {
                    "type": "object", "additionalProperties": False,
                    "required": ["result-type", "failed-session-count"],
                    "properties": {
                        "result-type": {"enum": RESULT_TYPES},
                        "sending-mta-ip": IP,
                        "receiving-mx-hostname": TEXT,
                        "receiving-mx-helo": TEXT,
                        "receiving-ip": IP,
                        "failed-session-count": COUNT,
                        "additional-information": TEXT,
                        "failure-reason-code": TEXT}}}}}},
    },
}

# RFC 8460 §4.4's example, as printed there except: its "additional-information" URI is
# written on one line without the spaces of the page's line wrap, and the third failure's
# "failure-error-code" is given as "failure-reason-code", the name the field definitions use.
RFC_EXAMPLE = {
    "organization-name": "Company-X",
    "date-range": {"start-datetime": "2016-04-01T00:00:00Z", "end-datetime": "2016-04-01T23:59:59Z"},
    "contact-info": "sts-reporting@company-x.example",
    "report-id": "5065427c-23d3-47ca-b6e0-946ea0e8c4be",
    "policies": [{
        "policy": {
            "policy-type": "sts",
            "policy-string": ["version: STSv1", "mode: testing", "mx: *.mail.company-y.example", "max_age: 86400"],
            "policy-domain": "company-y.example",
            "mx-host": ["*.mail.company-y.example"],
        },
        "summary": {"total-successful-session-count": 5326, "total-failure-session-count": 303},
        "failure-details": [{
            "result-type": "certificate-expired",
            "sending-mta-ip": "2001:db8:abcd:0012::1",
            "receiving-mx-hostname": "mx1.mail.company-y.example",
            "failed-session-count": 100,
        }, {
            "result-type": "starttls-not-supported",
            "sending-mta-ip": "2001:db8:abcd:0013::1",
            "receiving-mx-hostname": "mx2.mail.company-y.example",
            "receiving-ip": "203.0.113.56",
            "failed-session-count": 200,
            "additional-information": "https://reports.company-x.example/report_info?id=5065427c-23d3#StarttlsNotSupported",
        }, {
            "result-type": "validation-failure",
            "sending-mta-ip": "198.51.100.62",
            "receiving-ip": "203.0.113.58",
            "receiving-mx-hostname": "mx-backup.mail.company-y.example",
            "failed-session-count": 3,
            "failure-reason-code": "X509_V_ERR_PROXY_PATH_LENGTH_EXCEEDED",
        }],
    }],
}


def validate(report: dict) -> None:
    """Raises jsonschema.ValidationError when ``report`` is not a §4.4 report."""
    jsonschema.validate(report, SCHEMA, format_checker=jsonschema.FormatChecker())


def shape(report: dict) -> dict:
    """The report's structure: every key path, values replaced by their JSON type name."""
    def walk(x):
        if isinstance(x, dict):
            return {k: walk(v) for k, v in x.items()}
        if isinstance(x, list):
            return [walk(x[0])] if x else []
        return type(x).__name__
    return walk(copy.deepcopy(report))
