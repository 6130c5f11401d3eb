"""Local delivery that cannot mix mailboxes up.

A real ``mailward serve`` receives over smtplib (SMTPUTF8 where the address needs it) and
delivers into Maildirs: RCPT and delivery give the same answer for every local address (the
``üser`` case), addresses that used to share a folder land in distinct Maildirs, unknown
users get ``550 5.1.1`` at RCPT, and files a crash left in ``tmp/`` are cleaned. Before them,
truth tables for the name mapping and for who exists, and a property test that the mapping
is reversible (so no two mailboxes can share a folder).
"""

from __future__ import annotations

import os
import re
import smtplib
import socket
import subprocess
import sys
import time

import pytest
from hypothesis import given, settings, strategies as st

from mailward.config import from_dict
from mailward.deliver import maildir
from mailward.deliver.aliases import AliasTable
from mailward.deliver.maildir import Mailboxes, mailbox_name

# local.accept_unknown_users opens every local part (the test fixtures' default unless a test
# lists its users); each test here says which it wants.
OPEN = {"accept_unknown_users": True}
CLOSED = {"accept_unknown_users": False}


# ---- the name of each mailbox -------------------------------------------------------------------

NAMES = [
    # address as RCPT gives it        folder under the Maildir root (None: refused)
    ("user@localhost",                "user"),
    ("first.last@localhost",          "first.last"),
    ("User@LOCALHOST",                "user"),            # ASCII case is folded, as before
    ("user+list@localhost",           "user"),            # sub-address: the user's own mailbox
    ('"user"@localhost',              "user"),            # RFC 5322 §3.2.4: same as user
    ("_ser@localhost",                "_ser"),
    ("üser@localhost",                "%C3%BCser"),
    ("éser@localhost",                "%C3%A9ser"),
    ("Üser@localhost",                "%C3%9Cser"),       # no Unicode case folding
    ('"."@localhost',                 "%2E"),
    ('".."@localhost',                "%2E."),
    ('".hidden"@localhost',           "%2Ehidden"),
    ('"a b"@localhost',               "a%20b"),
    ('"a/b"@localhost',               "a%2Fb"),
    ("a_b@localhost",                 "a_b"),
    ("a%2Fb@localhost",               "a%252fb"),         # a "%" is escaped too
    ('"a\\"b"@localhost',             "a%22b"),
    ("+x@localhost",                  "%2Bx"),
    ("postmaster",                    "postmaster"),
    ('""@localhost',                  None),
]


@pytest.mark.parametrize("address, name", NAMES)
def test_mailbox_names(address, name):
    assert mailbox_name(address) == name


def unescape(name: str) -> str:
    return re.sub(rb"%([0-9A-F]{2})", lambda m: bytes([int(m[1], 16)]), name.encode()).decode("utf-8",
                                                                                            "surrogatepass")


@settings(max_examples=300, deadline=None)
@given(st.text(min_size=1, max_size=64).filter(lambda t: "+" not in t and len(t.encode()) <= 64))
def test_a_name_gives_back_its_local_part(local):
    """The mapping is reversible, hence injective: two local parts never share a folder.
    (Local parts have at most 64 octets, RFC 5321 §4.5.3.1.1; longer names may be refused.)"""
    name = mailbox_name(f"{local}@x")
    assert name is not None and name not in ("", ".", "..") and "/" not in name and name[0] != "."
    assert name.isascii() and not re.search("[A-Z]", re.sub("%[0-9A-F]{2}", "", name))
    assert unescape(name) == maildir.local_part(f"{local}@x")


# ---- who exists -----------------------------------------------------------------------------------

def test_who_exists(tmp_path):
    root = tmp_path / "maildir"
    (root / "kept").mkdir(parents=True)
    (tmp_path / "aliases").write_text("team: alice, bob@remote.example\nbob: bob, bob@backup.example\n")
    aliases = AliasTable(tmp_path / "aliases")
    strict = Mailboxes(root, ["üser", "Carol"], aliases)
    table = [
        # address                   alias  mailbox
        ("üser@localhost",          False, "%C3%BCser"),
        ("carol+x@localhost",       False, "carol"),
        ("team@localhost",          True,  None),          # an alias: expanded, not stored
        ("alice@localhost",         False, "alice"),       # a local target of an alias
        ("bob@localhost",           True,  "bob"),         # both: its own alias keeps a copy here
        ("kept@localhost",          False, "kept"),        # the folder exists already
        ("Postmaster@localhost",    False, "postmaster"),  # RFC 5321 §4.5.1
        ("postmaster",              False, "postmaster"),
        ("_ser@localhost",          False, None),
        ("nobody@localhost",        False, None),
        ('""@localhost',            False, None),
    ]
    for address, alias, mailbox in table:
        assert (strict.find(address).alias, strict.find(address).mailbox) == (alias, mailbox), address
    assert not strict.find("nobody@localhost").exists and strict.find("team@localhost").exists
    open_ = Mailboxes(root, [], aliases, accept_unknown=True)
    assert open_.find("nobody@localhost").mailbox == "nobody"
    assert open_.find('"a/b"@localhost').mailbox == "a%2Fb"
    assert not open_.find('""@localhost').exists           # no folder can be named for it


