"""``mailward sendmail`` (and the sendmail / mailq / newaliases scripts) with real programs and
real mailward servers: what cron, scripts and mailx see — exit codes, one-line errors, the
message in the Maildir or in the queue."""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from mailward import submit
from mailward.commands.sendmail import parse
from mailward.config import load
from tests.spool_view import message_files, queued

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
USERS = {"local": {"users": ["alice", "bob", "carol"], "domains": ["localhost", "mx.test"]}}


def sendmail(mta, *args: str, stdin: bytes = b"", env: dict | None = None, prog: list[str] | None = None,
             timeout: float = 20) -> subprocess.CompletedProcess:
    cmd = (prog or [sys.executable, "-m", "mailward", "sendmail"]) + list(args)
    full_env = {**os.environ, "MAILWARD_CONFIG": str(mta.config), "HOME": str(mta.base), **(env or {})}
    return subprocess.run(cmd, input=stdin, capture_output=True, timeout=timeout, env=full_env, check=False, cwd=mta.base)


def one_line_error(proc) -> str:
    err = proc.stderr.decode()
    assert "Traceback" not in err
    assert err.count("\n") == 1, err
    return err


def queue_files(mta) -> list[str]:
    """The queue ids in the spool, whatever its format."""
    return queued(mta)


# ---- the command line ------------------------------------------------------------------------

def test_options_as_postfix_sendmail_accepts_them():
    o = parse(["-t", "-oi", "-fcron@example.com", "-F", "Cron Daemon", "-oem", "-odi", "-B", "8BITMIME",
               "-N", "never", "-G", "-U", "-v", "-L", "tag", "--", "-odd-name"])
    assert (o.extract, o.ignore_dots, o.sender, o.full_name, o.verbose) == (True, True, "cron@example.com",
                                                                             "Cron Daemon", True)
    assert o.recipients == ["-odd-name"]
    assert parse(["-tif", "<>", "root"]).sender == "" and parse(["-tif", "<>", "root"]).recipients == ["root"]
    assert parse(["-bp"]).mode == "p" and parse([], "mailq").mode == "p" and parse([], "newaliases").mode == "i"
    assert parse(["-q"]).flush and not parse(["-q30m"]).flush
    assert parse(["-r", "a@b"]).sender == "a@b"


def test_unknown_option_and_bad_mode_are_usage_errors(make_mta):
    mta = make_mta(start=False)
    for args in (["-Z"], ["-bd"], ["-bt"], ["-f"], ["-n", "alice"]):
        proc = sendmail(mta, *args)
        assert proc.returncode == 64, proc
        one_line_error(proc)
    proc = sendmail(mta, stdin=b"Subject: x\n\nno one\n")
    assert proc.returncode == 64 and "no recipients" in one_line_error(proc)
    assert "no one" in (mta.base / "dead.letter").read_text()
    proc = sendmail(mta, "-t", stdin=b"To: a b c <x y@z>\nSubject: x\n\nbad\n")
    assert proc.returncode == 65 and "'x y@z' is not a valid address" in one_line_error(proc)
    proc = sendmail(mta, "-f", "bad sender@x", "alice", stdin=b"x\n")
    assert proc.returncode == 65 and "the sender (-f)" in one_line_error(proc)
    assert queue_files(mta) == []


def test_missing_or_broken_config_is_ex_config(make_mta, tmp_path):
    mta = make_mta(start=False)
    proc = sendmail(mta, "-C", str(tmp_path / "nope.toml"), "alice", stdin=b"Subject: cron output\n\nx\n")
    assert proc.returncode == 78
    assert "nope.toml" in one_line_error(proc) and "-C FILE" in proc.stderr.decode()
    assert "cron output" in (mta.base / "dead.letter").read_text()
    bad = tmp_path / "bad.toml"
    bad.write_text("[server]\nmax_command_line = 'big'\n")
    proc = sendmail(mta, "-C", str(bad), "alice", stdin=b"x\n")
    assert proc.returncode == 78 and "server.max_command_line" in one_line_error(proc)


# ---- sending -----------------------------------------------------------------------------------

