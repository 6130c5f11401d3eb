"""The log spool (spool.format = "log") on the real file system: what a reader, the queue
commands and the next start see after writes, removals, a torn or damaged segment, a
compaction and a writer killed with SIGKILL.

Writers that must be gone (a sealed segment) run in child processes, as a worker does."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest

from mailward.spool.store import Envelope, Recipient, Spool, new_queue_id
from mailward.spool.logwriter import SPILL

ROOT = Path(__file__).resolve().parents[2]


def message(spool: Spool, body: bytes, rcpts: int = 1) -> str:
    env = Envelope(new_queue_id(), "sender@example.test", {"BODY": "8BITMIME"},
                   [Recipient(f"r{i}@example.test", {}) for i in range(rcpts)], time.time(),
                   client_name="client.test", client_addr="127.0.0.1", helo="client.test")
    incoming = spool.begin(env)
    for i in range(0, len(body), 65536):
        incoming.write(body[i:i + 65536])
    spool.commit(incoming)
    return env.queue_id


def body(n: int, tag: str = "x") -> bytes:
    head = f"Subject: {tag}\r\n\r\n".encode()
    return head + (tag.encode() * n)[:n] + b"\r\n"


def child_writes(spool_dir: Path, sizes: list[int], extra: str = "") -> list[str]:
    """Write messages from another process (its segment is sealed when it exits); their ids."""
    code = textwrap.dedent(f"""
        import sys, time
        sys.path.insert(0, {str(ROOT)!r})
        from tests.spool.test_log_store import message, body
        from mailward.spool.store import Spool
        spool = Spool({str(spool_dir)!r}, fsync=True, format="log"{extra})
        for i, n in enumerate({sizes!r}):
            print(message(spool, body(n, f"m{{i}}")), flush=True)
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    return out.stdout.split()


def segments(spool_dir: Path) -> list[str]:
    """The segments (not the hidden .reserve)."""
    return sorted(n for n in os.listdir(spool_dir / "log") if not n.startswith("."))


def test_messages_round_trip_and_every_spool_reads_both_formats(tmp_path):
    log = Spool(tmp_path, format="log")
    small = message(log, body(4000, "small"), rcpts=3)
    big = message(log, body(SPILL * 3 + 17, "big"))      # spills to incoming/ while received
    files = Spool(tmp_path)                                # the queue commands' default spool
    old = message(files, body(100, "file"))
    for spool in (log, Spool(tmp_path), Spool(tmp_path, format="log")):
        assert spool.ids() == sorted([small, big, old])
        env = spool.load(small)
        assert [r.address for r in env.recipients] == [f"r{i}@example.test" for i in range(3)]
        assert env.sender_params == {"BODY": "8BITMIME"} and env.content_size == len(body(4000, "small"))
        assert b"".join(spool.content(small)) == body(4000, "small")
        assert b"".join(spool.content(big, 1000)) == body(SPILL * 3 + 17, "big")
        assert b"".join(spool.content(old)) == body(100, "file")
        assert spool.exists(big) and not spool.exists("NOSUCHMESSAGE1")
    log.record(small, 0, "deferred", "removed", 1)         # a reply text is not a removal
    log.record(small, 1, "deferred", '{"removed": true}', 1)
    assert small in Spool(tmp_path).ids() and Spool(tmp_path).exists(small)
    assert os.listdir(tmp_path / "incoming") == []        # the spill file went into the segment
    assert (tmp_path / "queue" / old).exists() and not (tmp_path / "queue" / small).exists()


def test_one_fdatasync_covers_every_message_waiting(tmp_path):
    spool = Spool(tmp_path, format="log", log_sync="thread")
    writer = spool.log.writer
    envs, futures = [], []
    with writer.lock:                       # the thread takes the first message and waits here
        for i in range(20):
            env = Envelope(new_queue_id(), "s@example.test", {}, [Recipient("r@example.test", {})], time.time())
            inc = spool.begin(env)
            inc.write(body(4096, str(i)))
            futures.append(spool.sync_async(inc))
            envs.append(inc)
            if i == 0:
                deadline = time.time() + 5
                while writer._waiting and time.time() < deadline:
                    time.sleep(0.001)
    for f in futures:
        f.result(10)
    assert spool.publish(envs) == [None] * 20
    assert (writer.batches, writer.commits) == (2, 20)
    assert len(Spool(tmp_path).ids()) == 20


