"""A TLS report as a mail message (RFC 8460 §5.3) and its file name (§5.1). Pure.

:func:`report_filename` — ``submitter!policy-domain!begin-timestamp!end-timestamp!unique-id``
``.json.gz`` (§5.1; the timestamps are seconds since the epoch, UTC, of the report's
date-range; the unique id is the report-id).

:func:`report_message` — the octets to queue (CRLF line ends)::

    From: <tls_rpt.from_address>
    To: <the mailto: addresses>
    Subject: Report Domain: example.net Submitter: mx.example.org Report-ID: <id@mx.example.org>
    TLS-Report-Domain: example.net
    TLS-Report-Submitter: mx.example.org
    MIME-Version: 1.0
    Content-Type: multipart/report; report-type="tlsrpt"; boundary=...

    a text/plain part saying what it is, then the ``application/tlsrpt+gzip`` part (base64,
    ``Content-Disposition: attachment; filename=...``) holding the gzipped JSON.

``TLS-Report-Submitter`` is also what marks the message as a report for loop avoidance
(:mod:`mailward.tlsrpt.results`).
"""

from __future__ import annotations

import email.policy
import email.utils
import gzip
from email.mime.application import MIMEApplication
from email.mime.multipart import MIMEMultipart
from email.mime.text import MIMEText

from mailward.tlsrpt.store import day_start

GZIP_TYPE = "application/tlsrpt+gzip"     # RFC 8460 §5.2 compression; media types registered in §6


def gzip_report(data: bytes) -> bytes:
    """Gzip with a fixed mtime, so the same report gives the same octets."""
    return gzip.compress(data, mtime=0)


def report_filename(submitter: str, domain: str, day: str, report_id: str) -> str:
    begin = int(day_start(day))
    return f"{submitter}!{domain}!{begin}!{begin + 86399}!{report_id}.json.gz"


def subject(domain: str, submitter: str, report_id: str) -> str:
    return f"Report Domain: {domain} Submitter: {submitter} Report-ID: <{report_id}@{submitter}>"


def report_message(*, report: dict, gzipped: bytes, domain: str, submitter: str, from_address: str,
                   recipients: list[str], day: str, when: float | None = None) -> bytes:
    """The multipart/report message of §5.3 for ``recipients`` (bare addresses)."""
    rid = report["report-id"]
    msg = MIMEMultipart("report", report_type="tlsrpt")
    msg["From"] = from_address
    msg["To"] = ", ".join(recipients)
    msg["Date"] = email.utils.formatdate(when, usegmt=True)
    msg["Subject"] = subject(domain, submitter, rid)
    msg["Message-ID"] = email.utils.make_msgid("tlsrpt", domain=submitter)
    msg["TLS-Report-Domain"] = domain
    msg["TLS-Report-Submitter"] = submitter
    msg["Auto-Submitted"] = "auto-generated"         # RFC 3834 §5: no automatic replies to it
    msg.preamble = "This is a multipart message in MIME format.\n"
    sessions = sum(p["summary"]["total-successful-session-count"] + p["summary"]["total-failure-session-count"]
                   for p in report["policies"])
    failures = sum(p["summary"]["total-failure-session-count"] for p in report["policies"])
    text = (f"This is an aggregate TLS report (RFC 8460) from {submitter} for {domain},\n"
            f"covering {report['date-range']['start-datetime']} to {report['date-range']['end-datetime']}:\n"
            f"{sessions} sessions, {failures} of them failed.\n"
            f"The report is attached as {GZIP_TYPE}. Report-ID: {rid}\n")
    msg.attach(MIMEText(text, "plain", "us-ascii"))
    part = MIMEApplication(gzipped, "tlsrpt+gzip")
    part.add_header("Content-Disposition", "attachment", filename=report_filename(submitter, domain, day, rid))
    msg.attach(part)
    return msg.as_bytes(policy=email.policy.SMTP)