# ---- end to end ---------------------------------------------------------------------------------

MESSAGE = b"From: <a@example.org>\r\nSubject: local\r\n\r\nHello.\r\n"


def transaction(mta, rcpts, *, utf8=False):
    """MAIL, one RCPT per address, DATA if any was accepted: ({rcpt: (code, text)}, data reply)."""
    with smtplib.SMTP(mta.host, mta.port, timeout=10) as s:
        s.ehlo("client.test")
        assert s.mail("a@example.org", ["SMTPUTF8"] if utf8 else [])[0] == 250
        replies = {}
        for rcpt in rcpts:
            code, text = s.rcpt(rcpt)
            replies[rcpt] = (code, text.decode("utf-8"))
        data = s.data(MESSAGE) if any(code == 250 for code, _ in replies.values()) else None
    return replies, data


def folders(mta) -> set[str]:
    return {p.name for p in mta.maildir.iterdir()} if mta.maildir.exists() else set()


def test_rcpt_and_delivery_agree_on_a_utf8_user(make_mta):
    """The issue's case: RCPT accepted üser@localhost and delivery bounced it as unknown."""
    mta = make_mta({"local": {"domains": ["localhost"], "users": ["üser"], **CLOSED}})
    replies, data = transaction(mta, ["üser@localhost", "Üser@localhost", "user@localhost"], utf8=True)
    assert replies["üser@localhost"][0] == 250
    assert replies["Üser@localhost"] == (550, "5.1.1 <Üser@localhost>... User unknown")
    assert replies["user@localhost"] == (550, "5.1.1 <user@localhost>... User unknown")
    assert data[0] == 250
    (path,) = mta.wait_mail("%C3%BCser")
    assert "Delivered-To: üser@localhost\n" in path.read_text(encoding="utf-8")
    log = mta.wait_log("stat=Sent")
    assert "to=<üser@localhost>" in log and "dsn=5.1.1" not in log
    assert folders(mta) == {"%C3%BCser"}


def test_postmaster_always_exists(make_mta):
    mta = make_mta({"local": {"domains": ["localhost"], "users": ["someone"], **CLOSED}})
    replies, data = transaction(mta, ["Postmaster", "POSTMASTER@localhost", "postmaster+x@localhost"])
    assert [code for code, _ in replies.values()] == [250, 250, 250] and data[0] == 250
    files = mta.wait_mail("postmaster", count=3)
    assert sorted(p.read_text().split("\n")[1] for p in files) == [
        "Delivered-To: POSTMASTER@localhost", "Delivered-To: postmaster", "Delivered-To: postmaster+x@localhost"]
    assert folders(mta) == {"postmaster"}


FOLDED = {   # address: its folder (each used to share one with another line of this table)
    "üser@localhost": "%C3%BCser", "éser@localhost": "%C3%A9ser", "_ser@localhost": "_ser",
    '"."@localhost': "%2E", '".."@localhost': "%2E.",
    '"a b"@localhost': "a%20b", '"a/b"@localhost': "a%2Fb", "a_b@localhost": "a_b",
}


def test_addresses_that_used_to_fold_land_in_distinct_maildirs(make_mta):
    mta = make_mta({"local": {"domains": ["localhost"], **OPEN}})
    replies, data = transaction(mta, [*FOLDED, '""@localhost'], utf8=True)
    assert all(replies[a][0] == 250 for a in FOLDED), replies
    assert replies['""@localhost'] == (550, '5.1.1 <""@localhost>... User unknown')
    assert data[0] == 250
    for address, folder in FOLDED.items():
        (path,) = mta.wait_mail(folder)
        assert f"Delivered-To: {address}\n" in path.read_text(encoding="utf-8")
    assert folders(mta) == set(FOLDED.values())
    assert not (mta.maildir / "tmp").exists() and not (mta.maildir / "new").exists()