def test_a_torn_or_damaged_record_ends_the_segment(tmp_path):
    ids = child_writes(tmp_path, [3000, 3000, 3000])
    (seg,) = segments(tmp_path)
    path = tmp_path / "log" / seg
    size = path.stat().st_size
    os.truncate(path, size - 100)                   # the last write torn by a crash
    assert Spool(tmp_path).ids() == sorted(ids[:2])
    data = bytearray(path.read_bytes())
    pos = data.index(b"m1m1m1")                     # one bit of the second message's text
    data[pos] ^= 1
    path.write_bytes(bytes(data))
    assert Spool(tmp_path).ids() == ids[:1]
    assert b"".join(Spool(tmp_path).content(ids[0])) == body(3000, "m0")


def test_removed_messages_go_and_their_segment_is_deleted_once_sealed(tmp_path):
    live = Spool(tmp_path, format="log")
    mine = message(live, body(500, "mine"))          # this process's segment stays open
    ids = child_writes(tmp_path, [1000, 2000, 3000])
    assert len(segments(tmp_path)) == 2
    spool = Spool(tmp_path)
    spool.record(ids[0], 0, "delivered", "250 ok", 1)
    for qid in ids:
        spool.remove(qid)
        assert qid not in Spool(tmp_path).ids() and not spool.exists(qid)
    assert segments(tmp_path) == [live.log.writer.active()]
    assert sorted(os.listdir(tmp_path / "queue")) == []
    live.remove(mine)
    assert Spool(tmp_path).ids() == []
    assert segments(tmp_path) == [live.log.writer.active()]   # open: kept until sealed
    live.log.writer.seal()
    Spool(tmp_path).recover()
    assert segments(tmp_path) == [] and os.listdir(tmp_path / "queue") == []


def test_compaction_moves_a_deferred_message_forward(tmp_path):
    ids = child_writes(tmp_path, [4000] * 6)
    (old,) = segments(tmp_path)
    spool = Spool(tmp_path, format="log", compact_after=0)
    for qid in ids[1:]:
        spool.remove(qid)
    spool.record(ids[0], 0, "deferred", "451 try later", 2)
    spool.hold(ids[0])
    assert segments(tmp_path) == [old]               # ids[0] pins it
    assert spool.log.compact() == 1
    assert old not in segments(tmp_path) and len(segments(tmp_path)) == 1
    for reader in (spool, Spool(tmp_path)):
        assert reader.ids() == ids[:1]
        env = reader.load(ids[0])
        assert (env.recipients[0].state, env.recipients[0].attempts) == ("deferred", 2)
        assert b"".join(reader.content(ids[0])) == body(4000, "m0")
        assert reader.held(ids[0])
    assert sorted(os.listdir(tmp_path / "queue")) == [f"{ids[0]}.hold", f"{ids[0]}.status"]


def test_recover_drops_leftovers_and_keeps_what_is_queued(tmp_path):
    ids = child_writes(tmp_path, [100, 100])
    spool = Spool(tmp_path)
    spool.record(ids[0], 0, "deferred", "451", 1)
    (tmp_path / "log" / ".tmp-ABANDONED-0001").write_bytes(b"MAILWARD-LOG 1\n\0" + b"\0" * 16)
    (tmp_path / "incoming" / "HALFRECEIVED01").write_bytes(b"x" * 10)      # a spill of a dead session
    (tmp_path / "queue" / "GONEGONEGONE01.status").write_text('{"rcpt": 0, "state": "delivered"}\n')
    assert Spool(tmp_path, format="log").recover() == 1
    assert os.listdir(tmp_path / "incoming") == []
    assert not (tmp_path / "log" / ".tmp-ABANDONED-0001").exists()
    assert sorted(os.listdir(tmp_path / "queue")) == [f"{ids[0]}.status"]
    assert Spool(tmp_path).ids() == sorted(ids)