def test_cron_style_t_f_oi_delivers_with_bcc_removed(make_mta):
    mta = make_mta(USERS)
    msg = (b"To: alice@localhost\nCc: bob\nBcc: carol@localhost\nSubject: Cron <root@host> run-parts\n\n"
           b"output line\n.\nafter the dot\n")
    proc = sendmail(mta, "-t", "-oi", "-f", "cron@mx.test", "-F", "Cron Daemon", "-v", stdin=msg)
    assert proc.returncode == 0, proc.stderr
    qid = proc.stdout.split(b":")[0].decode()
    assert "was asked to deliver it" in proc.stdout.decode()
    for user in ("alice", "bob", "carol"):
        text = mta.wait_message(user, qid)
        assert "Return-Path: <cron@mx.test>" in text
        assert "Bcc:" not in text and "carol" not in text.split("\n\n", 1)[0].replace("Delivered-To: carol", "")
        assert "From: Cron Daemon <cron@mx.test>" in text and "Date: " in text and "Message-ID: " in text
        assert text.split("\n", 3)[2].startswith("Received: (from ")
        assert "\n.\nafter the dot\n" in text


def test_a_lone_dot_ends_the_message_without_i(make_mta):
    mta = make_mta(USERS)
    proc = sendmail(mta, "-v", "alice", stdin=b"From app Tue Dec  1 00:00:00 2026\nSubject: dot\n\nfirst\n.\nnever read\n")
    assert proc.returncode == 0, proc.stderr
    text = mta.wait_message("alice", proc.stdout.split(b":")[0].decode())
    assert "first" in text and "never read" not in text
    assert "From app" not in text and "Subject: dot" in text


def test_daemon_down_message_kept_and_delivered_at_start(make_mta):
    mta = make_mta(USERS, start=False)
    proc = sendmail(mta, "-v", "bob", stdin=b"Subject: while down\n\nkept\n")
    assert proc.returncode == 0, proc.stderr
    assert "no mailward server is running; delivered when it starts" in proc.stdout.decode()
    qid = proc.stdout.split(b":")[0].decode()
    assert queue_files(mta) == [qid]
    listing = sendmail(mta, "-bp")
    assert listing.returncode == 0 and qid in listing.stdout.decode() and "<bob@mx.test>" in listing.stdout.decode()
    flush = sendmail(mta, "-q")
    assert flush.returncode == 75 and "mailward serve" in one_line_error(flush)
    mta.start()
    assert "kept" in mta.wait_message("bob", qid)


def test_mailq_and_newaliases_by_program_name(make_mta, tmp_path):
    aliases = tmp_path / "aliases"
    aliases.write_text("root: alice\npostmaster: root\n")
    mta = make_mta({"local": {"users": ["alice"], "aliases": str(aliases)}}, start=False)
    for name in ("mailq", "newaliases", "sendmail"):
        if not (BIN / name).exists():
            pytest.skip(f"the {name} console script is not installed (pip install -e .)")
    proc = sendmail(mta, "root", stdin=b"Subject: q\n\nx\n", prog=[str(BIN / "sendmail")])
    assert proc.returncode == 0, proc.stderr
    proc = sendmail(mta, prog=[str(BIN / "mailq")])
    assert proc.returncode == 0 and "<root@localhost>" in proc.stdout.decode()
    proc = sendmail(mta, prog=[str(BIN / "newaliases")])
    assert proc.returncode == 0 and "2 aliases, syntax OK" in proc.stdout.decode()
    aliases.write_text("root alice\n")
    proc = sendmail(mta, prog=[str(BIN / "newaliases")])
    assert proc.returncode == 78 and f"{aliases}:1" in one_line_error(proc)


def test_q_asks_the_running_server(make_mta):
    mta = make_mta(USERS)
    proc = sendmail(mta, "-q")
    assert proc.returncode == 0 and "was asked to run the queue" in proc.stdout.decode()
    assert mta.proc.poll() is None


