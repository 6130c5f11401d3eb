"""Where mailward's time goes under load: a summary of a py-spy or cProfile profile.

    python -m bench.run --profile py-spy --sizes 4096 --concurrency 10 --per-connection 1
    python -m bench.profile bench/results/profile-latest-4096-10-1.raw

A py-spy ``raw`` profile (collapsed stacks, one ``frames count`` line per stack, idle samples
left out, so the counts are time on the CPU or holding the GIL) is split into categories: each
sample goes to the first category whose pattern matches a frame, looking from the leaf towards
the root, so "TLS handshake" is time inside ``do_handshake`` wherever it is called from, and
"SMTP core" is time in mailward/smtp/ itself, not in what it calls. The leaf functions with most
samples follow. A cProfile file gets pstats' top functions by own time and by cumulative time.
"""

from __future__ import annotations

import io
import re
import sys
from collections import Counter
from pathlib import Path

# (category, pattern on one frame "function (file:line)"), tried from the leaf to the root.
CATEGORIES = [
    ("TLS handshake (OpenSSL via pyOpenSSL)", re.compile(r"^do_handshake ")),
    ("TLS facts after the handshake", re.compile(r"facts_after_handshake|mailward/tls/dn\.py|tls/facts\.py")),
    ("TLS records: encrypt/decrypt, BIO copies (pyOpenSSL/cffi)",
     re.compile(r"OpenSSL/SSL\.py|OpenSSL/_util\.py|mailward/tls/engine\.py|cffi")),
    ("TLS setup per connection (SSL.Connection)", re.compile(r"new_connection|mailward/tls/context\.py")),
    ("fsync / fdatasync (spool-commit thread)", re.compile(r"^(fdatasync|fsync|_fsync_dir) ")),
    ("spool: files, rename, envelope JSON", re.compile(r"mailward/spool/")),
    ("logging", re.compile(r"logging/__init__\.py|mailward/log\.py")),
    ("Received: header, queue id, time formatting", re.compile(r"mailward/receive/received\.py|new_queue_id|strftime")),
    ("policy (gate, access map)", re.compile(r"mailward/receive/gate\.py|mailward/policy/")),
    ("SMTP core (parse, state, replies)", re.compile(r"mailward/smtp/")),
    ("queue runner (loads each new envelope)", re.compile(r"mailward/deliver/")),
    ("session glue (receive/session.py)", re.compile(r"mailward/receive/")),
    ("asyncio event loop, sockets, timers", re.compile(r"asyncio/|selectors\.py|socket\.py")),
    ("threads, futures, locks", re.compile(r"threading\.py|concurrent/futures")),
]


def categorise(frames: list[str]) -> str:
    for frame in reversed(frames):
        for name, pattern in CATEGORIES:
            if pattern.search(frame):
                return name
    return "other"


def summarise_raw(path: Path, top: int = 25) -> str:
    cats: Counter[str] = Counter()
    leaves: Counter[str] = Counter()
    threads: Counter[str] = Counter()
    total = 0
    for line in path.read_text(errors="replace").splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        n = int(count)
        frames = stack.split(";")
        total += n
        thread = next((f for f in frames if f.startswith("thread ")), "")
        threads[re.sub(r"\(0x[0-9a-fA-F]+\)", "", thread).strip() or "?"] += n
        frames = [f for f in frames if not f.startswith(("process ", "thread "))]
        cats[categorise(frames)] += n
        leaves[frames[-1] if frames else "?"] += n
    if not total:
        return f"{path}: no samples\n"
    out = io.StringIO()
    out.write(f"{path.name}: {total} samples (on CPU)\n\nby category:\n")
    for name, n in cats.most_common():
        out.write(f"  {100 * n / total:5.1f}%  {name}\n")
    out.write("\nby thread:\n")
    for name, n in threads.most_common():
        out.write(f"  {100 * n / total:5.1f}%  {name}\n")
    out.write(f"\ntop {top} leaf functions:\n")
    for name, n in leaves.most_common(top):
        out.write(f"  {100 * n / total:5.1f}%  {name}\n")
    return out.getvalue()


def summarise_cprofile(path: Path, top: int = 40) -> str:
    """Own and cumulative time per message (messages = calls of the DATA handler), for
    mailward's functions and what they call most, and the top functions by own time."""
    import pstats

    stats = pstats.Stats(str(path)).stats
    rows = []
    for (filename, line, func), (_, calls, own, cum, _) in stats.items():
        short = re.sub(r".*/(site-packages|python3\.\d+)/", "", filename).replace(str(Path.cwd()) + "/", "")
        rows.append((cum, own, calls, f"{short}:{line}({func})"))
    messages = max((r[2] for r in rows if r[3].endswith("(_on_data_requested)")), default=0) or 1
    busy = sum(r[1] for r in rows) - sum(r[1] for r in rows if "select.epoll" in r[3] and "poll" in r[3])
    out = io.StringIO()
    out.write(f"{path.name}: {messages} messages; main thread busy {busy:.2f} s "
              f"({1e6 * busy / messages:.0f} us per message, profiler overhead included)\n\n")
    out.write(f"top {top} by cumulative time (mailward, pyOpenSSL, logging), us per message:\n")
    picked = [r for r in sorted(rows, reverse=True)
              if re.search(r"mailward/|OpenSSL/|logging/", r[3]) and r[2] >= messages // 10]
    for cum, own, calls, name in picked[:top]:
        out.write(f"  {1e6 * cum / messages:8.1f} cum {1e6 * own / messages:8.1f} own {calls:8d} calls  {name}\n")
    out.write("\ntop 25 by own time, us per message:\n")
    for cum, own, calls, name in sorted(rows, key=lambda r: -r[1])[:25]:
        out.write(f"  {1e6 * own / messages:8.1f} own {calls:8d} calls  {name}\n")
    return out.getvalue()


def summarise(path: Path) -> str:
    path = Path(path)
    return summarise_cprofile(path) if path.suffix == ".prof" else summarise_raw(path)


if __name__ == "__main__":
    for arg in sys.argv[1:]:
        print(summarise(Path(arg)))
