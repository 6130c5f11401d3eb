"""Real peers nobody here wrote: swaks and openssl s_client complete STARTTLS sessions."""

from __future__ import annotations

import subprocess
import time

from tests.conftest import need


def test_swaks_tls_with_client_certificate(mta, pki):
    swaks = need("swaks")
    out = subprocess.run(
        [swaks, "--server", f"{mta.host}:{mta.port}", "--tls", "--tls-verify", "--tls-ca-path", str(pki.ca),
         "--tls-cert", str(pki.client_cert), "--tls-key", str(pki.client_key), "--helo", "client.test",
         "--from", "sender@client.test", "--to", "swaks@localhost", "--header", "Subject: via swaks"],
        capture_output=True, text=True, timeout=30)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "<~  220 2.0.0 Ready to start TLS" in out.stdout or "<-  220 2.0.0 Ready to start TLS" in out.stdout
    qid = next(line.split()[3] for line in out.stdout.splitlines() if "Message accepted for delivery" in line)
    text = mta.wait_message("swaks", qid)
    assert "verify=OK)" in text and "Subject: via swaks" in text
    log = mta.wait_log(f"{qid}: to=<swaks@localhost>")
    assert "STARTTLS=server, relay=localhost [127.0.0.1], version=TLSv1.3, verify=OK" in log


def test_openssl_s_client_starttls_smtp(mta, pki):
    openssl = need("openssl")
    # a well-behaved client waits where RFC 2920 §3.1 says it must (after EHLO, before the
    # content): the script goes in three groups, as a person typing it would send it
    groups = ["EHLO client.test\n", "MAIL FROM:<sender@client.test>\nRCPT TO:<ossl@localhost>\nDATA\n",
              "Subject: via openssl\n\nbody line\n.\nQUIT\n"]
    proc = subprocess.Popen(
        [openssl, "s_client", "-starttls", "smtp", "-connect", f"{mta.host}:{mta.port}", "-CAfile", str(pki.ca),
         "-cert", str(pki.client_cert), "-key", str(pki.client_key), "-crlf", "-ign_eof", "-verify_return_error"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    for group in groups:
        time.sleep(0.5)
        proc.stdin.write(group)
        proc.stdin.flush()
    stdout, stderr = proc.communicate(timeout=30)
    out = subprocess.CompletedProcess(proc.args, proc.returncode, stdout, stderr)
    assert "Verify return code: 0 (ok)" in out.stdout, out.stdout + out.stderr
    assert "Acceptable client certificate CA names" in out.stdout  # confCACERT sent in the request
    qid = next(line.split()[2] for line in out.stdout.splitlines() if "Message accepted" in line)
    assert "verify=OK)" in mta.wait_message("ossl", qid)
