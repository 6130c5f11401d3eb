"""server.listen roles at start: a submission listener without a certificate or an AUTH
backend, and an unknown role, stop ``mailward serve`` with one line naming the setting."""

from __future__ import annotations

import pytest

from tests.conftest import free_port, tls_settings


def start_fails(make_mta, settings) -> str:
    mta = make_mta(settings, start=False)
    with pytest.raises(RuntimeError) as err:
        mta.start()
    return str(err.value)


def test_submission_needs_auth_and_tls(make_mta, pki):
    port = free_port()
    out = start_fails(make_mta, {"server": {"listen": [f"127.0.0.1:{port} submission"]}, "tls": tls_settings(pki)})
    assert f"server.listen: '127.0.0.1:{port} submission' needs SMTP AUTH; fix: set auth.backend" in out
    out = start_fails(make_mta, {"server": {"listen": [f"127.0.0.1:{port} submissions"]}})
    assert f"server.listen: '127.0.0.1:{port} submissions' needs TLS; fix: set tls.cert_file" in out


def test_unknown_role(make_mta):
    out = start_fails(make_mta, {"server": {"listen": ["127.0.0.1:2587 submit"]}})
    assert "server.listen" in out and "a listener role among mx, submission, submissions" in out
    assert "Traceback" not in out
