"""Crash harness: send messages over STARTTLS while the server is killed with SIGKILL at
random moments and restarted; at the end every message that got a 250 must be delivered.

Clients behave like real MTAs: a message without a 250 is sent again (same token), so a
kill between the fsync and the 250 can give a duplicate, never a loss.

    python -m tests.reliability.crash --messages 10000 --kills 25     # the long run (minutes)

``make test`` runs a short version (tests/reliability/test_crash.py).
"""

from __future__ import annotations

import argparse
import random
import re
import smtplib
import ssl
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path

TOKEN = re.compile(rb"X-Token: (\S+)")


def run(messages: int, kills: int, workdir: Path, clients: int = 4, per_connection: int = 10,
        seed: int | None = None, spool: dict | None = None, server: dict | None = None) -> dict:
    """``spool``/``server``: more settings for those sections (e.g. {"format": "log"}, {"workers": 2})."""
    from mailward.ca import authority
    from tests.conftest import MTA

    rng = random.Random(seed)
    pki = workdir / "pki"
    authority.init_ca(pki / "ca", "Crash CA")
    authority.issue(pki / "ca", "localhost", ["localhost", "127.0.0.1"], pki / "s.pem", pki / "k.pem", usage="both")
    (workdir / "mta").mkdir()
    mta = MTA(workdir / "mta", {"tls": {"cert_file": str(pki / "s.pem"), "key_file": str(pki / "k.pem")},
                                "server": {"reverse_lookup": False, **(server or {})}, "spool": dict(spool or {})})
    mta.start()
    ctx = ssl.create_default_context(cafile=str(pki / "ca" / "ca.pem"))
    tokens = [f"t{i:06d}" for i in range(messages)]
    todo = list(reversed(tokens))
    lock = threading.Lock()
    acked: set[str] = set()
    attempts: Counter[str] = Counter()   # how often a client started sending each token
    stop = threading.Event()

    def client():
        while not stop.is_set():
            with lock:
                batch = [todo.pop() for _ in range(min(per_connection, len(todo)))]
            if not batch:
                return
            try:
                with smtplib.SMTP(mta.host, mta.port, timeout=10) as s:
                    s.starttls(context=ctx)
                    while batch:
                        token = batch[-1]
                        with lock:
                            attempts[token] += 1
                        s.sendmail("crash@client.test", ["crash@localhost"],
                                   f"X-Token: {token}\r\nSubject: {token}\r\n\r\nbody {token}\r\n")
                        with lock:
                            acked.add(token)
                        batch.pop()
            except (OSError, smtplib.SMTPException):
                time.sleep(0.05)
            finally:
                with lock:
                    todo.extend(batch)  # no 250: send again, like a real client

    threads = [threading.Thread(target=client, daemon=True) for _ in range(clients)]
    started = time.time()
    for t in threads:
        t.start()
    done_kills = 0
    while done_kills < kills:  # once the clients are done, the kills hit delivery
        with lock:
            remaining = len(todo)
        # spread the kills over the run
        time.sleep(rng.uniform(0.05, 0.6) if remaining else 0.05)
        _kill9_tree(mta) if (server or {}).get("workers", 1) > 1 else mta.kill9()
        done_kills += 1
        mta.start()
    for t in threads:
        t.join(600)
    elapsed = time.time() - started
    # everything accepted must now be delivered: wait for the spool to drain
    deadline = time.time() + 20
    while time.time() < deadline and _queued(mta.spool):
        time.sleep(0.2)
    leftover = _queued(mta.spool)
    mta.stop()
    seen: Counter[str] = Counter()
    for path in mta.maildir_files("crash"):
        m = TOKEN.search(path.read_bytes())
        if m:
            seen[m.group(1).decode()] += 1
    lost = sorted(t for t in acked if seen[t] == 0)
    duplicates = sum(n - 1 for n in seen.values() if n > 1)
    # a duplicate the client did not cause by sending again would be the server's fault
    server_duplicates = sum(n - 1 for t, n in seen.items() if n > 1 and attempts[t] == 1)
    return {"messages": messages, "acked": len(acked), "kills": done_kills, "lost": lost,
            "duplicates": duplicates, "server_duplicates": server_duplicates, "duplicate_ratio": duplicates / max(1, len(acked)),
            "seconds": round(elapsed, 1),
            "leftover_incoming": len(list((mta.spool / "incoming").iterdir())), "leftover_queue": leftover,
            "log": mta.log}


def _kill9_tree(mta) -> None:
    """SIGKILL the master and its workers at once (as systemd's KillMode=control-group or the
    OOM killer of a cgroup would): the workers would otherwise hold the spool lock until they
    notice their master is gone, and the restart would find the spool in use."""
    import os
    import signal

    pids, todo = [], [mta.proc.pid]
    while todo:
        pid = todo.pop()
        pids.append(pid)
        try:
            for task in os.listdir(f"/proc/{pid}/task"):
                with open(f"/proc/{pid}/task/{task}/children") as f:
                    todo.extend(int(c) for c in f.read().split())
        except OSError:
            continue
    for pid in pids:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    mta.proc.wait()
    def alive(pid: int) -> bool:
        try:
            with open(f"/proc/{pid}/status") as f:
                return "State:\tZ" not in f.read()
        except OSError:
            return False

    for pid in pids[1:]:     # the workers: reaped by init once the master is gone; wait for them
        deadline = time.time() + 5
        while time.time() < deadline and alive(pid):
            time.sleep(0.01)


def _queued(spool: Path) -> list[str]:
    """What is still in the spool: every file in queue/ (a message, or the status or hold file
    of one) — or, once a log exists (spool.format = "log", where a crash may bring the status
    file of a removed message back until its segment is retired), the queue ids the spool
    still lists."""
    if (spool / "log").is_dir():
        from mailward.spool.store import Spool

        return Spool(spool, fsync=False).ids()
    return sorted(p.name for p in (spool / "queue").iterdir() if p.name != "mailward.pid")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--messages", type=int, default=10000)
    parser.add_argument("--kills", type=int, default=25)
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--spool-format", choices=("files", "log"), default="files")
    parser.add_argument("--workers", type=int, default=1)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as d:
        result = run(args.messages, args.kills, Path(d), clients=args.clients,
                     spool={"format": args.spool_format}, server={"workers": args.workers})
    lost = result.pop("lost")
    print(result, "lost:", len(lost), lost[:20])
    raise SystemExit(1 if lost or result["duplicate_ratio"] >= 0.001 else 0)


if __name__ == "__main__":
    main()