WRITER = """
import sys
sys.path.insert(0, {root!r})
from tests.spool.test_log_store import message, body
from mailward.spool.store import Spool
import threading
spool = Spool({spool!r}, fsync=True, format="log")
lock = threading.Lock()
def session(n):
    i = 0
    while True:
        qid = message(spool, body(2000 + 97 * (i % 50), f"{{n}}-{{i}}"))
        with lock:
            print(qid, f"{{n}}-{{i}}", flush=True)    # the "250": only after commit returned
        i += 1
threads = [threading.Thread(target=session, args=(n,), daemon=True) for n in range(4)]
for t in threads:
    t.start()
threads[0].join()
"""


@pytest.mark.parametrize("round_", range(3))
def test_sigkill_of_a_writer_loses_nothing_acknowledged(tmp_path, round_):
    acked: dict[str, str] = {}
    for kill in range(3):
        proc = subprocess.Popen([sys.executable, "-c", WRITER.format(root=str(ROOT), spool=str(tmp_path))],
                                stdout=subprocess.PIPE, text=True)
        lines: list[str] = []
        reader = threading.Thread(target=lambda: lines.extend(proc.stdout), daemon=True)
        reader.start()
        time.sleep(0.4 + 0.2 * kill + 0.1 * round_)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        reader.join(5)
        for line in lines:
            if line.endswith("\n"):
                qid, tag = line.split()
                acked[qid] = tag
        Spool(tmp_path, format="log").recover()
    assert len(acked) > 20
    spool = Spool(tmp_path)
    queued = set(spool.ids())
    assert set(acked) <= queued
    for qid, tag in acked.items():
        n, i = tag.split("-")
        assert b"".join(spool.content(qid)) == body(2000 + 97 * (int(i) % 50), tag)


def test_one_process_reads_while_its_commit_thread_appends(tmp_path):
    """workers = 1: the runner lists and loads on the event loop while the commit thread adds."""
    spool = Spool(tmp_path, format="log", segment_size=65536)     # several segments on the way
    spool.ids()                                                     # this process reads its log
    written: list[str] = []
    errors: list[BaseException] = []

    def write(n: int) -> None:
        try:
            for i in range(60):
                written.append(message(spool, body(1500, f"{n}-{i}")))
        except BaseException as err:      # noqa: BLE001 - reported below
            errors.append(err)

    threads = [threading.Thread(target=write, args=(n,)) for n in range(3)]
    for t in threads:
        t.start()
    seen: set[str] = set()
    while any(t.is_alive() for t in threads):
        for qid in spool.ids():
            seen.add(qid)
            assert spool.load(qid).queue_id == qid
    for t in threads:
        t.join()
    assert errors == []
    assert sorted(spool.ids()) == sorted(written) and len(written) == 180
    assert len(segments(tmp_path)) > 1
    for qid in written[::2]:
        spool.remove(qid)
    assert Spool(tmp_path).ids() == sorted(written[1::2])


def test_an_idle_writer_closes_its_segment(tmp_path, monkeypatch):
    from mailward.spool import logwriter

    monkeypatch.setattr(logwriter, "IDLE_SEAL", 0.2)
    spool = Spool(tmp_path, format="log")
    qid = message(spool, body(100))
    (seg,) = segments(tmp_path)
    deadline = time.time() + 5
    while spool.log.writer.active() and time.time() < deadline:
        time.sleep(0.05)
    assert spool.log.writer.active() == ""
    spool.remove(qid)                        # the last message of a sealed segment: retired
    assert segments(tmp_path) == [] and os.listdir(tmp_path / "queue") == []
    second = message(spool, body(100))       # a new segment for what comes next
    assert segments(tmp_path) != [seg] and Spool(tmp_path).ids() == [second]


