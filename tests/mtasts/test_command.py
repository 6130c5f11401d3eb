"""``mailward mta-sts``: what it tells an operator to publish, and ``mta-sts check`` against a
real NSD and HTTPS policy host, run as the command a user types."""

from __future__ import annotations

import json
import re
import subprocess
import sys

import pytest

from mailward.config import default_config_text
from mailward.mtasts import StsPolicy, parse_policy
from mailward.mtasts.cache import PolicyCache
from policyhost import Answer


def mailward(*args: str, cwd=None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "mailward", *args], capture_output=True, text=True, timeout=60,
                          cwd=cwd)


def test_publish_prints_record_host_and_policy(tmp_path):
    out = mailward("mta-sts", "--domain", "Example.COM.", "--mx", "mx1.example.com", "--mx", "*.mail.example.com",
                   "--write", str(tmp_path / "mta-sts.txt"))
    assert out.returncode == 0, out.stderr
    text = out.stdout
    record = re.search(r'^_mta-sts\.example\.com\. IN TXT "v=STSv1; id=(\d{14}Z)"$', text, re.M)
    assert record, text
    assert re.search(r"^mta-sts\.example\.com\. IN A <address of that web server>", text, re.M)
    assert "https://mta-sts.example.com/.well-known/mta-sts.txt" in text and "Content-Type: text/plain" in text
    assert "version: STSv1\nmode: enforce\nmx: mx1.example.com\nmx: *.mail.example.com\nmax_age: 604800\n" in text
    written = (tmp_path / "mta-sts.txt").read_bytes()
    assert (tmp_path / "mta-sts.txt").stat().st_mode & 0o777 == 0o644    # for the web server to serve
    assert written == (b"version: STSv1\r\nmode: enforce\r\nmx: mx1.example.com\r\nmx: *.mail.example.com\r\n"
                       b"max_age: 604800\r\n")
    policy = parse_policy(written)
    assert policy.matches("a.mail.example.com") and not policy.matches("a.b.mail.example.com")


def test_publish_options():
    out = mailward("mta-sts", "--domain", "example.org", "--mx", "mx.example.org", "--mode", "testing",
                   "--max-age", "86400", "--id", "v2")
    assert out.returncode == 0 and '"v=STSv1; id=v2"' in out.stdout
    assert "mode: testing\nmx: mx.example.org\nmax_age: 86400\n" in out.stdout and "; enforce:" not in out.stdout


def test_publish_writes_mx_in_a_labels():
    out = mailward("mta-sts", "--domain", "Bücher.example", "--mx", "MX.Bücher.example.", "--mx", "*.xn--bcher-kva.example")
    assert out.returncode == 0, out.stderr
    assert '_mta-sts.xn--bcher-kva.example. IN TXT "v=STSv1; id=' in out.stdout
    assert "mx: mx.xn--bcher-kva.example\nmx: *.xn--bcher-kva.example\n" in out.stdout


@pytest.mark.parametrize("args, message", [
    ((), "give --domain and --mx"),
    (("--domain", "example.org"), "--mx: mode enforce needs at least one MX host"),
    (("--domain", "example.org", "--mx", "a.*.example.org"), "--mx 'a.*.example.org': a host name or *.DOMAIN"),
    (("--domain", "example.org", "--mx", "mx.example.org", "--max-age", "31557601"), "--max-age 31557601"),
    (("--domain", "example.org", "--mx", "mx.example.org", "--id", "not-ok"), "--id 'not-ok'"),
    (("--domain", "bad..name", "--mx", "mx.example.org"), "--domain 'bad..name'"),
])
def test_publish_errors_are_one_line(args, message):
    out = mailward("mta-sts", *args)
    assert out.returncode == 2 and out.stdout == ""
    assert out.stderr.startswith("mailward: ") and message in out.stderr and "Traceback" not in out.stderr
    assert out.stderr.count("\n") == 1


@pytest.fixture
def config(tmp_path, sts_dns, sts_pki, policy_host):
    cfg = tmp_path / "mailward.toml"
    cfg.write_text(default_config_text({
        "delivery": {"resolver": [sts_dns], "dns_timeout": 2.0},
        "mta_sts": {"ca_file": str(sts_pki.ca), "https_port": policy_host.port, "cache_file": "sts.json",
                    "fetch_timeout": 3.0},
    }))
    return cfg


def test_check_fetches_then_reads_the_cache_without_writing_it(config, tmp_path, policy_host):
    policy_host.serve("cmd.sts.test", Answer(b"version: STSv1\nmode: enforce\nmx: mx1.cmd.sts.test\nmax_age: 3600\n"))
    out = mailward("mta-sts", "check", "cmd.sts.test", "-c", str(config), "--mx", "mx1.cmd.sts.test",
                   "--mx", "evil.example")
    assert out.returncode == 0, out.stdout + out.stderr
    lines = out.stdout.splitlines()
    assert lines[0] == "domain: cmd.sts.test"
    assert lines[1] == f"source: fetched from https://mta-sts.cmd.sts.test:{policy_host.port}/.well-known/mta-sts.txt"
    assert "id: cmd1" in lines and "  mode: enforce" in lines and "  mx: mx1.cmd.sts.test" in lines
    assert "mx mx1.cmd.sts.test: allowed: MTA-STS enforce: mx1.cmd.sts.test matches mx mx1.cmd.sts.test" in lines
    assert "mx evil.example: REFUSED: MTA-STS enforce: evil.example matches no mx of the policy " \
           "(mx1.cmd.sts.test)" in lines
    assert not (tmp_path / "sts.json").exists()           # the command never writes the server's cache
    # a cache the server wrote: the command reads it and says so
    PolicyCache(tmp_path / "sts.json").put("cmd.sts.test", StsPolicy("testing", ("mx9.cmd.sts.test",), 3600, "cmd1"))
    before = policy_host.count("cmd.sts.test")
    out = mailward("mta-sts", "check", "cmd.sts.test", "-c", str(config))
    assert out.returncode == 0 and f"source: cache ({tmp_path / 'sts.json'})" in out.stdout
    assert "  mode: testing" in out.stdout and policy_host.count("cmd.sts.test") == before
    out = mailward("mta-sts", "check", "cmd.sts.test", "-c", str(config), "--no-cache")
    assert "source: fetched" in out.stdout and policy_host.count("cmd.sts.test") == before + 1
    assert json.loads((tmp_path / "sts.json").read_text())["policies"]["cmd.sts.test"]["mode"] == "testing"


def test_check_reports_a_failure(config, policy_host):
    out = mailward("mta-sts", "check", "wrongname.sts.test", "-c", str(config), "--mx", "x.example")
    assert out.returncode == 1
    assert "source: none\nfailure: sts-webpki-invalid\nerror: https://mta-sts.wrongname.sts.test:" in out.stdout
    assert "policy: none" in out.stdout and "mx x.example: allowed: no MTA-STS policy" in out.stdout
    assert out.stderr == ""


def test_check_without_a_record(config):
    out = mailward("mta-sts", "check", "notxt.sts.test", "-c", str(config), "-v")
    assert out.returncode == 1 and "source: none" in out.stdout and "error:" not in out.stdout


def test_check_bad_config_is_one_line(tmp_path):
    out = mailward("mta-sts", "check", "example.com", "-c", str(tmp_path / "missing.toml"))
    assert out.returncode == 2 and out.stderr.startswith("mailward: ") and "Traceback" not in out.stderr
