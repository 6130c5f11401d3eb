"""The spool alone: messages/s and CPU per message of mailward's Spool, files against log.

    python -m bench.spool_writer --dir /var/tmp/sw --seconds 5 --rounds 3 --sessions 1,10

C sessions (threads, as many as concurrent SMTP sessions) each write a message (``begin``,
``write``, ``sync_async``, ``publish`` — what the receiving side calls before its 250), then
the next; a remover keeps the queue at ``--queue`` messages (``remove`` of the oldest, with a
``delivered`` status line first, as delivery does), so what is measured is a steady state of
writing and deleting. Reported per format and C: msgs/s (median of the rounds) and the
process's CPU µs per message (user + system: the spool's own cost, file system included).
The spool folder must be on the file system to be measured (default: /var/tmp, the root
file system).
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import threading
import time
from collections import deque
from pathlib import Path

from mailward.spool.store import Envelope, Recipient, Spool, new_queue_id


def one_round(folder: Path, fmt: str, sessions: int, seconds: float, size: int, queue: int) -> tuple[float, float]:
    shutil.rmtree(folder, ignore_errors=True)
    spool = Spool(folder, fsync=True, format=fmt)
    body = (b"Subject: spool bench\r\n\r\n" + b"x" * size)[:size]
    done: deque[str] = deque()
    lock = threading.Lock()
    stop = threading.Event()
    count = [0]

    def session() -> None:
        while not stop.is_set():
            env = Envelope(new_queue_id(), "s@bench.invalid", {}, [Recipient("r@bench.invalid", {})], time.time())
            inc = spool.begin(env)
            inc.write(body)
            spool.sync_async(inc).result()
            (err,) = spool.publish([inc])
            if err is not None:
                raise err
            with lock:
                done.append(env.queue_id)
                count[0] += 1

    def remover() -> None:
        while not stop.is_set():
            with lock:
                qid = done.popleft() if len(done) > queue else None
            if qid is None:
                time.sleep(0.001)
                continue
            spool.record(qid, 0, "delivered", "250 ok", 1)
            spool.remove(qid)

    threads = [threading.Thread(target=session, daemon=True) for _ in range(sessions)]
    threads.append(threading.Thread(target=remover, daemon=True))
    cpu0, n0, t0 = os.times(), 0, time.perf_counter()
    for t in threads:
        t.start()
    time.sleep(seconds)
    with lock:
        n = count[0] - n0
    elapsed = time.perf_counter() - t0
    cpu1 = os.times()
    stop.set()
    for t in threads:
        t.join(10)
    cpu = (cpu1.user - cpu0.user) + (cpu1.system - cpu0.system)
    return n / elapsed, cpu / max(1, n) * 1e6


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.spool_writer", description=__doc__.split("\n\n")[0])
    ap.add_argument("--dir", type=Path, default=Path("/var/tmp/mailward-spool-bench"))
    ap.add_argument("--formats", default="files,log")
    ap.add_argument("--sessions", default="1,10")
    ap.add_argument("--seconds", type=float, default=5.0)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--size", type=int, default=4096)
    ap.add_argument("--queue", type=int, default=500)
    args = ap.parse_args(argv)
    print(f"spool_writer: {args.dir}, {args.size} octets, queue kept at {args.queue}, {args.seconds:.0f} s x "
          f"{args.rounds} rounds (median), load average {os.getloadavg()[0]:.2f}")
    print("| format | sessions | msgs/s | CPU µs/msg |\n|---|---:|---:|---:|")
    try:
        for sessions in (int(x) for x in args.sessions.split(",")):
            for fmt in args.formats.split(","):
                runs = [one_round(args.dir / fmt, fmt, sessions, args.seconds, args.size, args.queue)
                        for _ in range(args.rounds)]
                rate = statistics.median(r for r, _ in runs)
                cpu = statistics.median(c for _, c in runs)
                print(f"| {fmt} | {sessions} | {rate:,.0f} | {cpu:,.0f} |", flush=True)
    finally:
        shutil.rmtree(args.dir, ignore_errors=True)
    print(f"load average at the end {os.getloadavg()[0]:.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
