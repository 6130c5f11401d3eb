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

``--delivery N``: the delivery side alone instead. N messages are queued first; then C threads
(as the runner's settling threads) take them one by one and make the spool calls one delivered
message costs (``exists``, ``held``, ``load``, the header section and the whole content through
``content``, ``history``, ``exists``, ``record`` of a ``delivered`` line, ``remove``) until the
queue is empty: msgs/s and CPU µs per message of that drain.
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


def delivery_round(folder: Path, fmt: str, threads: int, count: int, size: int) -> tuple[float, float]:
    shutil.rmtree(folder, ignore_errors=True)
    spool = Spool(folder, fsync=True, format=fmt)
    body = (b"Subject: spool bench\r\n\r\n" + b"x" * size)[:size]
    for _ in range(count):
        env = Envelope(new_queue_id(), "s@bench.invalid", {}, [Recipient("r@bench.invalid", {})], time.time())
        inc = spool.begin(env)
        inc.write(body)
        spool.commit(inc)
    if fmt == "log":
        spool.log.writer.seal()     # as when the receiving process is gone: the segment can be retired
    spool = Spool(folder, fsync=True, format=fmt)    # a fresh process's view, as after a restart
    todo = deque(spool.ids())
    lock = threading.Lock()

    def deliver() -> None:
        while True:
            with lock:
                if not todo:
                    return
                qid = todo.popleft()
            if not spool.exists(qid) or spool.held(qid):
                raise RuntimeError(f"{qid}: not queued")
            env = spool.load(qid)
            next(iter(spool.content(qid)))
            if sum(len(c) for c in spool.content(qid)) != env.content_size:
                raise RuntimeError(f"{qid}: content size")
            spool.history(qid)
            if not spool.exists(qid):
                raise RuntimeError(f"{qid}: gone")
            spool.record(qid, 0, "delivered", "Sent (250 2.0.0 ok)", 1)
            spool.remove(qid)

    workers = [threading.Thread(target=deliver, daemon=True) for _ in range(threads if threads > 1 else 0)]
    cpu0, t0 = os.times(), time.perf_counter()
    for t in workers:
        t.start()
    if not workers:
        deliver()      # one: in this thread (a profiler sees it)
    for t in workers:
        t.join()
    elapsed, cpu1 = time.perf_counter() - t0, os.times()
    if spool.ids():
        raise RuntimeError(f"{len(spool.ids())} messages left after the drain")
    cpu = (cpu1.user - cpu0.user) + (cpu1.system - cpu0.system)
    return count / elapsed, cpu / count * 1e6


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.spool_writer", description=__doc__.split("\n\n")[0])
    ap.add_argument("--dir", type=Path, default=Path("/var/tmp/mailward-spool-bench"))
    ap.add_argument("--formats", default="files,log")
    ap.add_argument("--sessions", default="1,10")
    ap.add_argument("--seconds", type=float, default=5.0)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--size", type=int, default=4096)
    ap.add_argument("--queue", type=int, default=500)
    ap.add_argument("--delivery", type=int, default=0, metavar="N",
                    help="measure the delivery side instead: drain N queued messages")
    args = ap.parse_args(argv)
    if args.delivery:
        return delivery_main(args)
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


def delivery_main(args) -> int:
    print(f"spool_writer --delivery: {args.dir}, {args.delivery} messages of {args.size} octets drained, "
          f"{args.rounds} rounds (median), load average {os.getloadavg()[0]:.2f}")
    print("| format | threads | msgs/s | CPU µs/msg |\n|---|---:|---:|---:|")
    try:
        for threads in (int(x) for x in args.sessions.split(",")):
            for fmt in args.formats.split(","):
                runs = [delivery_round(args.dir / fmt, fmt, threads, args.delivery, args.size)
                        for _ in range(args.rounds)]
                rate = statistics.median(r for r, _ in runs)
                cpu = statistics.median(c for _, c in runs)
                print(f"| {fmt} | {threads} | {rate:,.0f} | {cpu:,.0f} |", flush=True)
    finally:
        shutil.rmtree(args.dir, ignore_errors=True)
    print(f"load average at the end {os.getloadavg()[0]:.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
