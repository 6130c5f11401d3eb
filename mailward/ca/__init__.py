"""``mailward ca``: a private CA, keys, requests, signing, revocation, checks.

One module per role: ``store`` (files, atomic writes, one-line errors), ``keys`` (keys,
subjects, SANs), ``index`` (OpenSSL's index.txt), ``authority`` (init, request, sign, issue,
self-signed), ``revocation`` (revoke, CRL), ``show``, ``check``, ``rehash``, ``cli``.
Every error is a :class:`mailward.ca.store.CAError` (a ``ConfigError``): one line, exit 2.
"""