def test_a_crash_before_the_removal_leaves_a_settled_message_that_is_removed_again(tmp_path):
    """Every recipient's final state is fsynced before the removal is journaled: a crash in
    between brings the message back with every recipient final, and the runner removes it at
    start (deliver/runner.py, _due_from_history)."""
    spool = Spool(tmp_path, format="log")
    qid = message(spool, body(100), rcpts=2)
    spool.record(qid, 0, "delivered", "250 ok", 1)
    spool.record(qid, 1, "bounced", "550 no", 1)
    again = Spool(tmp_path)
    assert again.ids() == [qid]
    assert [r.state for r in again.load(qid).recipients] == ["delivered", "bounced"]
    again.remove(qid)
    assert Spool(tmp_path).ids() == [] and spool.ids() == [] and not spool.exists(qid)


def test_a_removal_is_a_journal_line_and_the_message_files_go_at_once(tmp_path):
    """remove(): the queue id goes to log/.removed-SEGMENT (fdatasynced) and the message's
    status and hold files are unlinked then, not when the segment is retired; a reader in
    another process sees the removal; a line torn by a crash is no removal; a status file's
    removal line (the form before the journal) still counts."""
    ids = child_writes(tmp_path, [100, 100, 100, 100])
    (seg,) = segments(tmp_path)
    spool = Spool(tmp_path)
    spool.record(ids[0], 0, "deferred", "451 later", 1)
    spool.hold(ids[0])
    spool.remove(ids[0])
    journal = tmp_path / "log" / f".removed-{seg}"
    assert journal.read_bytes() == f"\n{ids[0]}\n".encode()
    assert os.listdir(tmp_path / "queue") == []
    assert Spool(tmp_path).ids() == ids[1:] and not Spool(tmp_path).exists(ids[0])
    with open(journal, "ab") as f:                          # an append torn by a crash...
        f.write(ids[1][:9].encode())
    assert Spool(tmp_path).ids() == ids[1:]
    spool.remove(ids[2])                                    # ...spoils no later line
    assert Spool(tmp_path).ids() == [ids[1], ids[3]]
    (tmp_path / "queue" / f"{ids[3]}.status").write_bytes(b'{"removed": true, "at": 1}\n')
    assert Spool(tmp_path).ids() == [ids[1]]
    spool.remove(ids[1])
    assert segments(tmp_path) == [] and not journal.exists() and os.listdir(tmp_path / "queue") == []


def test_a_removal_journaled_beside_a_compaction_copy_follows_the_copy(tmp_path):
    """A message removed while a compaction copies it forward may be journaled for the old
    segment only: retiring that segment carries the removal into the copy's journal, so the
    copy does not come back at the next start."""
    ids = child_writes(tmp_path, [4000] * 4)
    (old,) = segments(tmp_path)
    spool = Spool(tmp_path, format="log", compact_after=0)
    for qid in ids[1:]:
        spool.remove(qid)
    spool.log._copy_forward(old, [(ids[0], spool.log.index.where[ids[0]])])     # the copy is made...
    spool.log.writer.seal()
    (new,) = set(segments(tmp_path)) - {old}
    spool.log._journal_append(old, [ids[0]])                # ...while the removal names the old segment
    assert Spool(tmp_path).ids() == []
    assert spool.log.retire(old, set())
    assert segments(tmp_path) == [new] and not (tmp_path / "log" / f".removed-{old}").exists()
    assert (tmp_path / "log" / f".removed-{new}").read_bytes() == f"\n{ids[0]}\n".encode()
    fresh = Spool(tmp_path)
    fresh.recover()
    assert fresh.ids() == [] and segments(tmp_path) == []


def test_recover_drops_the_journal_of_a_retired_segment(tmp_path):
    """A crash after a segment was unlinked and before its journal was: the next start
    deletes the journal (its segment's messages are all gone)."""
    ids = child_writes(tmp_path, [100])
    (seg,) = segments(tmp_path)
    (tmp_path / "log" / ".removed-GONE-0001").write_bytes(b"\nAAAAAAAAAAAAAA\n")
    Spool(tmp_path).recover()
    assert not (tmp_path / "log" / ".removed-GONE-0001").exists()
    assert Spool(tmp_path).ids() == ids and segments(tmp_path) == [seg]