def test_bv_says_local_or_remote_and_whether_the_user_exists(make_mta, tmp_path):
    aliases = tmp_path / "aliases"
    aliases.write_text("team: alice, bob@elsewhere.example\n")
    mta = make_mta({"local": {"users": ["alice"], "aliases": str(aliases)}}, start=False)
    proc = sendmail(mta, "-bv", "alice", "team", "x@example.org")
    out = proc.stdout.decode()
    assert proc.returncode == 0, out
    assert "alice@localhost... deliverable: mailer local, user alice" in out
    assert "team@localhost... deliverable: alias of alice, bob@elsewhere.example" in out
    assert "x@example.org... deliverable: mailer esmtp (remote)" in out
    proc = sendmail(mta, "-bv", "nobody@localhost")
    assert proc.returncode == 67 and "nobody@localhost... User unknown" in proc.stdout.decode()


def test_bs_relays_an_smtp_dialogue_to_the_server(make_mta):
    mta = make_mta(USERS)
    dialogue = (b"EHLO script\nMAIL FROM:<app@mx.test>\nRCPT TO:<alice@localhost>\nDATA\n"
                b"Subject: over -bs\n\nhello\n.\nQUIT\n")
    proc = sendmail(mta, "-bs", stdin=dialogue)
    out = proc.stdout.decode()
    assert proc.returncode == 0, out
    assert out.startswith("220 ") and "354 " in out and out.rstrip().endswith("closing connection")
    qid = next(line.split()[2] for line in out.splitlines() if line.startswith("250 2.0.0"))
    assert "over -bs" in mta.wait_message("alice", qid)
    mta.stop()
    proc = sendmail(mta, "-bs", stdin=b"EHLO x\n")
    assert proc.returncode == 75 and proc.stdout.startswith(b"421 4.3.0 ")


def test_spool_write_failure_keeps_the_message_in_dead_letter(make_mta, tmp_path):
    mta = make_mta(start=False)
    (mta.base / "notadir").write_text("")
    cfg = mta.config.read_text().replace('directory = "spool"', 'directory = "notadir/spool"')
    assert cfg != mta.config.read_text()
    mta.config.write_text(cfg)
    home = tmp_path / "home"
    home.mkdir()
    proc = sendmail(mta, "alice", stdin=b"Subject: precious\n\nkeep me\n", env={"HOME": str(home)})
    assert proc.returncode == 75
    err = one_line_error(proc)
    assert "not taken" in err and str(home / "dead.letter") in err
    assert "keep me" in (home / "dead.letter").read_text()


# ---- without spool access: over SMTP ---------------------------------------------------------

def test_smtp_submission_to_the_listener(make_mta):
    mta = make_mta(USERS)
    cfg = load(mta.config)
    host, port = submit.listen_address(cfg.server.listen)
    sub = submit.Submission("app@mx.test", ["alice@localhost", "nobody@localhost"],
                            submit.crlf(b"Subject: smtp path\n\nbody\n"))
    text, refused = submit.to_smtp(sub, host, port)
    qid = text.split()[1]
    assert "smtp path" in mta.wait_message("alice", qid)
    assert refused and "nobody@localhost" in refused[0] and "550" in refused[0]
    with pytest.raises(submit.SubmitError) as err:
        submit.to_smtp(submit.Submission("a@mx.test", ["nobody@localhost"], b"x\r\n"), host, port)
    assert err.value.exit_code == 67
    mta.stop()
    with pytest.raises(submit.SubmitError) as err:
        submit.to_smtp(sub, host, port)
    assert err.value.exit_code == 75 and "is mailward running?" in str(err.value)


def _as_nobody() -> tuple[list[str], dict, object] | None:
    """(python command, extra environment, preexec) that runs mailward as the user nobody, or
    None. A venv's Python under /root is out of nobody's reach: the system Python with the
    source tree and the venv's packages on PYTHONPATH is tried next."""
    if os.geteuid() != 0:
        return None
    try:
        nobody = pwd.getpwnam("nobody")
    except KeyError:
        return None

    def drop():
        os.setgroups([])
        os.setgid(nobody.pw_gid)
        os.setuid(nobody.pw_uid)

    site = next(Path(sys.prefix).glob("lib/python3*/site-packages"), None)
    tries = [([sys.executable], {})]
    for system in ("/usr/bin/python3", "/usr/local/bin/python3"):
        if site and os.path.exists(system):
            tries.append(([system], {"PYTHONPATH": f"{ROOT}:{site}"}))
    for python, extra in tries:
        try:
            probe = subprocess.run(python + ["-c", "import mailward.commands.sendmail, OpenSSL, dns"],
                                   capture_output=True, preexec_fn=drop, env=dict(os.environ, **extra), cwd="/", check=False)
        except OSError:
            continue
        if probe.returncode == 0:
            return python, extra, drop
    return None


