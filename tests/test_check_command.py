"""``mailward check`` and the access map's warnings: every problem a start would meet, each as
file:line (or file: setting) and the fix, all of them at once; exit 0 when clean, 2 otherwise."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest


def mailward(*args, cwd: Path, env_config: Path | None = None) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "MAILWARD_CONFIG"}
    if env_config is not None:
        env["MAILWARD_CONFIG"] = str(env_config)
    return subprocess.run([sys.executable, "-m", "mailward", *map(str, args)], capture_output=True, text=True,
                          timeout=60, cwd=cwd, env=env)


# ---- sendmail access map tags mailward does not implement ----------------------------------------

UNIMPLEMENTED = "Connect:10.1 RELAY\nClientRate:192.0.2.1 2\nSpam:abuse@ FRIEND\nTLS_Clt:x.example VERIFY\n" \
                "GreetPause:localhost 0\nLocal_mine:x OK\nAuthInfo:relay.example \"U:me\" \"P:pw\"\nQGRP:x.example slow\n" \
                "ClientConn:192.0.2.9 3\n"


@pytest.mark.parametrize("line,tag", [(2, "ClientRate"), (3, "Spam"), (5, "GreetPause"), (6, "Local_mine"),
                                      (8, "QGRP"), (9, "ClientConn")])
def test_policy_check_warns_about_each_unimplemented_tag(tmp_path, line, tag):
    amap = tmp_path / "access"
    amap.write_text(UNIMPLEMENTED)
    run = mailward("policy", "check", amap, cwd=tmp_path)
    assert run.returncode == 0, run.stderr
    assert run.stdout == f"{amap}: 9 entries, syntax OK\n"
    warnings = run.stderr.splitlines()
    assert len(warnings) == 6 and "Traceback" not in run.stderr   # AuthInfo (line 7) is implemented
    assert f"warning: {amap}:{line}: {tag}: tag " in warnings[[2, 3, 5, 6, 8, 9].index(line)]
    assert all("the entry has no effect" in w for w in warnings)


def test_implemented_tags_and_untagged_keys_get_no_warning():
    from mailward.policy.accessmap import AccessMap
    amap = AccessMap.from_text("Connect:IPv6:2001:db8::1 OK\nFrom:a@b.example REJECT\nTo:c.example RELAY\n"
                               "TLS_Srv:x ENCR:128\nTLS_Rcpt:y VERIFY\nTry_TLS:z NO\nSrv_Features:w V\n"
                               "CERTISSUER:/CN=CA RELAY\nCERTSUBJECT:/CN=x RELAY\nx.example RELAY\n192.0.2 REJECT\n"
                               "IPv6:2001:db8::2 OK\n", "access")
    assert amap.warnings == []


def test_many_unimplemented_lines_are_summarised():
    from mailward.policy.accessmap import AccessMap
    amap = AccessMap.from_text("".join(f"ClientRate:192.0.2.{i} 2\n" for i in range(1, 251)), "access")
    assert len(amap.warnings) == 101
    assert amap.warnings[-1] == "access: 150 more entries with tags mailward does not implement (not listed)"


# ---- mailward check ----------------------------------------------------------------------------

def _clean(tmp_path: Path, pki) -> Path:
    (tmp_path / "access").write_text("Connect:127.0.0.1 RELAY\nTLS_Clt:client.test VERIFY:128\n")
    (tmp_path / "routes").write_text("example.net esmtp:[192.0.2.25]\n")
    (tmp_path / "aliases").write_text("postmaster: alice\nhelp: alice, bob@example.net\n")
    path = tmp_path / "mailward.toml"
    path.write_text(f'[server]\nhostname = "localhost"\n'
                    f'[tls]\ncert_file = "{pki.server_cert}"\nkey_file = "{pki.server_key}"\nca_file = "{pki.ca}"\n'
                    '[local]\nusers = ["alice"]\naliases = "aliases"\n[policy]\naccess_map = "access"\n'
                    '[delivery]\nroute_file = "routes"\n')
    return path


def test_a_clean_setup_exits_0(tmp_path, pki):
    path = _clean(tmp_path, pki)
    run = mailward("check", "-c", path, cwd=tmp_path)
    assert run.returncode == 0, run.stdout + run.stderr
    assert run.stdout == f"{path}: ok\n" and run.stderr == ""


def test_check_reads_mailward_config_without_c(tmp_path, pki):
    path = _clean(tmp_path, pki)
    run = mailward("check", cwd=tmp_path, env_config=path)
    assert run.returncode == 0 and run.stdout == f"{path}: ok\n"


def test_every_problem_of_every_file_with_its_line(tmp_path, pki):
    path = _clean(tmp_path, pki)
    (tmp_path / "access").write_text("Connect:127.0.0.1 RELAY\nTLS_Clt:x VERFY\nGreetPause:localhost 0\nTo:x\n")
    (tmp_path / "routes").write_text("a.example esmtp:[x\nb.example smtp:y\nb.example smtp:y\n")
    (tmp_path / "aliases").write_text("bob: alice, |/bin/prog\nx y\nadmin: nobody\n")
    text = path.read_text().replace(f'cert_file = "{pki.server_cert}"', 'cert_file = "certs/missing.pem"')
    path.write_text(text.replace('users = ["alice"]', 'users = ["alice", ""]'))
    run = mailward("check", "-c", path, cwd=tmp_path)
    assert run.returncode == 2 and "Traceback" not in run.stdout + run.stderr
    out = run.stdout.splitlines()
    at = lambda prefix: [l for l in out if l.startswith(prefix)]  # noqa: E731
    missing = tmp_path / "certs" / "missing.pem"
    assert at(f"{path}:4: error: tls.cert_file {missing}: no such file")
    assert at(f"{tmp_path / 'access'}:2: error: unknown TLS requirement 'VERFY'")
    assert at(f"{tmp_path / 'access'}:3: warning: GreetPause: tag not implemented by mailward")
    assert at(f"{tmp_path / 'access'}:4: error: no value for key 'To:x'")
    assert at(f"{tmp_path / 'routes'}:1: error: unbalanced brackets")
    assert at(f"{tmp_path / 'routes'}:3: error: b.example is routed twice")
    assert at(f"{tmp_path / 'aliases'}:1: error: target '|/bin/prog' is not supported")
    assert at(f"{tmp_path / 'aliases'}:2: error: expected 'name: target, target'")
    assert at(f"{tmp_path / 'aliases'}:3: warning: alias admin: target 'nobody' is not a local user")
    assert at(f"{path}:8: error: local.users: '' cannot be a mailbox name")
    assert out[-1] == f"{path}: 8 errors, 2 warnings: the server would not start"


def test_every_config_key_problem_at_once(tmp_path):
    path = tmp_path / "mailward.toml"
    path.write_text('[server]\nhostnme = "x"\nworkers = 0\n[tls]\nmin_version = "SSLv3"\n[bogus]\n')
    run = mailward("check", "-c", path, cwd=tmp_path)
    assert run.returncode == 2
    lines = run.stdout.splitlines()
    assert lines[0].startswith(f"{path}:2: error: server.hostnme: unknown key")
    assert lines[1] == f"{path}:3: error: server.workers: expected an integer >= 1, got 0"
    assert lines[2].startswith(f"{path}:5: error: tls.min_version: expected one of")
    assert lines[3].startswith(f"{path}:6: error: [bogus]: unknown section")
    assert lines[4] == f"{path}: 4 errors, 0 warnings: the server would not start"


def test_toml_syntax_error_names_the_line(tmp_path):
    path = tmp_path / "mailward.toml"
    path.write_text('[server]\n\nhostname = \n')
    run = mailward("check", "-c", path, cwd=tmp_path)
    assert run.returncode == 2
    assert run.stdout.splitlines()[0].startswith(f"{path}:3: error: not valid TOML: ")


def test_a_missing_default_config_is_one_problem_with_the_fix(tmp_path):
    run = mailward("check", cwd=tmp_path, env_config=tmp_path / "absent.toml")
    assert run.returncode == 2 and "Traceback" not in run.stderr
    assert "MAILWARD_CONFIG" in run.stdout and "mailward quickstart" in run.stdout


def test_the_delivery_client_certificate_is_checked_too(tmp_path, pki):
    path = _clean(tmp_path, pki)
    path.write_text(path.read_text() + f'client_cert_file = "{pki.client_cert}"\nclient_key_file = "{pki.client_cert}"\n')
    run = mailward("check", "-c", path, cwd=tmp_path)
    assert run.returncode == 2
    assert run.stdout.splitlines()[0] == (
        f"{path}:15: error: delivery.client_key_file {pki.client_cert}: holds a certificate, not a private key "
        f"(delivery.client_key_file names a certificate); fix: set delivery.client_key_file to the private key "
        f"made with the certificate (e.g. the -key.pem file written by mailward ca issue --key-out), not to "
        f"{pki.client_cert}")
    path.write_text(path.read_text().replace(f'client_key_file = "{pki.client_cert}"',
                                             f'client_key_file = "{pki.client_key}"'))
    run = mailward("check", "-c", path, cwd=tmp_path)
    assert run.returncode == 0, run.stdout


def test_the_server_logs_the_unimplemented_tags_when_it_loads_the_map(tmp_path, make_mta):
    amap = tmp_path / "access"
    amap.write_text("Connect:127.0.0.1 RELAY\nClientRate:127.0.0.1 2\n")
    mta = make_mta({"policy": {"access_map": str(amap)}})
    try:
        text = mta.wait_log(f"{amap}:2: ClientRate: tag not implemented by mailward")
        line = next(line for line in text.splitlines() if "ClientRate:" in line)
        assert "the entry has no effect" in line and "Connect:" not in text
    finally:
        mta.stop()


# ---- the AUTH users file and the trust stores of MTA-STS and TLS-RPT -----------------------------

def test_check_names_each_bad_users_file_line_and_a_loose_mode(tmp_path):
    users = tmp_path / "users"
    env = {k: v for k, v in os.environ.items() if k != "MAILWARD_CONFIG"} | {"MAILWARD_PASSWORD": "s3cret pass"}
    subprocess.run([sys.executable, "-m", "mailward", "user", "add", "--file", str(users), "alice"],
                   check=True, capture_output=True, timeout=60, env=env)
    good = users.read_text()
    first_bad = len(good.splitlines()) + 1
    users.write_text(good + "no colon here\n\nbob:not-a-hash:\n")
    users.chmod(0o644)
    bad_ca = tmp_path / "sts-ca.pem"
    bad_ca.write_text("not a certificate\n")
    config = tmp_path / "mailward.toml"
    config.write_text(f'[auth]\nbackend = "file"\nusers_file = "{users}"\n\n[mta_sts]\nca_file = "{bad_ca}"\n'
                      f'\n[tls_rpt]\nca_file = "{tmp_path / "missing.pem"}"\n')
    run = mailward("check", "-c", config, cwd=tmp_path)
    assert run.returncode == 2 and "Traceback" not in run.stderr + run.stdout
    out = run.stdout
    assert f"{users}: error: mode 0644 lets other accounts read" in out
    assert f"{users}:{first_bad}: error: expected NAME:ARGON2ID:SCRAM" in out
    assert f"{users}:{first_bad + 2}: error: ARGON2ID field" in out
    assert f"{config}:6: error: mta_sts.ca_file {bad_ca}: no PEM certificate in it" in out
    assert f"{config}:9: error: tls_rpt.ca_file {tmp_path / 'missing.pem'}: No such file or directory" in out
    users.write_text(good)
    users.chmod(0o600)
    config.write_text(f'[auth]\nbackend = "file"\nusers_file = "{users}"\n')
    run = mailward("check", "-c", config, cwd=tmp_path)
    assert run.returncode == 0 and run.stdout == f"{config}: ok\n", run.stdout


def test_check_wants_a_users_file_for_the_file_backend(tmp_path):
    config = tmp_path / "mailward.toml"
    config.write_text('[auth]\nbackend = "file"\n')
    run = mailward("check", "-c", config, cwd=tmp_path)
    assert run.returncode == 2
    assert f'{config}:2: error: auth.backend is "file" but auth.users_file is empty' in run.stdout


def test_check_refuses_a_submission_listener_serve_would_refuse(tmp_path):
    config = tmp_path / "mailward.toml"
    config.write_text('[server]\nlisten = ["127.0.0.1:2525", "127.0.0.1:2587 submission"]\n')
    run = mailward("check", "-c", config, cwd=tmp_path)
    assert run.returncode == 2 and "Traceback" not in run.stdout + run.stderr
    assert f"{config}:2: error:" in run.stdout and "submission" in run.stdout


def test_the_sendmail_command_talks_to_the_first_mx_listener():
    from mailward.submit import listen_address
    assert listen_address(("127.0.0.1:2587 submission", "0.0.0.0:2525")) == ("127.0.0.1", 2525)
    assert listen_address(("[::1]:2465 submissions",)) == ("::1", 2465)
