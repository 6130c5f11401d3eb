"""The aggregate report (RFC 8460 §4.4): counts of one UTC day of one policy domain → JSON.

Pure: :func:`build_report` takes the counts kept by :mod:`mailward.tlsrpt.store` and returns
the report as a ``dict`` ready for ``json.dumps``; :func:`report_json` gives the octets sent.

Fields, as §4.4 defines them:

* ``organization-name``, ``contact-info`` (``tls_rpt.organization``, ``tls_rpt.contact``)
* ``date-range``: ``start-datetime`` and ``end-datetime`` in RFC 3339 form (UTC, "Z"), the
  whole UTC day (§4.1): ``2026-12-01T00:00:00Z`` to ``2026-12-01T23:59:59Z`` as §4.4's example
* ``report-id``: :func:`report_id`, a UUID derived from submitter, domain and day, so the
  report built again (a retry, ``mailward tls-rpt report``) carries the same id
* ``policies[]``: ``policy`` {``policy-type``, ``policy-string`` (left out when the policy
  has no text, e.g. ``no-policy-found``), ``policy-domain``, ``mx-host`` (a list, as §4.4's
  example; left out when unknown)}, ``summary`` {``total-successful-session-count``,
  ``total-failure-session-count``}, ``failure-details[]`` (left out when there were no
  failures) {``result-type``, ``sending-mta-ip``, ``receiving-mx-hostname``,
  ``receiving-mx-helo``, ``receiving-ip``, ``failed-session-count``,
  ``failure-reason-code``}; a detail field that was not known is left out rather than empty.
"""

from __future__ import annotations

import json
import uuid

from mailward.tlsrpt.store import FailureKey, PolicyCounts, PolicyKey

_NAMESPACE = uuid.UUID("6f0d3b0e-5d3a-4e7b-9a57-8c0a1f3e2b11")   # mailward's TLS-RPT report ids


def report_id(submitter: str, domain: str, day: str) -> str:
    """A stable unique id for the report of ``domain`` for ``day`` by ``submitter``."""
    return str(uuid.uuid5(_NAMESPACE, f"{submitter.lower()}!{domain.lower()}!{day}"))


def date_range(day: str) -> dict[str, str]:
    return {"start-datetime": f"{day}T00:00:00Z", "end-datetime": f"{day}T23:59:59Z"}


def _failure(f: FailureKey, n: int) -> dict:
    out: dict = {"result-type": f.result_type}
    for key, value in (("sending-mta-ip", f.sending_ip), ("receiving-mx-hostname", f.receiving_mx_hostname),
                       ("receiving-mx-helo", f.receiving_mx_helo), ("receiving-ip", f.receiving_ip)):
        if value:
            out[key] = value
    out["failed-session-count"] = n
    if f.failure_reason_code:
        out["failure-reason-code"] = f.failure_reason_code
    return out


def _policy(domain: str, key: PolicyKey, counts: PolicyCounts) -> dict:
    policy: dict = {"policy-type": key.policy_type}
    if key.policy_strings:
        policy["policy-string"] = list(key.policy_strings)
    policy["policy-domain"] = domain
    if key.mx_host:
        policy["mx-host"] = [key.mx_host]
    entry: dict = {"policy": policy, "summary": {"total-successful-session-count": counts.successes,
                                                 "total-failure-session-count": counts.failure_total}}
    if counts.failures:
        entry["failure-details"] = [_failure(f, n) for f, n in sorted(counts.failures.items())]
    return entry


def build_report(*, organization: str, contact: str, submitter: str, domain: str, day: str,
                 policies: dict[PolicyKey, PolicyCounts]) -> dict:
    """The §4.4 report of ``domain`` for the UTC ``day`` ("YYYY-MM-DD")."""
    return {
        "organization-name": organization,
        "date-range": date_range(day),
        "contact-info": contact,
        "report-id": report_id(submitter, domain, day),
        "policies": [_policy(domain, k, pc) for k, pc in sorted(policies.items())],
    }


def report_json(report: dict) -> bytes:
    return json.dumps(report, ensure_ascii=False, indent=1).encode("utf-8")
