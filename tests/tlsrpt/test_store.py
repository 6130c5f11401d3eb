"""TlsRptStore: counting per UTC day, policy domain and policy; surviving restarts and
crashes; corrupt state logged in one line and ignored; one writer."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import time
from datetime import datetime, timezone

import pytest

from mailward.tlsrpt.store import FailureKey, PolicyKey, StoreBusy, TlsRptStore

DAY1 = datetime(2026, 11, 29, 12, tzinfo=timezone.utc).timestamp()
DAY2 = datetime(2026, 11, 30, 23, 59, 59, tzinfo=timezone.utc).timestamp()
NOW = datetime(2026, 12, 1, 0, 30, tzinfo=timezone.utc).timestamp()
STS = dict(policy_type="sts", policy_strings=["version: STSv1", "mode: enforce", "mx: *.example.net"],
           mx_host="*.example.net")


class Logs(logging.Handler):
    def __init__(self):
        super().__init__(logging.DEBUG)
        self.lines: list[str] = []

    def emit(self, record):
        self.lines.append(record.getMessage())


@pytest.fixture
def logs():
    h = Logs()
    logger = logging.getLogger("mailward")
    logger.addHandler(h)
    old = logger.level
    logger.setLevel(logging.DEBUG)
    yield h.lines
    logger.removeHandler(h)
    logger.setLevel(old)


def store(path, **kw) -> TlsRptStore:
    kw.setdefault("clock", lambda: NOW)
    return TlsRptStore(path, **kw)


def fill(s: TlsRptStore) -> None:
    for _ in range(3):
        s.record(policy_domain="Example.NET.", success=True, when=DAY1, **STS)
    s.record(policy_domain="example.net", success=False, result_type="certificate-expired",
             sending_ip="192.0.2.1", receiving_mx_hostname="mx1.example.net", receiving_ip="203.0.113.5",
             when=DAY1, **STS)
    s.record(policy_domain="example.net", success=False, result_type="certificate-expired",
             sending_ip="192.0.2.1", receiving_mx_hostname="mx1.example.net", receiving_ip="203.0.113.5",
             when=DAY1, **STS)
    s.record(policy_domain="example.net", success=False, result_type="starttls-not-supported",
             receiving_mx_hostname="mx2.example.net", when=DAY1, **STS)
    s.record(policy_domain="example.net", policy_type="no-policy-found", success=True, when=DAY1)
    s.record(policy_domain="other.test", policy_type="tlsa", policy_strings=["3 1 1 abcd"], mx_host="mx.other.test",
             success=False, result_type="tlsa-invalid", when=DAY2)


def snapshot(s: TlsRptStore) -> dict:
    return {day: {domain: {k: (pc.successes, dict(pc.failures)) for k, pc in policies.items()}
                  for domain, policies in domains.items()} for day, domains in s.counts.items()}


EXPECTED = {
    "2026-11-29": {"example.net": {
        PolicyKey("sts", ("version: STSv1", "mode: enforce", "mx: *.example.net"), "*.example.net"): (3, {
            FailureKey("certificate-expired", "192.0.2.1", "mx1.example.net", "", "203.0.113.5"): 2,
            FailureKey("starttls-not-supported", "", "mx2.example.net"): 1}),
        PolicyKey("no-policy-found"): (1, {})}},
    "2026-11-30": {"other.test": {
        PolicyKey("tlsa", ("3 1 1 abcd",), "mx.other.test"): (0, {FailureKey("tlsa-invalid"): 1})}},
}


def test_counts_are_grouped_as_the_report_needs(tmp_path):
    s = store(tmp_path)
    fill(s)
    assert snapshot(s) == EXPECTED
    assert s.days() == ["2026-11-29", "2026-11-30"]


def test_a_restart_keeps_the_counts(tmp_path):
    s = store(tmp_path)
    fill(s)
    s.close()
    again = store(tmp_path)
    assert snapshot(again) == EXPECTED
    fill(again)     # and counting goes on where it was
    again.close()
    third = store(tmp_path)
    assert third.counts["2026-11-29"]["example.net"][PolicyKey("no-policy-found")].successes == 2
    assert sorted(os.listdir(tmp_path)) == ["counts.json", "journal.3", "lock"]   # one journal per open


def test_a_killed_process_loses_nothing(tmp_path):
    """Records written by a process that dies without closing (os._exit, as after SIGKILL)."""
    code = (f"import os, sys\nsys.path.insert(0, {os.path.dirname(__file__)!r})\n"
            "from test_store import store, fill\n"
            f"s = store({str(tmp_path)!r})\nfill(s)\nos._exit(0)\n")
    subprocess.run([sys.executable, "-c", code], check=True, cwd=os.path.dirname(__file__), timeout=30)
    assert snapshot(store(tmp_path)) == EXPECTED


def test_compaction_neither_loses_nor_double_counts(tmp_path):
    s = store(tmp_path, compact_bytes=4096)
    for _ in range(150):
        fill(s)
    assert s.generation > 3                  # it compacted several times on the way
    s.close()
    again = store(tmp_path)
    got = again.counts["2026-11-29"]["example.net"][PolicyKey("sts", tuple(STS["policy_strings"]), "*.example.net")]
    assert got.successes == 450 and got.failure_total == 450


def test_a_crash_between_snapshot_and_new_journal_does_not_double_count(tmp_path):
    s = store(tmp_path)
    fill(s)
    s.close()
    store(tmp_path).close()                 # counts.json now includes journal.1, which was removed
    assert json.loads((tmp_path / "counts.json").read_text())["generation"] == 1
    # as if the crash came after the snapshot's rename, before journal.1 was removed
    (tmp_path / "journal.1").write_text('["p",1,"example.net","no-policy-found",[],""]\n["2026-11-29",1,0]\n')
    assert snapshot(store(tmp_path)) == EXPECTED


def test_sent_marks_survive_and_close_the_day(tmp_path):
    s = store(tmp_path)
    fill(s)
    assert s.due(NOW, send_hour=0) == [("2026-11-29", "example.net"), ("2026-11-30", "other.test")]
    assert s.due(NOW, send_hour=1) == [("2026-11-29", "example.net")]     # yesterday waits for 01:00
    s.mark_sent("2026-11-29", "example.net", "https://r.example.net/x")
    s.close()
    s = store(tmp_path)
    assert s.sent_to("2026-11-29", "example.net") == {"https://r.example.net/x"}
    assert ("2026-11-29", "example.net") in s.due(NOW)
    s.mark_done("2026-11-29", "example.net")
    s.record(policy_domain="example.net", success=True, when=DAY1, **STS)      # late: ignored
    s.close()
    s = store(tmp_path)
    assert "2026-11-29" not in s.counts and s.due(NOW) == [("2026-11-30", "other.test")]
    assert s.sent_to("2026-11-29", "example.net") == {"https://r.example.net/x", "*"}


def test_days_older_than_keep_days_are_given_up(tmp_path, logs):
    s = store(tmp_path)
    fill(s)
    s.close()
    later = store(tmp_path, keep_days=2, clock=lambda: NOW + 3 * 86400)
    assert later.days() == []
    assert any("tlsrpt=report given up, day=2026-11-29, domains=example.net" in line for line in logs)


def test_a_corrupt_snapshot_is_one_line_and_ignored(tmp_path, logs):
    (tmp_path / "counts.json").write_text("{not json")
    s = store(tmp_path)
    assert s.days() == []
    fill(s)
    s.close()
    assert [line for line in logs if "tlsrpt=" in line] == [
        f"tlsrpt=state ignored, file={tmp_path / 'counts.json'}, "
        "error=JSONDecodeError: Expecting property name enclosed in double quotes: line 1 column 2 (char 1)"]
    assert snapshot(store(tmp_path)) == EXPECTED


def test_corrupt_journal_lines_are_one_line_and_skipped(tmp_path, logs):
    s = store(tmp_path)
    s.close()
    journal = tmp_path / f"journal.{s.generation}"
    journal.write_text('["p",1,"example.net","no-policy-found",[],""]\n["2026-11-29",1,0]\ngarbage\n'
                       '["2026-11-29",9,0]\n["2026-11-29",1,0]\n{"torn')
    again = store(tmp_path)
    assert again.counts["2026-11-29"]["example.net"][PolicyKey("no-policy-found")].successes == 2
    lines = [line for line in logs if "tlsrpt=" in line]
    assert lines == [f"tlsrpt=journal line ignored, file={journal}:3, line=garbage"]


def test_an_unwritable_folder_is_one_line_and_counting_goes_on(tmp_path, logs):
    blocker = tmp_path / "file"
    blocker.write_text("")
    s = store(blocker / "state")           # a folder under a file: cannot be made
    fill(s)
    fill(s)
    assert s.counts["2026-11-30"]["other.test"]
    errors = [line for line in logs if "tlsrpt=" in line]
    assert len(errors) == 1 and errors[0].startswith(f"tlsrpt=state not written, file={blocker / 'state'}")


def test_wrong_arguments_are_refused(tmp_path):
    s = store(tmp_path)
    with pytest.raises(ValueError, match="policy_type"):
        s.record(policy_domain="x.test", policy_type="dane", success=True)
    with pytest.raises(ValueError, match="result_type"):
        s.record(policy_domain="x.test", policy_type="sts", success=False, result_type="timeout")


def test_one_writer(tmp_path, logs):
    first = store(tmp_path)
    fill(first)
    with pytest.raises(StoreBusy, match="in use by another mailward process"):
        store(tmp_path, wait=False)
    waiting = store(tmp_path)              # a server starting while `tls-rpt send` runs
    assert any(line.startswith("tlsrpt=state busy") for line in logs)
    fill(waiting)                          # counted in memory
    first.close()
    waiting.sync()                         # takes the lock, reads the files, adds its own counts
    assert any(line.startswith("tlsrpt=state taken over") for line in logs)
    waiting.close()
    got = store(tmp_path).counts["2026-11-29"]["example.net"][PolicyKey("no-policy-found")]
    assert got.successes == 2


def test_read_only_sees_what_the_writer_wrote(tmp_path):
    w = store(tmp_path)
    fill(w)
    assert snapshot(TlsRptStore.read_only(tmp_path)) == EXPECTED
    w.close()


def test_recording_is_cheap(tmp_path):
    s = TlsRptStore(tmp_path)
    start = time.perf_counter()
    for i in range(20000):
        s.record(policy_domain=f"d{i % 50}.example", success=i % 7 != 0, result_type="certificate-not-trusted",
                 receiving_mx_hostname=f"mx{i % 3}.example", sending_ip="192.0.2.1", **STS)
    elapsed = time.perf_counter() - start
    s.close()
    assert elapsed < 4.0, f"20000 records took {elapsed:.2f} s"
    assert sum(pc.successes + pc.failure_total for d in s.counts.values() for p in d.values()
               for pc in p.values()) == 20000