def test_unknown_users_are_refused_at_rcpt(make_mta, tmp_path):
    aliases = tmp_path / "aliases"
    aliases.write_text("team: alice, carol\n")
    mta = make_mta({"local": {"domains": ["localhost", "mx.test"], "users": ["bob"], "aliases": str(aliases),
                             **CLOSED}},
                   start=False)
    (mta.maildir / "dave" / "new").mkdir(parents=True)        # a Maildir that is already there
    mta.start()
    known = ["bob@localhost", "Bob+news@mx.test", "team@localhost", "alice@localhost", "dave@localhost"]
    unknown = ["eve@localhost", "user@mx.test", '"bob "@localhost', "b%6Fb@localhost"]
    replies, data = transaction(mta, known + unknown)
    for address in known:
        assert replies[address][0] == 250, (address, replies[address])
    for address in unknown:
        assert replies[address] == (550, f"5.1.1 <{address}>... User unknown")
    assert data[0] == 250
    for user, count in (("bob", 2), ("alice", 2), ("carol", 1), ("dave", 1)):
        mta.wait_mail(user, count=count)
    assert folders(mta) == {"bob", "alice", "carol", "dave"}
    assert "dsn=5.1.1" not in mta.log_text()
    assert re.search(r"reject=550 5\.1\.1 <eve@localhost>\.\.\. User unknown", mta.log_text())


def test_by_default_only_known_users_exist(make_mta):
    assert from_dict({}).local.accept_unknown_users is False
    # the default, written out: the test fixtures accept made-up users unless told otherwise
    mta = make_mta({"local": {"domains": ["localhost"], **CLOSED}}, start=False)
    (mta.maildir / "user").mkdir(parents=True)
    mta.start()
    replies, data = transaction(mta, ["user@localhost", "root@localhost", "postmaster"])
    assert replies["root@localhost"] == (550, "5.1.1 <root@localhost>... User unknown")
    assert replies["user@localhost"][0] == replies["postmaster"][0] == 250
    assert data[0] == 250
    mta.wait_mail("user")
    mta.wait_mail("postmaster")


def dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_tmp_files_left_by_a_crash_are_cleaned(make_mta):
    mta = make_mta({"local": {"domains": ["localhost"], **OPEN}}, start=False)
    host = socket.gethostname().replace("/", "\\057").replace(":", "\\072")
    tmp = mta.maildir / "old" / "tmp"
    tmp.mkdir(parents=True)
    for sub in ("new", "cur"):
        (mta.maildir / "old" / sub).mkdir()
    now = time.time()
    crashed = tmp / f"1790000000.Q123R0.{host}.T{dead_pid()}_0badc0de_1"       # our host, writer gone
    stale = tmp / "1700000000.M1P99_0.elsewhere.example"                     # any writer, 37 hours old
    fresh = tmp / "1790000000.M1P99_0.elsewhere.example"                     # someone else's, recent
    alive = tmp / f"1790000000.Q124R0.{host}.T{os.getpid()}_0badc0de_2"      # its writer still runs
    other_host = tmp / "1790000000.Q125R0.other.example.T1_0badc0de_3"      # another machine's
    for path in (crashed, stale, fresh, alive, other_host):
        path.write_bytes(b"Subject: half written\n")
    os.utime(stale, (now - 37 * 3600, now - 37 * 3600))
    mta.start()
    assert crashed.exists()                       # nothing is cleaned before a delivery
    replies, data = transaction(mta, ["old@localhost"])
    assert data[0] == 250
    mta.wait_mail("old")
    log = mta.wait_log("tmp_removed=2")
    assert "reason=left by a crash, older than 36 hours" in log
    assert sorted(p.name for p in tmp.iterdir()) == sorted(p.name for p in (fresh, alive, other_host))
    # a second delivery soon after does not sweep again (at most every 6 hours)
    for path in (crashed, stale):
        path.write_bytes(b"x")
    os.utime(stale, (now - 37 * 3600, now - 37 * 3600))
    transaction(mta, ["old@localhost"])
    mta.wait_mail("old", count=2)
    assert crashed.exists() and stale.exists() and mta.log_text().count("tmp_removed=") == 1


def test_sweep_keeps_what_it_must(tmp_path):
    """Unit view of the sweep: folders behind symbolic links are not entered, only regular
    files go, and this run's own files go only by age."""
    root = tmp_path / "maildir"
    outside = tmp_path / "outside"
    outside.mkdir()
    victim = outside / "precious"
    victim.write_text("keep")
    os.utime(victim, (0, 0))
    (root / "box" / "tmp").mkdir(parents=True)
    os.symlink(outside, root / "link")
    (root / "viatmp").mkdir()
    os.symlink(outside, root / "viatmp" / "tmp")
    mine = root / "box" / "tmp" / f"1.Q1R0.{maildir._HOST}.T{os.getpid()}_{maildir._RUN}_1"
    mine.write_text("being written")
    os.utime(mine, (0, 0))   # even "old": the age rule still applies to our own
    (root / "box" / "tmp" / "sub").mkdir()
    os.utime(root / "box" / "tmp" / "sub", (0, 0))
    assert maildir.sweep(root) == 1 and not mine.exists()
    assert victim.exists() and (root / "box" / "tmp" / "sub").is_dir()
    mine.write_text("being written")
    assert maildir.sweep(root) == 0 and mine.exists()
    assert maildir.sweep(tmp_path / "missing") == 0
