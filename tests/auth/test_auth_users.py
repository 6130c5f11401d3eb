"""The users file and `mailward user`, run as a user would: the real command in a subprocess
(password from $MAILWARD_PASSWORD, --password-file or standard input, never the command
line), then the file checked by the backend that reads it (argon2id for PLAIN/LOGIN, SCRAM
keys for SCRAM-SHA-256), its mode, reload on change, and one-line errors naming FILE:LINE."""

from __future__ import annotations

import asyncio
import logging
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from scramp import ScramClient

from mailward.auth.build import backend_from_config
from mailward.auth.users import UsersFileBackend, UsersFileError, load_users
from mailward.config import ConfigError, from_dict
from tests.auth.conftest import users_file

ROOT = Path(__file__).resolve().parents[2]


def mailward(*args: str, password: str | None = None, stdin: str | None = None,
             cwd: Path) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("MAILWARD_PASSWORD", "MAILWARD_CONFIG")}
    env["PYTHONPATH"] = str(ROOT)
    if password is not None:
        env["MAILWARD_PASSWORD"] = password
    return subprocess.run([sys.executable, "-m", "mailward", *args], cwd=cwd, env=env, input=stdin,
                          capture_output=True, text=True, timeout=60)


def plain(backend, user: str, password: str):
    return asyncio.run(backend.begin("PLAIN").step(f"\0{user}\0{password}".encode()))


def scram(backend, user: str, password: str):
    client = ScramClient(["SCRAM-SHA-256"], user, password)

    async def go():
        exchange = backend.begin("SCRAM-SHA-256")
        first = await exchange.step(client.get_client_first().encode())
        client.set_server_first(first.challenge.decode())
        second = await exchange.step(client.get_client_final().encode())
        if second.challenge is None:
            return second
        client.set_server_final(second.challenge.decode())
        return await exchange.step(b"")

    return asyncio.run(go())


