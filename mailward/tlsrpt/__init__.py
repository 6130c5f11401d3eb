"""SMTP TLS Reporting (RFC 8460): count what outbound TLS sessions met, send daily reports.

One small module per idea, the pure parts apart from the I/O:

* :mod:`.results` — the result types (§4.3) and policy types (§4.4) as constants; how a
  generated report message is recognised (loop avoidance, §5.3).
* :mod:`.store` — :class:`~.store.TlsRptStore`: counts per UTC day, policy domain and policy,
  kept in memory and appended to a journal (the delivering process calls ``record()``).
* :mod:`.report` — the aggregate report's JSON (§4.4), pure.
* :mod:`.record_txt` — the ``_smtp._tls`` TXT record (§3), pure.
* :mod:`.message` — the report as a mail message (§5.3) and its file name (§5.1), pure.
* :mod:`.send` — for each finished day: DNS, build, gzip, deliver (mailto: into the spool,
  https: POST), once per day and destination.

This package imports :mod:`mailward.dns`, :mod:`mailward.spool` and :mod:`mailward.log`
only; delivery imports it (never the other way round).
"""