@pytest.fixture
def small_fs(tmp_path):
    mnt = tmp_path / "spoolfs"
    mnt.mkdir()
    if os.geteuid() != 0 or subprocess.run(["mount", "-t", "tmpfs", "-o", "size=512k", "tmpfs", str(mnt)],
                                           capture_output=True).returncode != 0:
        pytest.skip("needs root to mount a small tmpfs")
    yield mnt
    subprocess.run(["umount", "-l", str(mnt)], capture_output=True)


def test_a_full_file_system_fails_the_batch_and_delivery_can_still_free_it(small_fs):
    spool = Spool(small_fs, format="log")
    before = message(spool, body(2000, "before"))
    assert (small_fs / "log" / ".reserve").stat().st_blocks > 0
    for size in [150_000] * 10:                       # one of them does not fit any more
        try:
            message(spool, body(size, "big"))
        except OSError as err:
            assert err.errno == 28                       # ENOSPC: the session answers 452 4.3.1
            break
    else:
        pytest.fail("the file system never filled up")
    assert os.listdir(small_fs / "incoming") == []
    listed = Spool(small_fs).ids()
    assert before in listed and len(listed) >= 2
    for qid in listed:                                    # everything listed reads back whole
        assert len(b"".join(Spool(small_fs).content(qid))) == Spool(small_fs).load(qid).content_size
    with pytest.raises(OSError):                          # still full: nothing new fits
        message(spool, body(150_000, "more"))
    for qid in listed:                                    # delivery removes them: the reserve
        spool.record(qid, 0, "delivered", "250 ok", 1)    # makes room for the status lines,
        spool.remove(qid)                                 # retiring the segment frees the rest
    assert Spool(small_fs).ids() == []
    assert [n for n in os.listdir(small_fs / "log") if not n.startswith(".")] == []
    after = message(spool, body(2000, "after"))
    assert Spool(small_fs).ids() == [after]
    assert b"".join(Spool(small_fs).content(after)) == body(2000, "after")


def test_log_sync_loop_writes_and_syncs_in_publish(tmp_path):
    """spool.log_sync = "loop": nothing is in the segment until publish, which appends and
    syncs the batch in the caller's thread (the event loop, right before the 250s)."""
    spool = Spool(tmp_path, format="log", log_sync="loop")
    incs = []
    for i in range(3):
        env = Envelope(new_queue_id(), "s@example.test", {}, [Recipient("r@example.test", {})], time.time())
        inc = spool.begin(env)
        inc.write(body(3000, str(i)))
        assert spool.sync_async(inc).result(0) is None
        incs.append(inc)
    assert Spool(tmp_path).ids() == []
    batches = spool.log.writer.batches
    assert spool.publish(incs) == [None, None, None]
    assert spool.log.writer.batches == batches + 1
    assert Spool(tmp_path).ids() == sorted(i.envelope.queue_id for i in incs)
    assert b"".join(Spool(tmp_path).content(incs[2].envelope.queue_id)) == body(3000, "2")


def test_the_spool_section_chooses_the_format(tmp_path):
    from mailward.config import default_config_text, load

    path = tmp_path / "mailward.toml"
    path.write_text(default_config_text({"spool": {"directory": str(tmp_path / "spool"), "format": "log",
                                                   "log_sync": "loop", "segment_size": 1 << 20}}))
    spool = Spool.from_settings(load(path).spool)
    assert (spool.format, spool.log.sync_in, spool.log.segment_size) == ("log", "loop", 1 << 20)
    qid = message(spool, body(100))
    assert segments(tmp_path / "spool") and Spool(tmp_path / "spool").ids() == [qid]
    plain = tmp_path / "plain.toml"
    plain.write_text(default_config_text({"spool": {"directory": str(tmp_path / "other")}}))
    assert Spool.from_settings(load(plain).spool).format == "log"     # the default
    plain.write_text(default_config_text({"spool": {"directory": str(tmp_path / "other"), "format": "files"}}))
    assert Spool.from_settings(load(plain).spool).format == "files"