def test_add_list_passwd_del_through_the_command(tmp_path):
    users = tmp_path / "users"
    r = mailward("user", "--file", str(users), "add", "alice@example.org", password="first pw", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert "user alice@example.org added" in r.stdout
    assert oct(users.stat().st_mode & 0o777) == "0o640"
    (tmp_path / "pw").write_text("bob's pw\n")
    r = mailward("user", "add", "bob", "--file", str(users), "--password-file", str(tmp_path / "pw"), cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    r = mailward("user", "-f", str(users), "add", "carol", "--password-file", "-", stdin="carol pw\n", cwd=tmp_path)
    assert r.returncode == 0, r.stderr

    text = users.read_text()
    for secret in ("first pw", "bob's pw", "carol pw"):
        assert secret not in text
    assert text.count("$argon2id$") == 3 and text.count("SCRAM-SHA-256$4096:") == 3

    r = mailward("user", "--file", str(users), "list", cwd=tmp_path)
    assert r.returncode == 0
    assert [line.split("\t")[0] for line in r.stdout.splitlines()] == ["alice@example.org", "bob", "carol"]
    assert "SCRAM-SHA-256 (4096 iterations)" in r.stdout and "3 users" in r.stderr

    backend = UsersFileBackend(users)
    assert plain(backend, "alice@example.org", "first pw").user == "alice@example.org"
    assert plain(backend, "bob", "bob's pw").user == "bob"
    assert scram(backend, "carol", "carol pw").user == "carol"

    users.chmod(0o600)
    r = mailward("user", "--file", str(users), "passwd", "alice@example.org", password="second pw", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert oct(users.stat().st_mode & 0o777) == "0o600"     # the rewrite keeps the mode
    assert plain(backend, "alice@example.org", "first pw").failed      # the change is seen without a restart
    assert plain(backend, "alice@example.org", "second pw").user == "alice@example.org"
    assert scram(backend, "alice@example.org", "second pw").user == "alice@example.org"

    r = mailward("user", "--file", str(users), "del", "bob", cwd=tmp_path)
    assert r.returncode == 0 and "user bob removed" in r.stdout
    assert plain(backend, "bob", "bob's pw").failed
    assert users.read_text().startswith("# mailward users file")   # the comment is kept
    assert not list(tmp_path.glob(".users.*.tmp"))


def test_command_errors_are_one_line_and_exit_2(tmp_path):
    users = tmp_path / "users"
    assert mailward("user", "--file", str(users), "add", "alice", password="pw", cwd=tmp_path).returncode == 0
    cases = [
        (("add", "alice"), "pw", "user 'alice' exists; use mailward user passwd"),
        (("passwd", "nobody"), "pw", "no user 'nobody'"),
        (("del", "nobody"), None, "no user 'nobody'"),
        (("add", "bad:name"), "pw", "no ':'"),
        (("add", "dave"), "", "empty password"),
        (("add", "dave"), None, "no password: give --password-file FILE, set MAILWARD_PASSWORD"),
        (("add", "dave", "--iterations", "100"), "pw", "--iterations 100"),
    ]
    for args, password, message in cases:
        r = mailward("user", "--file", str(users), *args, password=password, stdin="", cwd=tmp_path)
        assert r.returncode == 2, (args, r.stdout, r.stderr)
        assert message in r.stderr and len(r.stderr.splitlines()) == 1 and "Traceback" not in r.stderr
    assert [e for e in load_users(users)] == ["alice"]


def test_password_is_not_an_argument():
    r = subprocess.run([sys.executable, "-m", "mailward", "user", "add", "--help"], capture_output=True, text=True,
                       env={**os.environ, "PYTHONPATH": str(ROOT)}, timeout=60)
    assert "--password-file" in r.stdout and "--password " not in r.stdout and "--password=" not in r.stdout


def test_the_file_named_by_the_config(tmp_path):
    users = tmp_path / "users.txt"
    config = tmp_path / "mailward.toml"
    config.write_text('[auth]\nbackend = "file"\nusers_file = "users.txt"\n')
    r = mailward("user", "-c", str(config), "add", "alice", password="pw", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert users.exists()
    backend = backend_from_config(from_dict({"auth": {"backend": "file", "users_file": str(users)}}))
    assert plain(backend, "alice", "pw").user == "alice"
    config.write_text("[auth]\n")
    r = mailward("user", "-c", str(config), "list", cwd=tmp_path)
    assert r.returncode == 2 and "auth.users_file is empty" in r.stderr


def test_mode_that_lets_others_read_is_refused(tmp_path):
    path = users_file(tmp_path, {"alice": "pw"}, mode=0o644)
    with pytest.raises(UsersFileError, match=r"mode 0644 .* fix: chmod 0640"):
        load_users(path)
    with pytest.raises(ConfigError, match="auth.users_file: .*mode 0644"):
        backend_from_config(from_dict({"auth": {"backend": "file", "users_file": str(path)}}))
    path.chmod(0o660)
    with pytest.raises(UsersFileError, match="mode 0660"):
        load_users(path)
    for ok in (0o600, 0o640, 0o400, 0o440):
        path.chmod(ok)
        assert list(load_users(path)) == ["alice"]


@pytest.mark.parametrize("line, message", [
    ("alice", "expected NAME:ARGON2ID:SCRAM"),
    ("alice:$argon2i$v=19$m=1024,t=1,p=1$c2FsdHNhbHQ$aGFzaGhhc2hoYXNoaGFzaA:", "only argon2id"),
    ("alice:notahash:", "not an argon2 hash"),
    ("alice::", "could never log in"),
    ("alice::SCRAM-SHA-256$4096:c2FsdA==$AAAA:AAAA", "salt under 12 octets"),
    ("alice::SCRAM-SHA-256$100:c2FsdHNhbHRzYWx0$AAAA:AAAA", "iteration count 100"),
    ("alice::SCRAM-SHA-1$4096:x$y:z", "expected SCRAM-SHA-256$"),
    ("al ice::", "no ':', spaces"),
])
def test_bad_lines_name_file_and_line(tmp_path, line, message):
    path = users_file(tmp_path, {"bob": "pw"})
    path.write_text(path.read_text() + line + "\n")
    with pytest.raises(UsersFileError) as err:
        load_users(path)
    assert str(err.value).startswith(f"{path}:3: ")
    assert message in str(err.value)


def test_duplicate_user_names_the_first_line(tmp_path):
    path = users_file(tmp_path, {"bob": "pw"})
    path.write_text(path.read_text() + path.read_text().splitlines()[1] + "\n")
    with pytest.raises(UsersFileError, match=r":3: user 'bob' already on line 2"):
        load_users(path)


def test_reload_on_change_and_a_broken_file_keeps_the_previous_users(tmp_path, caplog):
    path = users_file(tmp_path, {"alice": "pw"})
    backend = UsersFileBackend(path)
    assert plain(backend, "alice", "pw").user == "alice"
    users_file(tmp_path, {"alice": "pw", "bob": "bob pw"})       # replaced in place: size and mtime change
    assert plain(backend, "bob", "bob pw").user == "bob"
    good = path.read_text()
    with caplog.at_level(logging.ERROR, logger="mailward.auth"):
        path.write_text(good + "broken line\n")
        assert plain(backend, "bob", "bob pw").user == "bob"         # previous users still in use
    assert f"users file {path}:4: expected NAME:ARGON2ID:SCRAM" in caplog.text
    assert "keeping the previous users (2)" in caplog.text
    new = tmp_path / "users.new"
    new.write_text(good.replace("bob:", "robert:"))
    new.chmod(0o640)
    os.replace(new, path)                                         # a new inode, as `mailward user` writes it
    assert plain(backend, "robert", "bob pw").user == "robert"
    assert plain(backend, "bob", "bob pw").failed


def test_unknown_users_cost_a_hash_and_the_event_loop_keeps_running(tmp_path):
    """A default-cost argon2id check for an unknown user (the decoy) as for a known one, in a
    thread: a ticker on the loop keeps running meanwhile."""
    path = tmp_path / "users"
    r = mailward("user", "--file", str(path), "add", "alice", password="pw", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    backend = UsersFileBackend(path)

    async def timed(user):
        ticks = 0
        stop = asyncio.Event()

        async def ticker():
            nonlocal ticks
            while not stop.is_set():
                ticks += 1
                await asyncio.sleep(0.001)

        task = asyncio.create_task(ticker())
        start = time.perf_counter()
        step = await backend.begin("PLAIN").step(f"\0{user}\0wrong".encode())
        elapsed = time.perf_counter() - start
        stop.set()
        await task
        return step, elapsed, ticks

    async def go():
        await backend.start()          # makes the decoy hash
        return await timed("alice"), await timed("nobody")

    (known, t_known, ticks_known), (unknown, t_unknown, ticks_unknown) = asyncio.run(go())
    assert known.failed and unknown.failed
    assert t_unknown > 0.01 and t_known > 0.01          # argon2id with m=64 MiB takes tens of ms anywhere
    assert t_unknown > t_known / 4                      # same order: no early return for unknown names
    assert ticks_known > 2 and ticks_unknown > 2


def test_backend_from_config():
    assert backend_from_config(from_dict({})) is None
    with pytest.raises(ConfigError, match="auth.users_file is empty"):
        backend_from_config(from_dict({"auth": {"backend": "file"}}))
    with pytest.raises(ConfigError, match="auth.dovecot_socket is empty"):
        backend_from_config(from_dict({"auth": {"backend": "dovecot"}}))
    with pytest.raises(ConfigError, match="cannot read"):
        backend_from_config(from_dict({"auth": {"backend": "file", "users_file": "/nonexistent/users"}}))
    with pytest.raises(ConfigError, match="expected SASL mechanism names"):
        from_dict({"auth": {"mechanisms": ["plain"]}})
