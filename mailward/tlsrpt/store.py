"""The TLS-RPT counts: per UTC day, per policy domain, per policy, successes and failures.

CONTRACT
--------
:meth:`TlsRptStore.record` is called by the delivering process (the master, or the single
server) once per outbound session it wants reported (RFC 8460 §4: one count per TLS
negotiation attempt, success or failure). It is cheap: two dictionary updates in memory and
one ``write(2)`` of a short line (about 20 octets) to the journal, through an ``O_APPEND``
descriptor, no Python buffering. So:

* a crash or ``kill -9`` of the process loses nothing already recorded (the line is in the
  kernel);
* a power failure loses at most what was written since the last ``fdatasync``, which
  ``record()`` does when ``sync_interval`` seconds (default 5) have passed since the last one,
  and :meth:`sync` does on demand (the periodic sender calls it).

The journal holds interned lines: a policy (``["p", id, domain, type, [strings], mx]``) and a
failure detail (``["f", id, result_type, sending_ip, mx_hostname, mx_helo, receiving_ip,
reason]``) are written once per journal; a session is then ``["2026-12-01", pid, fid]`` (fid 0
is a success). ``["s", day, domain, key]`` marks a report sent (key: a rua URI, or ``*`` for
the whole day of that domain, which drops its counts).

Compaction: when the journal exceeds ``compact_bytes`` and at open, the
counts are written to ``counts.json`` (temp file, fsync, rename, fsync the folder) naming the
journal generation it includes; a new ``journal.N+1`` is begun and older journals are removed.
At open, the snapshot is read and only journals newer than its generation are replayed, so a
crash at any step neither loses nor double-counts.

Days older than ``keep_days`` are dropped at compaction (a report that could not be sent by
then is given up, with one log line).

Failure behaviour: a corrupt snapshot or journal line is logged as one line naming the file
(and line) and skipped; an unwritable folder or journal is logged once and the counts are kept
in memory only. Nothing raises out of :meth:`record` but ``ValueError`` for arguments outside
RFC 8460's vocabulary (a programming error in the caller).

One writer: a writable store holds an exclusive ``flock`` on ``LOCK`` in its folder for its
life (the journal's interned ids belong to one writer). The delivering process opens it;
``mailward tls-rpt show`` and ``report`` read the same files with
:meth:`TlsRptStore.read_only` (no lock; a line being written is simply not seen yet).
``mailward tls-rpt send`` opens it with ``wait=False`` and gets :class:`StoreBusy` while a
server has it. A server that finds the lock held (a ``tls-rpt send`` running at that moment)
logs one line, counts in memory, tries again at each :meth:`sync`, and once it has the lock
reads the files and adds what it counted meanwhile.
"""

from __future__ import annotations

import fcntl
import json
import os
import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path

from mailward import log
from mailward.fsutil import fsync_dir
from mailward.tlsrpt.results import POLICY_TYPES, RESULT_TYPES

SNAPSHOT = "counts.json"
LOCK = "lock"
JOURNAL_PREFIX = "journal."
DONE = "*"          # the sent-mark key meaning "this day of this domain is finished"


@dataclass(frozen=True, order=True)
class PolicyKey:
    """One policy as the report names it (RFC 8460 §4.4 "policy")."""
    policy_type: str
    policy_strings: tuple[str, ...] = ()
    mx_host: str = ""


@dataclass(frozen=True, order=True)
class FailureKey:
    """One group of failures (RFC 8460 §4.4 "failure-details"; empty strings are left out)."""
    result_type: str
    sending_ip: str = ""
    receiving_mx_hostname: str = ""
    receiving_mx_helo: str = ""
    receiving_ip: str = ""
    failure_reason_code: str = ""


@dataclass
class PolicyCounts:
    successes: int = 0
    failures: dict[FailureKey, int] = field(default_factory=dict)

    @property
    def failure_total(self) -> int:
        return sum(self.failures.values())


class StoreBusy(Exception):
    """Another process writes this store (``wait=False``): str(err) is the one line."""


# day ("YYYY-MM-DD", UTC) → policy domain → policy → counts
Counts = dict[str, dict[str, dict[PolicyKey, PolicyCounts]]]


def utc_day(when: float) -> str:
    return datetime.fromtimestamp(when, timezone.utc).strftime("%Y-%m-%d")


def day_start(day: str) -> float:
    return datetime.strptime(day, "%Y-%m-%d").replace(tzinfo=timezone.utc).timestamp()


def add_days(day: str, n: int) -> str:
    return (datetime.strptime(day, "%Y-%m-%d") + timedelta(days=n)).strftime("%Y-%m-%d")


