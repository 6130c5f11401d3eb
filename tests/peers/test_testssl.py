"""testssl.sh --starttls smtp against the default configuration: no finding worse than LOW.

The server runs with the quick-start configuration (the same certificates `make run` makes:
a private CA, which testssl is told to trust with --add-ca)."""

from __future__ import annotations

import json
import subprocess

import pytest

from mailward.config import load
from mailward.service.quickstart import create_data_folder
from tests.conftest import MTA, need

BAD = {"MEDIUM", "HIGH", "CRITICAL"}


@pytest.mark.peer
def test_testssl_finds_nothing_worse_than_low(tmp_path):
    testssl = need("testssl")
    data = tmp_path / "data"
    create_data_folder(data)
    cfg = load(data / "mailward.toml")
    mta = MTA(data, {"tls": {"cert_file": str(cfg.tls.cert_file), "key_file": str(cfg.tls.key_file),
                             "ca_file": str(cfg.tls.ca_file)}, "server": {"hostname": "localhost"}})
    mta.config = data / "test.toml"
    from mailward.config import default_config_text
    mta.config.write_text(default_config_text(mta.settings))
    mta.start()
    try:
        report = tmp_path / "testssl.json"
        subprocess.run([testssl, "--quiet", "--color", "0", "--warnings", "batch", "--starttls", "smtp",
                        "--add-ca", str(cfg.tls.ca_file), "--jsonfile", str(report),
                        f"{mta.host}:{mta.port}"], capture_output=True, text=True, timeout=600)
        findings = json.loads(report.read_text())
    finally:
        mta.stop()
    worse = [f"{f['severity']} {f['id']}: {f['finding']}" for f in findings if f["severity"] in BAD]
    assert not worse, "\n".join(worse)
    assert any(f["id"] == "TLS1_3" and "offered" in f["finding"] for f in findings)
