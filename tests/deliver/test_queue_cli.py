"""``mailward queue`` on a spool the delivery side has worked on: list, show, route; and the
changes an administrator makes (hold, release, delete, flush) as the log records them."""

from __future__ import annotations

import os
import pwd
import re
import subprocess
import sys

from harness import Harness, message, run

from mailward.config import default_config_text


def cli(config, *args):
    return subprocess.run([sys.executable, "-m", "mailward", "queue", "-c", str(config), *args],
                          capture_output=True, text=True, timeout=30)


def test_list_show_and_route(tmp_path, dns_server, mx_port):
    settings = {"delivery": {"resolver": [dns_server], "smtp_port": mx_port, "dns_timeout": 3.0},
                "spool": {"directory": str(tmp_path / "spool"), "fsync": False},
                "local": {"maildir_root": str(tmp_path / "maildir")}}
    config = tmp_path / "mailward.toml"
    config.write_text(default_config_text(settings))
    h = Harness(tmp_path, dns_server, mx_port, settings)

    async def main():
        qid = h.send("a@localhost", ["u@mail.broken.test"], message())
        await h.start()
        await h.settle()
        await h.stop()
        return qid
    qid = run(main)

    out = cli(config, "list")
    assert out.returncode == 0, out.stderr
    line = next(x for x in out.stdout.splitlines() if x.startswith(qid))
    assert "deferred" in line and ("in 4m" in line or "in 5m" in line)
    assert "<u@mail.broken.test> (deferred: 451 4.4.3 Host name lookup failure" in line

    out = cli(config, "show", qid)
    assert "attempts=1" in out.stdout and "next try:  in " in out.stdout
    assert "attempt:" in out.stdout and "deferred 451 4.4.3" in out.stdout

    out = cli(config, "route", "order.test")
    assert out.returncode == 0
    assert f"10 mx1.order.test [127.0.0.11]:{mx_port}" in out.stdout
    assert f"20 mx2.order.test [127.0.0.12]:{mx_port}" in out.stdout
    out = cli(config, "route", "null.test")
    assert out.returncode == 1 and "bounced: 556 5.1.10" in out.stdout
    out = cli(config, "route", "localhost")
    assert "local" in out.stdout


def test_route_shows_every_host_of_a_route_and_the_error_mailer(tmp_path, dns_server, mx_port):
    (tmp_path / "routes").write_text("two.example esmtp:[127.0.0.6]:mx1.order.test\n"
                                     "gone.example error:5.1.1:550 User has moved\n")
    config = tmp_path / "mailward.toml"
    config.write_text(default_config_text({"delivery": {"resolver": [dns_server], "smtp_port": mx_port,
                                                        "route_file": str(tmp_path / "routes")}}))
    out = cli(config, "route", "two.example")
    assert "two.example: route two.example -> esmtp:[127.0.0.6]:mx1.order.test;" in out.stdout
    lines = out.stdout.splitlines()[1:]
    assert lines[0].split() == ["0", "[127.0.0.6]", f"[127.0.0.6]:{mx_port}"]     # ${server_name} keeps brackets
    assert lines[1].split()[1:] == ["mx1.order.test", f"[127.0.0.11]:{mx_port}"]
    out = cli(config, "route", "gone.example")
    assert out.stdout.strip() == "gone.example: route gone.example -> error:5.1.1:550 User has moved"


def _queue_ids(config) -> list[str]:
    out = cli(config, "list")
    assert out.returncode == 0, out.stderr
    return [line.split()[0] for line in out.stdout.splitlines()[1:] if not line.startswith("--")]


def test_hold_release_delete_flush_are_logged_with_the_ids_and_who(make_mta):
    """The real commands, as an administrator runs them, against a config whose log.file is set:
    each change is one notice line in that file, in sendmail's form, naming the id and the user."""
    mta = make_mta({"local": {"users": ["user"]}}, start=False)
    env = {k: v for k, v in os.environ.items() if not k.startswith("SUDO_")}
    for n in range(3):
        sent = subprocess.run([sys.executable, "-m", "mailward", "sendmail", "-C", str(mta.config), "-i",
                               "user@localhost"], input=f"Subject: audit {n}\n\nhello\n", capture_output=True,
                              text=True, timeout=30, env=env, cwd=mta.base)
        assert sent.returncode == 0, sent.stderr
    first, second, third = ids = _queue_ids(mta.config)
    me = f"{pwd.getpwuid(os.getuid()).pw_name} (uid {os.getuid()})"
    line = re.compile(r"^\w{3} [ \d]\d \d\d:\d\d:\d\d mail\.notice mailward\[\d+\]: (.*)$")

    def logged() -> list[str]:
        return [m.group(1) for m in map(line.match, mta.log_text().splitlines()) if m and "queue " in m.group(1)]

    out = cli(mta.config, "hold", first, second)
    assert out.returncode == 0 and out.stdout == f"{first}: held\n{second}: held\n", out.stderr
    assert logged() == [f"{first}: queue hold by {me}", f"{second}: queue hold by {me}"]
    assert all(" hold " in x for x in cli(mta.config, "list").stdout.splitlines() if x.startswith((first, second)))

    assert cli(mta.config, "release", first).returncode == 0
    assert logged()[-1] == f"{first}: queue release by {me}"

    missing = cli(mta.config, "delete", second, "NOSUCHQUEUEID")   # every id is checked before any change
    assert missing.returncode == 2 and "no message NOSUCHQUEUEID" in missing.stderr
    assert len(logged()) == 3 and second in _queue_ids(mta.config)
    if os.getuid() == 0:   # root through sudo: the sudo user is named too
        deleted = subprocess.run([sys.executable, "-m", "mailward", "queue", "-c", str(mta.config), "delete", second],
                                 capture_output=True, text=True, timeout=30,
                                 env={**env, "SUDO_USER": "alice", "SUDO_UID": "1000"})
        assert deleted.returncode == 0, deleted.stderr
        assert logged()[-1] == f"{second}: queue delete by {me}, sudo from alice (uid 1000)"
    else:
        assert cli(mta.config, "delete", second).returncode == 0
        assert logged()[-1] == f"{second}: queue delete by {me}"
    assert _queue_ids(mta.config) == [x for x in ids if x != second]

    assert cli(mta.config, "hold", third).returncode == 0   # kept back while the server starts
    mta.start()
    mta.wait_mail("user", 1)
    out = cli(mta.config, "flush", third)   # releases it and asks the server to run the queue
    assert out.returncode == 0, out.stderr
    out = cli(mta.config, "flush")
    assert out.returncode == 0, out.stderr
    assert logged()[-2:] == [f"{third}: queue flush by {me}", f"queue flush by {me}"]
    mta.wait_mail("user", 2)


def test_a_spool_that_is_not_a_folder_is_one_line(tmp_path):
    import subprocess
    import sys
    (tmp_path / "spool").write_text("not a folder\n")
    config = tmp_path / "mailward.toml"
    config.write_text('[spool]\ndirectory = "spool"\n')
    run = subprocess.run([sys.executable, "-m", "mailward", "queue", "-c", str(config), "list"],
                         capture_output=True, text=True, timeout=60)
    assert run.returncode == 2 and "Traceback" not in run.stderr
    assert run.stderr == (f"mailward: {tmp_path / 'spool'}: spool.directory cannot be opened: it is not a folder; "
                          f"fix: check spool.directory in {config} and that this account may read it\n")