class TlsRptStore:
    def __init__(self, path: Path | str, *, sync_interval: float = 5.0, compact_bytes: int = 4 << 20,
                 keep_days: int = 7, clock=time.time, writable: bool = True, wait: bool = True):
        self.path = Path(path)
        self.sync_interval = sync_interval
        self.compact_bytes = compact_bytes
        self.keep_days = keep_days
        self.clock = clock
        self.writable = writable
        self.counts: Counts = {}
        self.sent: dict[str, dict[str, set[str]]] = {}     # day → domain → {rua, or "*"}
        self.generation = 0
        self._fd = -1
        self._journal_size = 0
        self._policies: dict[tuple[str, PolicyKey], int] = {}
        self._failures: dict[FailureKey, int] = {}
        self._last_sync = clock()
        self._unsynced = False
        self._broken = False          # the journal could not be written: memory only
        self._lock_fd = -1
        self._waiting = False         # another writer had the lock at open: try again in sync()
        locked = self._lock() if writable else "ok"
        if locked == "error":
            return            # logged: memory only, for the life of this process
        if locked == "busy":
            self._waiting = True
            if not wait:
                raise StoreBusy(f"{self.path}: the TLS-RPT counts are in use by another mailward process "
                                f"(its lock is {self.path / LOCK})")
            log.event(30, None, tlsrpt="state busy", file=str(self.path / LOCK),
                      effect="counting in memory until the other process lets go")
            return
        self._load()
        if writable:
            self._compact()

    @classmethod
    def read_only(cls, path: Path | str, **kw) -> "TlsRptStore":
        """The counts on disk as they are now (for the commands); writes nothing."""
        return cls(path, writable=False, **kw)

    # ---- recording ---------------------------------------------------------------------
    def record(self, *, policy_domain: str, policy_type: str, policy_strings: list[str] | tuple[str, ...] = (),
               mx_host: str = "", success: bool, result_type: str | None = None, sending_ip: str = "",
               receiving_ip: str = "", receiving_mx_hostname: str = "", receiving_mx_helo: str = "",
               failure_reason_code: str = "", when: float | None = None) -> None:
        """Count one session (RFC 8460 §4). ``success`` False needs a ``result_type`` from
        :mod:`mailward.tlsrpt.results`; the other fields are what §4.4's failure details say."""
        if policy_type not in POLICY_TYPES:
            raise ValueError(f"policy_type {policy_type!r}: expected one of {sorted(POLICY_TYPES)}")
        if not success and result_type not in RESULT_TYPES:
            raise ValueError(f"result_type {result_type!r}: expected one of {sorted(RESULT_TYPES)}")
        domain = policy_domain.lower().rstrip(".")
        day = utc_day(self.clock() if when is None else when)
        if DONE in self.sent.get(day, {}).get(domain, ()):
            return      # that day's report for the domain is already out
        policy = PolicyKey(policy_type, tuple(policy_strings), mx_host)
        failure = None if success else FailureKey(result_type, sending_ip, receiving_mx_hostname,
                                                  receiving_mx_helo, receiving_ip, failure_reason_code)
        self._count(day, domain, policy, failure, 1)
        if not self.writable:
            return
        lines = []
        pid = self._policies.get((domain, policy))
        if pid is None:
            pid = self._policies[(domain, policy)] = len(self._policies) + 1
            lines.append(["p", pid, domain, policy.policy_type, list(policy.policy_strings), policy.mx_host])
        fid = 0
        if failure is not None:
            fid = self._failures.get(failure, 0)
            if not fid:
                fid = self._failures[failure] = len(self._failures) + 1
                lines.append(["f", fid, *_failure_fields(failure)])
        lines.append([day, pid, fid])
        self._append(lines)

    def _count(self, day: str, domain: str, policy: PolicyKey, failure: FailureKey | None, n: int) -> None:
        pc = self.counts.setdefault(day, {}).setdefault(domain, {}).get(policy)
        if pc is None:
            pc = self.counts[day][domain][policy] = PolicyCounts()
        if failure is None:
            pc.successes += n
        else:
            pc.failures[failure] = pc.failures.get(failure, 0) + n

    def _append(self, lines: list) -> None:
        if self._fd < 0:
            return
        data = "".join(json.dumps(x, ensure_ascii=False, separators=(",", ":")) + "\n" for x in lines)
        try:
            os.write(self._fd, data.encode("utf-8"))
        except OSError as err:
            self._fail(self._journal_path(self.generation), err)
            return
        self._journal_size += len(data)
        self._unsynced = True
        now = self.clock()
        if now - self._last_sync >= self.sync_interval:
            self.sync()
        if self._journal_size >= self.compact_bytes:
            self._compact()

    def sync(self) -> None:
        """Make what was recorded so far survive a power failure (fdatasync the journal)."""
        self._last_sync = self.clock()
        if self._waiting and self._lock() == "ok":
            self._waiting = False
            self._adopt_files()
        if self._fd >= 0 and self._unsynced:
            try:
                os.fdatasync(self._fd)
                self._unsynced = False
            except OSError as err:
                self._fail(self._journal_path(self.generation), err)

    # ---- what is there -------------------------------------------------------------------
    def days(self) -> list[str]:
        return sorted(self.counts)

    def domains(self, day: str) -> dict[str, dict[PolicyKey, PolicyCounts]]:
        return self.counts.get(day, {})

    def sent_to(self, day: str, domain: str) -> set[str]:
        """The rua URIs this day's report of ``domain`` was delivered to (``*``: finished)."""
        return set(self.sent.get(day, {}).get(domain, ()))

    def due(self, now: float | None = None, send_hour: int = 0) -> list[tuple[str, str]]:
        """(day, domain) with counts whose report is not finished and whose day is over:
        yesterday's once the UTC hour is ``send_hour`` or later, older days at once."""
        now = self.clock() if now is None else now
        today = utc_day(now)
        hour = datetime.fromtimestamp(now, timezone.utc).hour
        out = []
        for day in sorted(self.counts):
            if day >= today or (day == add_days(today, -1) and hour < send_hour):
                continue
            for domain in sorted(self.counts[day]):
                if DONE not in self.sent.get(day, {}).get(domain, ()):
                    out.append((day, domain))
        return out

    def mark_sent(self, day: str, domain: str, rua: str) -> None:
        """One destination has this day's report of ``domain`` (queued mail, or an https 2xx);
        remembered across restarts (the journal line is fsynced at once)."""
        self._mark(day, domain, rua)
        self.sync()

    def mark_done(self, day: str, domain: str) -> None:
        """The day's report of ``domain`` is finished (every rua has it, or the domain publishes
        no record): its counts are dropped and a late ``record()`` for that day is ignored."""
        self._mark(day, domain, DONE)
        self.sync()

    def _mark(self, day: str, domain: str, key: str) -> None:
        self._apply_mark(day, domain, key)
        if self.writable:
            self._append([["s", day, domain, key]])

    def _apply_mark(self, day: str, domain: str, key: str) -> None:
        self.sent.setdefault(day, {}).setdefault(domain, set()).add(key)
        if key == DONE:
            self.counts.get(day, {}).pop(domain, None)
            if day in self.counts and not self.counts[day]:
                del self.counts[day]

    def close(self) -> None:
        self.sync()
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1
        if self._lock_fd >= 0:
            os.close(self._lock_fd)    # drops the flock
            self._lock_fd = -1

    # ---- the one writer ------------------------------------------------------------------
    def _lock(self) -> str:
        """Take the writer's lock: "ok", "busy" (another process has it) or "error" (the folder
        or the file cannot be made: logged; the store counts in memory only)."""
        try:
            self.path.mkdir(mode=0o700, parents=True, exist_ok=True)
            fd = os.open(self.path / LOCK, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        except OSError as err:
            self._fail(self.path, err)
            return "error"
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            return "busy"
        self._lock_fd = fd
        return "ok"

    def _adopt_files(self) -> None:
        """The lock is ours at last: read the files, add what was counted meanwhile."""
        counted = self.counts
        self.counts, self.sent = {}, {}
        self._load()
        for day, domains in counted.items():
            for domain, policies in domains.items():
                if DONE in self.sent.get(day, {}).get(domain, ()):
                    continue
                for key, pc in policies.items():
                    if pc.successes:
                        self._count(day, domain, key, None, pc.successes)
                    for f, n in pc.failures.items():
                        self._count(day, domain, key, f, n)
        self._compact()
        log.event(25, None, tlsrpt="state taken over", file=str(self.path))

    # ---- files ---------------------------------------------------------------------------
    def _journal_path(self, generation: int) -> Path:
        return self.path / f"{JOURNAL_PREFIX}{generation}"

    def _journals(self) -> list[tuple[int, Path]]:
        out = []
        try:
            for p in self.path.iterdir():
                suffix = p.name[len(JOURNAL_PREFIX):]
                if p.name.startswith(JOURNAL_PREFIX) and suffix.isdigit():
                    out.append((int(suffix), p))
        except FileNotFoundError:
            pass
        except OSError as err:
            log.event(30, None, tlsrpt="state unreadable", file=str(self.path), error=err.strerror)
        return sorted(out)

    def _load(self) -> None:
        snap = self.path / SNAPSHOT
        generation = -1
        try:
            data = json.loads(snap.read_bytes())
            generation = int(data["generation"])
            for day, domains in data["days"].items():
                for domain, policies in domains.items():
                    for p in policies:
                        key = PolicyKey(p["type"], tuple(p["strings"]), p["mx"])
                        if p["ok"]:
                            self._count(day, domain, key, None, int(p["ok"]))
                        for f in p["failures"]:
                            self._count(day, domain, key, FailureKey(*f[:6]), int(f[6]))
            for day, domains in data["sent"].items():
                for domain, keys in domains.items():
                    for k in keys:
                        self._apply_mark(day, domain, k)
        except FileNotFoundError:
            pass
        except (OSError, ValueError, KeyError, TypeError, IndexError, AttributeError) as err:
            log.event(30, None, tlsrpt="state ignored", file=str(snap), error=_why(err))
            self.counts, self.sent, generation = {}, {}, -1
        for gen, path in self._journals():
            if gen > generation:
                self._replay(path)
            self.generation = max(self.generation, gen)

    def _replay(self, path: Path) -> None:
        policies: dict[int, tuple[str, PolicyKey]] = {}
        failures: dict[int, FailureKey] = {}
        try:
            raw = path.read_bytes()
        except OSError as err:
            log.event(30, None, tlsrpt="journal ignored", file=str(path), error=err.strerror)
            return
        bad = 0
        lines = raw.split(b"\n")
        lines.pop()       # after the last newline: b"", or a line still being written
        for number, line in enumerate(lines, 1):
            if not line:
                continue
            try:
                x = json.loads(line)
                if x[0] == "p":
                    policies[int(x[1])] = (x[2], PolicyKey(x[3], tuple(x[4]), x[5]))
                elif x[0] == "f":
                    failures[int(x[1])] = FailureKey(*x[2:8])
                elif x[0] == "s":
                    self._apply_mark(x[1], x[2], x[3])
                else:
                    domain, policy = policies[int(x[1])]
                    if DONE not in self.sent.get(x[0], {}).get(domain, ()):
                        self._count(x[0], domain, policy, failures[int(x[2])] if x[2] else None, 1)
            except (ValueError, KeyError, TypeError, IndexError):
                if not bad:   # one line per file: a torn last line after a crash is the usual case
                    log.event(30, None, tlsrpt="journal line ignored", file=f"{path}:{number}",
                              line=line[:80].decode("utf-8", "replace"))
                bad += 1

    def _snapshot_data(self) -> dict:
        days = {}
        for day, domains in self.counts.items():
            days[day] = {domain: [{"type": k.policy_type, "strings": list(k.policy_strings), "mx": k.mx_host,
                                   "ok": pc.successes,
                                   "failures": [[*_failure_fields(f), n] for f, n in sorted(pc.failures.items())]}
                                  for k, pc in sorted(policies.items())]
                         for domain, policies in domains.items()}
        sent = {day: {d: sorted(keys) for d, keys in domains.items()} for day, domains in self.sent.items()}
        return {"version": 1, "generation": self.generation, "days": days, "sent": sent}

    def _prune(self) -> None:
        oldest = add_days(utc_day(self.clock()), -self.keep_days)
        for day in [d for d in self.counts if d < oldest]:
            log.event(30, None, tlsrpt="report given up", day=day, domains=",".join(sorted(self.counts[day])),
                      reason=f"older than tls_rpt.keep_days ({self.keep_days})")
            del self.counts[day]
        for day in [d for d in self.sent if d < oldest]:
            del self.sent[day]

    def _compact(self) -> None:
        """Snapshot the counts (they include journal ``generation``), then begin the next journal."""
        if self._lock_fd < 0:
            return        # not the writer (busy, or the folder is unusable): memory only
        self._prune()
        tmp = self.path / (SNAPSHOT + ".tmp")
        try:
            self.path.mkdir(mode=0o700, parents=True, exist_ok=True)
            with os.fdopen(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600), "wb") as f:
                f.write(json.dumps(self._snapshot_data(), ensure_ascii=False, separators=(",", ":")).encode())
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, self.path / SNAPSHOT)
            fsync_dir(self.path)
            new = self.generation + 1
            fd = os.open(self._journal_path(new), os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o600)
        except OSError as err:
            self._fail(self.path, err)
            return
        if self._fd >= 0:
            os.close(self._fd)
        self._fd, self.generation, self._journal_size = fd, new, 0
        self._policies, self._failures = {}, {}
        self._unsynced, self._broken = False, False
        for gen, path in self._journals():
            if gen < new:
                path.unlink(missing_ok=True)

    def _fail(self, where: Path, err: OSError) -> None:
        if not self._broken:
            log.event(40, None, tlsrpt="state not written", file=str(where), error=err.strerror or str(err),
                      effect="counts kept in memory only")
        self._broken = True


def _failure_fields(f: FailureKey) -> list[str]:
    return [f.result_type, f.sending_ip, f.receiving_mx_hostname, f.receiving_mx_helo, f.receiving_ip,
            f.failure_reason_code]


def _why(err: Exception) -> str:
    if isinstance(err, OSError):
        return err.strerror or str(err)
    return f"{type(err).__name__}: {err}"[:120]