def test_ordinary_user_submits_over_smtp_and_tempfails_when_down(make_mta):
    how = _as_nobody()
    if how is None:
        pytest.skip("needs root and a Python that the user nobody can run")
    python, extra, drop = how
    mta = make_mta(USERS)
    shared = Path(tempfile.mkdtemp(prefix="mailward-sendmail-"))
    try:
        shared.chmod(0o755)
        home = shared / "home"
        home.mkdir()
        home.chmod(0o777)
        config = shared / "mailward.toml"      # the spool stays in the test's 0700 folder
        config.write_text(mta.config.read_text().replace('directory = "spool"', f'directory = "{mta.spool}"'))
        config.chmod(0o644)
        env = dict(os.environ, MAILWARD_CONFIG=str(config), HOME=str(home), **extra)

        def run():
            return subprocess.run(python + ["-m", "mailward", "sendmail", "-v", "alice"],
                                  input=b"Subject: from nobody\n\nhi\n", capture_output=True, env=env,
                                  preexec_fn=drop, cwd=home, timeout=20, check=False)

        proc = run()
        assert proc.returncode == 0, proc.stderr
        assert "handed to the mailward server" in proc.stdout.decode()
        assert "(from nobody@localhost" not in mta.wait_message("alice", "from nobody")
        mailq = subprocess.run(python + ["-m", "mailward", "sendmail", "-bp"], capture_output=True, env=env,
                               preexec_fn=drop, cwd=home, timeout=20, check=False)
        assert mailq.returncode == 77 and "run it as root or as server.user" in one_line_error(mailq)
        mta.stop()
        proc = run()
        assert proc.returncode == 75 and "not taken" in one_line_error(proc)
        assert "from nobody" in (home / "dead.letter").read_text()
    finally:
        shutil.rmtree(shared, ignore_errors=True)


# ---- a real mail program ----------------------------------------------------------------------

def test_bsd_mailx_sends_through_our_sendmail(make_mta, tmp_path):
    mail = shutil.which("mail") or shutil.which("mailx")
    if not mail:
        pytest.skip("mail (Debian package bsd-mailx) is not installed")
    mta = make_mta(USERS)
    wrapper = tmp_path / "sendmail"
    wrapper.write_text(f"#!/bin/sh\nexec {sys.executable} -m mailward sendmail \"$@\"\n")
    wrapper.chmod(0o755)
    home = tmp_path / "home"
    home.mkdir()
    (home / ".mailrc").write_text(f"set sendmail={wrapper}\n")
    env = dict(os.environ, HOME=str(home), MAILWARD_CONFIG=str(mta.config))
    proc = subprocess.run([mail, "-s", "via mailx", "-c", "bob@localhost", "alice"], input=b"mailx body\n",
                          capture_output=True, env=env, timeout=20, check=False)
    assert proc.returncode == 0, proc.stderr
    for user in ("alice", "bob"):
        text = mta.wait_message(user, "via mailx")
        assert "Subject: via mailx" in text and "mailx body" in text


def test_root_gives_its_queue_file_to_the_spool_owner(make_mta):
    """A server that runs as server.user must read what root queued, whatever root's umask."""
    if os.geteuid() != 0:
        pytest.skip("needs root")
    nobody = pwd.getpwnam("nobody")
    mta = make_mta(USERS, start=False)
    for d in (mta.spool, mta.spool / "incoming", mta.spool / "queue"):
        d.mkdir(mode=0o700, exist_ok=True)
        os.chown(d, nobody.pw_uid, nobody.pw_gid)
    proc = sendmail(mta, "-v", "alice", stdin=b"Subject: umask\n\nx\n",
                    prog=["sh", "-c", f'umask 077; exec {sys.executable} -m mailward sendmail "$@"', "sendmail"])
    assert proc.returncode == 0, proc.stderr
    (qid,) = queue_files(mta)
    for path in message_files(mta, qid):
        st = os.stat(path)
        assert (st.st_uid, st.st_gid) == (nobody.pw_uid, nobody.pw_gid), path
