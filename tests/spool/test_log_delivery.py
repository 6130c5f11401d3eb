"""Delivering from the log spool: what the settling threads and another process see.

The runner settles results in several threads at once (record, then remove); each removal of
a sealed segment's message looks only at the next message still queued there, and the last
one retires the segment. A removal made by another process (``mailward queue delete``) is
seen by this one at its next ``exists``/``load``."""

from __future__ import annotations

import os
import threading

import pytest

from mailward.spool.store import Spool
from tests.spool.test_log_store import body, child_writes, message, segments


def test_threads_settling_one_segment_at_once_retire_it_once(tmp_path):
    ids = child_writes(tmp_path, [1500 + i for i in range(60)])    # sealed: its writer is gone
    assert len(segments(tmp_path)) == 1
    spool = Spool(tmp_path)
    todo = list(ids)
    lock = threading.Lock()
    errors: list[BaseException] = []

    def settle() -> None:
        try:
            while True:
                with lock:
                    if not todo:
                        return
                    qid = todo.pop()
                assert spool.exists(qid) and spool.load(qid).recipients[0].state == "queued"
                spool.record(qid, 0, "delivered", "Sent (250 ok)", 1)
                spool.remove(qid)
        except BaseException as err:      # noqa: BLE001 - reported below
            errors.append(err)

    threads = [threading.Thread(target=settle) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert errors == []
    assert segments(tmp_path) == []                     # retired by the last removal
    assert os.listdir(tmp_path / "queue") == []         # and the status files with it
    assert Spool(tmp_path).ids() == []


def test_the_last_queued_message_keeps_its_segment(tmp_path):
    ids = child_writes(tmp_path, [1000, 2000, 3000, 4000])
    spool = Spool(tmp_path)
    deferred = ids[2]
    spool.record(deferred, 0, "deferred", "451 try later", 1)
    for qid in ids:
        if qid != deferred:
            spool.record(qid, 0, "delivered", "Sent", 1)
            spool.remove(qid)
    assert len(segments(tmp_path)) == 1
    assert Spool(tmp_path).ids() == [deferred]
    env = Spool(tmp_path).load(deferred)
    assert (env.recipients[0].state, env.recipients[0].attempts) == ("deferred", 1)
    assert b"".join(spool.content(deferred)) == body(3000, "m2")
    spool.record(deferred, 0, "delivered", "Sent", 2)
    spool.remove(deferred)
    assert segments(tmp_path) == [] and os.listdir(tmp_path / "queue") == []


def test_a_removal_by_another_process_is_seen(tmp_path):
    live = Spool(tmp_path, format="log")
    qid = message(live, body(2500, "a"))
    other = message(live, body(2500, "b"))
    assert live.exists(qid) and live.load(qid).content_size == len(body(2500, "a"))
    Spool(tmp_path).remove(qid)                          # mailward queue delete, another process
    assert not live.exists(qid)
    with pytest.raises(FileNotFoundError):
        live.load(qid)
    assert live.ids() == [other]
    assert b"".join(live.content(other)) == body(2500, "b")