def test_a_removal_racing_a_compaction_in_the_same_process_stays_removed(tmp_path, monkeypatch):
    """A settle thread has picked the segments of a message (only the old one) when a
    compaction copies it forward and retires the old segment: the removal still reaches the
    copy's journal (the removal sees its segment gone and looks again)."""
    from mailward.spool import logstore

    victim, _, filler = child_writes(tmp_path, [100, 100, 200_000])
    spool = Spool(tmp_path, format="log", compact_after=0)
    spool.ids()
    spool.remove(filler)
    append = logstore.LogStore._journal_append
    armed = [True]

    def compaction_first(self, name, qids):
        if qids == [victim] and armed[0]:
            armed[0] = False
            spool.log.compact(now=time.time() + 10)
        return append(self, name, qids)

    monkeypatch.setattr(logstore.LogStore, "_journal_append", compaction_first)
    spool.remove(victim)
    monkeypatch.setattr(logstore.LogStore, "_journal_append", append)
    assert victim not in spool.ids()
    fresh = Spool(tmp_path, format="log")
    fresh.recover()
    assert victim not in fresh.ids() and len(fresh.ids()) == 1


def test_a_removal_by_another_process_during_a_retirement_is_carried(tmp_path, monkeypatch):
    """`mailward queue delete` (another process, whose index knows only the old segment)
    journals its removal there right after the server's compaction copied the message and
    unlinked the old segment: the server carries it to the copy before dropping the journal."""
    from mailward.spool import logstore

    victim, _, filler = child_writes(tmp_path, [100, 100, 200_000])
    server = Spool(tmp_path, format="log", compact_after=0)
    server.ids()
    server.remove(filler)
    (old,) = segments(tmp_path)
    cli = Spool(tmp_path, format="log")
    assert cli.exists(victim)
    append, fsync_dir = logstore.LogStore._journal_append, logstore.fsync_dir

    def cli_append(self, name, qids):
        if self is not cli.log:
            return append(self, name, qids)

        def after_the_unlink(path):
            fsync_dir(path)
            if not (tmp_path / "log" / old).exists() and armed:
                armed.clear()
                append(self, name, qids)           # the CLI's append lands now
        armed = [True]
        monkeypatch.setattr(logstore, "fsync_dir", after_the_unlink)
        server.log.compact(now=time.time() + 10)
        monkeypatch.setattr(logstore, "fsync_dir", fsync_dir)

    monkeypatch.setattr(logstore.LogStore, "_journal_append", cli_append)
    cli.remove(victim)
    monkeypatch.setattr(logstore.LogStore, "_journal_append", append)
    assert old not in segments(tmp_path)
    assert victim not in server.ids()
    fresh = Spool(tmp_path, format="log")
    fresh.recover()
    assert victim not in fresh.ids() and len(fresh.ids()) == 1


def test_recover_carries_an_orphan_journal_to_the_copy(tmp_path):
    """A crash inside a retirement after the old segment was unlinked and before its
    journal's removals reached the copy's: the next start carries them, then drops it."""
    ids = child_writes(tmp_path, [4000] * 3)
    (old,) = segments(tmp_path)
    spool = Spool(tmp_path, format="log", compact_after=0)
    spool.ids()
    spool.log._copy_forward(old, [(ids[0], spool.log.index.where[ids[0]])])
    spool.log.writer.seal()
    journal = tmp_path / "log" / f".removed-{old}"
    journal.write_bytes("".join(f"\n{q}\n" for q in ids).encode())     # all removed, journaled here
    (tmp_path / "log" / old).unlink()                      # the crash: the journal is left
    fresh = Spool(tmp_path)
    fresh.recover()
    assert not journal.exists() and fresh.ids() == [] and Spool(tmp_path).ids() == []
