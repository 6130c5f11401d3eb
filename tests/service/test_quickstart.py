"""make run / mailward quickstart: the address comes from --listen (LISTEN=), and the banner
and its swaks command are built from the configuration actually served."""

from __future__ import annotations

import subprocess
import sys

from mailward import config as config_mod
from mailward.service.quickstart import banner, create_data_folder


def test_listen_goes_into_the_new_config_and_the_banner(tmp_path):
    data = tmp_path / "data"
    made = create_data_folder(data, listen="127.0.0.1:2600")
    cfg = config_mod.load(data / "mailward.toml")
    assert list(cfg.server.listen) == ["127.0.0.1:2600"]
    text = banner(cfg, made)
    assert "listening on 127.0.0.1:2600 with STARTTLS" in text
    assert f"swaks --server 127.0.0.1:2600 --tls --tls-verify --tls-ca-path {data.resolve()}/ca/ca.pem" in text
    assert "--to user@localhost" in text
    assert "2525" not in text
    for name in ("ca/ca.pem", "certs/server.pem", "certs/server-key.pem", "mailward.toml", "spool", "maildir"):
        assert f"{data}/{name}" in text, name      # every file it made is listed
    assert "created:" not in banner(cfg, create_data_folder(data))   # a second start makes nothing


def test_the_banner_follows_an_edited_config(tmp_path):
    data = tmp_path / "data"
    create_data_folder(data)
    path = data / "mailward.toml"
    path.write_text(path.read_text().replace('"127.0.0.1:2525"', '"[::1]:2700"')
                    .replace('users = ["user"]', 'users = ["alice"]'))
    text = banner(config_mod.load(path), [])
    assert "listening on [::1]:2700" in text and "swaks --server [::1]:2700" in text
    assert "--to alice@localhost" in text and "2525" not in text


def test_a_bad_listen_is_one_line(tmp_path):
    run = subprocess.run([sys.executable, "-m", "mailward", "quickstart", str(tmp_path / "d"), "--listen", "2600"],
                         capture_output=True, text=True, timeout=60)
    assert run.returncode == 2 and run.stderr.count("\n") == 1
    assert run.stderr.startswith("mailward: --listen: expected HOST:PORT") and "Traceback" not in run.stderr
    assert not (tmp_path / "d" / "mailward.toml").exists()


def test_quickstart_serves_where_its_banner_says(tmp_path):
    import signal
    import smtplib
    import time

    from tests.conftest import free_port

    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "mailward", "quickstart", str(tmp_path / "data"),
                             "--listen", f"127.0.0.1:{port}"], stderr=subprocess.PIPE, text=True)
    try:
        lines = []
        deadline = time.time() + 60
        while time.time() < deadline and "daemon=started" not in "".join(lines):
            line = proc.stderr.readline()
            if not line:
                break
            lines.append(line)
        text = "".join(lines)
        assert f"swaks --server 127.0.0.1:{port} --tls" in text, text
        with smtplib.SMTP("127.0.0.1", port, timeout=10) as s:
            assert s.ehlo()[0] == 250
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(20)


def test_quickstart_survives_a_local_benchmark(tmp_path):
    """What make run gives a newcomer, under the benchmark's own load generator: 100 clients
    from 127.0.0.1 at once (loopback is exempt from the per-client limit, as Postfix exempts
    $mynetworks), 20 messages each, half to the local user and half to a domain that does
    not exist (each bounced, and the bounce fails again in the same process): no refusal."""
    import json
    import signal
    import time

    from tests.conftest import free_port

    port = free_port()
    log = tmp_path / "stderr"   # a file, not a pipe: nobody reads the log lines during the load
    with open(log, "w") as err:
        proc = subprocess.Popen([sys.executable, "-m", "mailward", "quickstart", str(tmp_path / "data"),
                                 "--listen", f"127.0.0.1:{port}"], stderr=err, text=True)
    try:
        deadline = time.time() + 60
        while time.time() < deadline and "daemon=started" not in log.read_text():
            time.sleep(0.1)
        assert "daemon=started" in log.read_text(), log.read_text()
        for rcpt in ("user@localhost", "sink@bench.invalid"):
            run = subprocess.run([sys.executable, "-m", "bench.load", "--port", str(port), "-c", "100",
                                  "-n", "600", "-m", "20", "-s", "4096", "--pipelining", "--rcpt", rcpt,
                                  "--duration", "20", "--json"],
                                 capture_output=True, text=True, timeout=120)
            result = json.loads(run.stdout)
            assert result["failures"] == 0 and result["msgs"] == 600 and not result["errors"], (rcpt, run.stdout[-2000:], run.stderr)
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(30)
    assert "Traceback" not in log.read_text()
