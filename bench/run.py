"""The benchmark: mailward beside Postfix and aiosmtpd, in one run, with one client.

    python -m bench.run            # quick: a few seconds per cell (for development)
    python -m bench.run --short    # a quick check: 4 KiB, C=10/100, M=1/20, 1 round, no extras (~2 min)
    python -m bench.run --full     # the matrix as recorded in docs/performance.md (longer cells, 2 rounds)
    python -m bench.run --fs both  # also a second table with every spool on its own loop-mounted ext4
    make bench BENCH_ARGS=--full

For every cell of the matrix (message size 4 KiB and 100 KiB x C = 1, 10, 100 concurrent
connections x 1 and 20 messages per connection, STARTTLS on every connection, PIPELINING
used where offered) each server is started fresh, warmed up, measured with the same load
generator (bench/load.py), and stopped; servers alternate within a cell, and the order rotates
from cell to cell. Each cell is printed as msgs/s and the ratio mailward / peer.

Also measured in the same run: the machine's limit (`openssl s_time -new` against
`openssl s_server`, same certificate), 5,000 concurrent idle TLS sessions on mailward (RSS at
rest), outbound delivery when mailward has it, and the access map (bench/accessmap.py).

Spools: by default (``--fs dir``) every server's queue lives in the work folder (``/var/tmp``,
on the machine's root file system), the file system users have. ``--fs both`` measures the
matrix a second time with every spool on a fresh ext4 of its own (a sparse image,
loop-mounted; root only) and reports it as a second table, so that the effect of other work on
the machine's disk can be told apart; ``--fs loop`` measures only that.

Repetitions: ``--rounds N`` runs every cell N times; ``--stat best`` (the default) keeps each
server's best round, ``--stat median`` the median (use it with 3 or more rounds).

Results: bench/results/latest.md (tables, targets, machine), latest.json, latest.png (chart).
Run ``bash bench/setup.sh`` first (Postfix, openssl, the ``bench`` extra); ``make bench`` does.

Profiling: ``--profile py-spy`` (or ``cprofile``) runs only mailward, under the profiler, on the
cells given, and writes the profile and a summary by category to bench/results/
(see bench/profile.py).
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import importlib.util
import json
import os
import platform
import shutil
import signal
import ssl
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict
from pathlib import Path

from bench import load, peers

RESULTS = Path(__file__).resolve().parent / "results"
SIZES = (4096, 102400)
CONCURRENCY = (1, 10, 100)
PER_CONNECTION = (1, 20)
PEERS = ("mailward", "postfix", "aiosmtpd-discard", "aiosmtpd-fsync")


def cell_name(size: int, c: int, m: int) -> str:
    return f"{size // 1024} KiB, C={c}, M={m}"


def machine() -> dict:
    cpu = "?"
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    try:
        from OpenSSL import SSL
        pyopenssl_ssl = SSL.SSLeay_version(SSL.SSLEAY_VERSION).decode()
    except Exception:
        pyopenssl_ssl = "?"
    openssl_cli = subprocess.run(["openssl", "version"], capture_output=True, text=True).stdout.strip()
    return {
        "date": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "nproc": os.cpu_count(), "cpu": cpu, "kernel": platform.release(),
        "memory_gb": round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1),
        "python": platform.python_version(), "client_openssl": ssl.OPENSSL_VERSION,
        "mailward_openssl": pyopenssl_ssl, "openssl_cli": openssl_cli,
        "postfix": peers.postfix_version() if peers.postfix_available() else "not installed",
        "loadavg_start": os.getloadavg()[0],
    }


MAILWARD_SRC: Path | None = None   # the exported commit that is measured (see --mailward)
MAILWARD_WORKERS = 0               # server.workers for mailward (0: the key is left out)
MAILWARD_SPOOL_FORMAT = ""         # spool.format for mailward ("": the key is left out)
MAILWARD_SPOOL_EXTRA: list[str] = []  # more [spool] lines (KEY=VALUE, TOML)


def supports_workers(src: Path | None) -> bool:
    base = (src or Path(__file__).resolve().parent.parent) / "mailward"
    for config, mark in ((base / "config.py", '"workers"'), (base / "config" / "settings.py", "workers:")):
        try:
            if mark in config.read_text():
                return True
        except OSError:
            continue
    return False


def supports_spool_format(src: Path | None) -> bool:
    settings = (src or Path(__file__).resolve().parent.parent) / "mailward" / "config" / "settings.py"
    try:
        return "format:" in settings.read_text().split("class SpoolSettings", 1)[1].split("@dataclass", 1)[0]
    except (OSError, IndexError):
        return False


def export_mailward(rev: str, dest: Path, patch: Path | None = None) -> tuple[Path | None, str]:
    """(folder to run mailward from, description). ``worktree``: this checkout as it is.
    ``patch``: a diff applied to the exported copy (``patch -p1``), never to the checkout."""
    root = Path(__file__).resolve().parent.parent
    git = ["git", "-C", str(root)]
    if rev == "worktree":
        head = subprocess.run(git + ["rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
        dirty = subprocess.run(git + ["status", "--porcelain", "--", "mailward"], capture_output=True,
                               text=True).stdout.strip()
        return None, f"the working tree at {head}" + (" with uncommitted changes in mailward/" if dirty else "")
    commit = subprocess.run(git + ["rev-parse", "--short", rev], capture_output=True, text=True, check=True).stdout.strip()
    dest.mkdir(parents=True, exist_ok=True)
    archive = subprocess.run(git + ["archive", commit, "mailward"], capture_output=True, check=True).stdout
    subprocess.run(["tar", "-x", "-C", str(dest)], input=archive, check=True)
    if patch is not None:
        subprocess.run(["patch", "-s", "-p1", "-d", str(dest), "-i", str(patch.resolve())], check=True)
    subject = subprocess.run(git + ["log", "-1", "--format=%cd %s", "--date=format:%Y-%m-%d %H:%M", commit],
                             capture_output=True, text=True).stdout.strip()
    return dest, f"commit {commit} ({subject[:80]})" + (f" with {patch.name} applied" if patch else "")


def make_server(name: str, workdir: Path, cert: Path, key: Path, ca: Path, profile: str = "",
                profile_out: Path | None = None) -> peers.Server:
    if name == "mailward":
        return peers.Mailward(workdir, cert, key, ca, profile=profile, profile_out=profile_out, src=MAILWARD_SRC,
                              workers=MAILWARD_WORKERS, spool_format=MAILWARD_SPOOL_FORMAT,
                              spool_extra=MAILWARD_SPOOL_EXTRA)
    if name == "postfix":
        return peers.Postfix(workdir, cert, key, ca)
    if name.startswith("aiosmtpd-"):
        return peers.Aiosmtpd(workdir, cert, key, ca, mode=name.split("-", 1)[1])
    raise ValueError(name)


def run_cell(server: peers.Server, size: int, c: int, m: int, duration: float, warmup: float,
             pipelining: bool) -> load.Result:
    base = dict(port=server.port, concurrency=c, size=size, per_connection=m, pipelining=pipelining,
                messages=10**9)
    if warmup:
        asyncio.run(load.run_load(load.Spec(duration=warmup, **base)))
    return asyncio.run(load.run_load(load.Spec(duration=duration, pid=server.pid, **base)))


def measure_matrix(into: dict, workdir: Path, *, cells, names, rounds, cert, key, ca, duration, warmup,
                   pipelining, profile="", profile_out=None, stat="best") -> None:
    """Every cell for every server, ``rounds`` times; runs are appended to ``into[cell]["runs"]``.
    Servers alternate within a cell and the order rotates from cell to cell and round to round."""
    for rnd in range(rounds):
        for i, (size, c, m) in enumerate(cells):
            key_ = cell_name(size, c, m)
            cell = into.setdefault(key_, {"size": size, "c": c, "m": m, "stat": stat, "runs": {}})
            k = (i + rnd) % len(names)
            for name in names[k:] + names[:k]:
                out = profile_out.with_name(f"{profile_out.stem}-{size}-{c}-{m}{profile_out.suffix}") \
                    if profile_out else None
                server = make_server(name, workdir, cert, key, ca, profile, out)
                try:
                    with server:
                        res = run_cell(server, size, c, m, duration, warmup, pipelining)
                except Exception as err:  # a peer that fails to start is reported, not fatal
                    print(f"  {key_:<22} {name:<17} error: {err}", flush=True)
                    cell["runs"].setdefault(name, []).append({"error": str(err)[:500]})
                    continue
                run = asdict(res)
                run["loadavg"] = os.getloadavg()[0]
                cell["runs"].setdefault(name, []).append(run)
                print(f"  {key_:<22} {name:<17} {res.line()}", flush=True)
                for e in res.errors[:3]:
                    print(f"      error: {e}", flush=True)


def fstype(path: Path) -> str:
    return subprocess.run(["findmnt", "-no", "FSTYPE", "-T", str(path)], capture_output=True,
                          text=True).stdout.strip() or "?"


def describe_fs(path: Path, loop: bool) -> str:
    """'ext4 (its own, loop-mounted)' or 'ext4 on /dev/vda, mounted at /, 23% used'."""
    if loop:
        return f"{fstype(path)} (its own, loop-mounted)"
    r = subprocess.run(["findmnt", "-no", "FSTYPE,SOURCE,TARGET", "-T", str(path)], capture_output=True, text=True)
    parts = r.stdout.split()
    if len(parts) < 3:
        return fstype(path)
    try:
        st = os.statvfs(path)
        used = f", {100 * (st.f_blocks - st.f_bfree) // max(1, st.f_blocks)}% used"
    except OSError:
        used = ""
    return f"{parts[0]} on {parts[1]}, mounted at {parts[2]} (the machine's own{used})"


def idle_sessions(name: str, workdir, cert, key, ca, count: int) -> dict:
    server = make_server(name, workdir, cert, key, ca)
    with server:
        res = asyncio.run(load.run_idle(load.Spec(port=server.port, pid=server.pid, timeout=120), count))
    print(f"  {name}: {res.line()}", flush=True)
    return asdict(res)


def mount_loop_fs(workdir: Path, size_gb: int = 8) -> Path:
    """A fresh ext4 file system in a sparse image, loop-mounted at workdir/fs (root only)."""
    image, mnt = workdir / "spool-fs.img", workdir / "fs"
    mnt.mkdir(exist_ok=True)
    subprocess.run(["truncate", "-s", f"{size_gb}G", str(image)], check=True)
    subprocess.run(["mkfs.ext4", "-q", "-F", str(image)], check=True)
    subprocess.run(["mount", "-o", "loop", str(image), str(mnt)], check=True)
    mnt.chmod(0o755)
    return mnt


def loop_fs_possible() -> bool:
    return os.geteuid() == 0 and bool(shutil.which("mkfs.ext4")) and bool(shutil.which("losetup")) \
        and os.path.exists("/dev/loop-control")


def unmount_loop_fs(workdir: Path) -> None:
    mnt = workdir / "fs"
    if os.path.ismount(mnt):
        subprocess.run(["umount", str(mnt)], check=False)


def accessmap_bench(entries: int, lookups: int) -> str:
    script = Path(__file__).resolve().parent / "accessmap.py"
    if not script.exists():
        return "bench/accessmap.py does not exist yet."
    r = subprocess.run([sys.executable, str(script), "--entries", str(entries), "--lookups", str(lookups)],
                       capture_output=True, text=True, cwd=script.parent.parent, timeout=1800,
                       env=dict(os.environ, PYTHONPATH=str(script.parent.parent)))
    return (r.stdout + (f"\n(exit {r.returncode}) {r.stderr[-800:]}" if r.returncode else "")).strip()


def outbound_available() -> bool:
    return importlib.util.find_spec("mailward.deliver.outbound") is not None


def outbound_rate(workdir: Path, cert: Path, key: Path, ca: Path, count: int, size: int = 4096,
                  kick: float = 0.1, stall_limit: float = 10.0) -> dict:
    """mailward's delivery rate to an SMTP sink over STARTTLS, queue to empty.

    1. mailward with delivery parked receives ``count`` messages (C=10, M=20, pipelining): that
       run's msgs/s is the inbound rate it is compared with.
    2. mailward stops; it starts again on the same spool with ``bench.invalid`` routed to an
       aiosmtpd sink (discard, STARTTLS offered): the runner finds every message due now and
       delivers with its defaults (max_deliveries, max_per_destination, connection reuse).
    3. The rate is messages / (time of the last removal - time of the first removal) from the
       queue folder, polled every 20 ms.

    ``kick`` (seconds, 0: never): send SIGUSR1 (``mailward queue flush``) that often while the
    queue drains. The runner of 2026-11-26 takes at most ``max_deliveries`` due messages per
    pass and drops the rest of the due list from its timetable (deliver/runner.py ``_loop``),
    so a queue of 1,000 due messages delivers 20 or so and then waits; kicking measures what
    delivery can do once that is fixed, and the report says how many kicks it took.
    """
    sink = peers.Aiosmtpd(workdir, cert, key, ca, mode="discard")
    mw = peers.Mailward(workdir, cert, key, ca, src=MAILWARD_SRC, workers=MAILWARD_WORKERS,
                        spool_format=MAILWARD_SPOOL_FORMAT, spool_extra=MAILWARD_SPOOL_EXTRA)
    try:
        sink.start()
        mw.start()
        inbound = asyncio.run(load.run_load(load.Spec(port=mw.port, concurrency=10, per_connection=20,
                                                      messages=count, size=size, pipelining=True, pid=mw.pid)))
        mw.stop()
        queued = mw.spool_files()
        mw.delivery, mw.sink_port = "sink", sink.port
        cpu_sink0 = load.tree_cpu_seconds(sink.pid)
        t0 = time.monotonic()
        mw.start(fresh=False)
        first = last = None
        left = queued
        kicks, last_kick = 0, time.monotonic()
        changed, prev = time.monotonic(), queued
        deadline = time.monotonic() + max(120.0, count / 20)
        while time.monotonic() < deadline:
            left = mw.spool_files()
            now = time.monotonic()
            if left != prev:
                changed, prev = now, left
            if first is None and left < queued:
                first = now
            if left == 0:
                last = now
                break
            if not kick and now - changed > stall_limit:
                break  # stuck: report what was delivered
            if kick and first is not None and now - last_kick >= kick:
                os.kill(mw.pid, signal.SIGUSR1)
                kicks += 1
                last_kick = now
            time.sleep(0.02)
        cpu_mw = load.tree_cpu_seconds(mw.pid)
        cpu_sink = load.tree_cpu_seconds(sink.pid) - cpu_sink0
        delivered = queued - left
        span = (last or time.monotonic()) - (first or t0)
        rate = (delivered - 1) / span if delivered > 1 and span > 0 else 0.0
        log_text = (mw.dir / "mailward.log").read_text(errors="replace")
        deferred = log_text.count("stat=Deferred")
        res = {"messages": queued, "delivered": delivered, "seconds": span, "msgs_per_s": rate,
               "inbound_msgs_per_s": inbound.msgs_per_s, "inbound_failures": inbound.failures,
               "deferred_log_lines": deferred, "mailward_cpu_ms_per_msg": cpu_mw * 1000 / max(1, delivered),
               "sink_cpu_ms_per_msg": cpu_sink * 1000 / max(1, delivered), "size": size,
               "time_to_first_delivery": (first - t0) if first else None, "kicks": kicks, "kick_every": kick}
        return res
    finally:
        mw.stop()
        mw.cleanup()
        sink.stop()
        sink.cleanup()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.run", description=__doc__.split("\n\n")[0],
                                 epilog="Results go to bench/results/ (latest.md, latest.json, latest.png).")
    ap.add_argument("--full", action="store_true", help="long cells, 2 rounds, 5,000 idle sessions, 1M-entry map")
    ap.add_argument("--duration", type=float, help="seconds of load per cell (quick 2, full 6)")
    ap.add_argument("--warmup", type=float, help="seconds of load before each measurement (quick 0.5, full 1)")
    ap.add_argument("--rounds", type=int, help="times each server runs each cell; the best is kept (quick 1, full 2)")
    ap.add_argument("--peers", default=",".join(PEERS), help=f"comma-separated subset of {','.join(PEERS)}")
    ap.add_argument("--sizes", default=",".join(map(str, SIZES)))
    ap.add_argument("--concurrency", default=",".join(map(str, CONCURRENCY)))
    ap.add_argument("--per-connection", default=",".join(map(str, PER_CONNECTION)))
    ap.add_argument("--no-pipelining", action="store_true")
    ap.add_argument("--idle", type=int, help="idle TLS sessions to hold (quick 500, full 5000; 0: skip)")
    ap.add_argument("--outbound", type=int, help="messages for the outbound run (quick 1000, full 5000; 0: skip)")
    ap.add_argument("--accessmap-entries", type=int, help="(quick 100000, full 1000000; 0: skip)")
    ap.add_argument("--profile", choices=("py-spy", "cprofile"), help="profile mailward on the chosen cells")
    ap.add_argument("--out", type=Path, default=RESULTS)
    ap.add_argument("--tag", default="latest", help="results file name stem")
    ap.add_argument("--workdir", type=Path, help="where servers keep spools (default: a new folder in /var/tmp)")
    ap.add_argument("--keep", action="store_true", help="keep the work folder")
    ap.add_argument("--mailward", default="HEAD", metavar="REV",
                    help="the commit of mailward to measure (exported with git archive; default HEAD), or "
                         "'worktree' for this checkout with its uncommitted changes")
    ap.add_argument("--workers", type=int,
                    help="mailward's server.workers (default: one per core when the measured commit has the "
                         "setting, as its documentation recommends; 1: a single process)")
    ap.add_argument("--fs", choices=("dir", "loop", "both"), default="dir",
                    help="dir (default): spools in the work folder, on the file system users have (/var/tmp, "
                         "the root file system); loop: every spool on a fresh ext4 of its own (a sparse image, "
                         "loop-mounted; root only); both: the matrix on dir, then again on loop (a second table)")
    ap.add_argument("--short", action="store_true",
                    help="a quick check: 4 KiB, C=10 and 100, M=1 and 20, 2 s cells, 1 round, no idle sessions, "
                         "outbound or access map (options given explicitly still apply)")
    ap.add_argument("--stat", choices=("best", "median"), default="best",
                    help="each server's figure for a cell: its best round (default) or the median round")
    ap.add_argument("--spool-format", default="",
                    help="mailward's spool.format (files or log; default: the key is left out, mailward's default)")
    ap.add_argument("--spool-set", action="append", default=[], metavar="KEY=VALUE",
                    help="another [spool] setting for mailward, as TOML (e.g. log_sync=\"loop\"); repeatable")
    ap.add_argument("--patch", type=Path,
                    help="a diff to apply to the exported mailward (not with --mailward worktree), e.g. "
                         "bench/patches/spool-from-settings.diff")
    ap.add_argument("--readme", action="store_true",
                    help="also write the results into docs/performance.md between <!-- bench-results:start/end -->")
    args = ap.parse_args(argv)

    full = args.full
    if args.short:
        args.sizes = args.sizes if args.sizes != ",".join(map(str, SIZES)) else "4096"
        args.concurrency = args.concurrency if args.concurrency != ",".join(map(str, CONCURRENCY)) else "10,100"
        for attr in ("idle", "outbound", "accessmap_entries"):
            if getattr(args, attr) is None:
                setattr(args, attr, 0)
    duration = args.duration or (6.0 if full else 2.0)
    warmup = args.warmup if args.warmup is not None else (1.0 if full else 0.5)
    rounds = args.rounds or (2 if full else 1)
    idle_count = args.idle if args.idle is not None else (5000 if full else 500)
    map_entries = args.accessmap_entries if args.accessmap_entries is not None else (1_000_000 if full else 100_000)
    out_count = args.outbound if args.outbound is not None else (5000 if full else 1000)
    names = [p for p in args.peers.split(",") if p]
    if args.profile:
        names = ["mailward"]
    if "postfix" in names and not peers.postfix_available():
        print("bench: Postfix is not installed (or not root): run bash bench/setup.sh; skipping it", file=sys.stderr)
        names.remove("postfix")
    sizes = [int(x) for x in args.sizes.split(",")]
    concs = [int(x) for x in args.concurrency.split(",")]
    per_conns = [int(x) for x in args.per_connection.split(",")]
    cells = [(s, c, m) for s in sizes for c in concs for m in per_conns]

    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="mailward-bench-", dir="/var/tmp"))
    workdir.mkdir(parents=True, exist_ok=True)
    workdir.chmod(0o755)  # Postfix's own user walks to its queue folder
    base = workdir
    if args.fs in ("loop", "both") and not loop_fs_possible():
        print("bench: a loop-mounted file system needs root, mkfs.ext4 and /dev/loop-control; measuring the "
              "work folder's file system only", file=sys.stderr)
        args.fs = "dir"
    loop_dir: Path | None = None
    if args.fs in ("loop", "both"):
        loop_dir = mount_loop_fs(base)
    if args.fs == "loop":
        workdir = loop_dir
    fs = fstype(workdir)
    if fs == "tmpfs":
        print(f"bench: warning: {workdir} is on tmpfs, where fsync costs nothing; use --workdir on a disk",
              file=sys.stderr)
    args.out.mkdir(parents=True, exist_ok=True)
    global MAILWARD_SRC, MAILWARD_WORKERS, MAILWARD_SPOOL_FORMAT
    if args.patch and args.mailward == "worktree":
        ap.error("--patch applies to an exported commit, not to the working tree")
    MAILWARD_SRC, measured = export_mailward(args.mailward, base / "src", args.patch)
    if supports_workers(MAILWARD_SRC):
        MAILWARD_WORKERS = args.workers or (1 if args.profile == "cprofile" else os.cpu_count() or 1)
        measured += f", server.workers = {MAILWARD_WORKERS}"
    elif args.workers and args.workers > 1:
        print("bench: this mailward has no server.workers setting; measuring one process", file=sys.stderr)
    if args.spool_set:
        MAILWARD_SPOOL_EXTRA[:] = args.spool_set
        measured += ", " + ", ".join(f"spool.{kv}" for kv in args.spool_set)
    if args.spool_format:
        if supports_spool_format(MAILWARD_SRC):
            MAILWARD_SPOOL_FORMAT = args.spool_format
            measured += f", spool.format = {args.spool_format!r}"
        else:
            print("bench: this mailward has no spool.format setting; measuring its only spool", file=sys.stderr)
    info = machine()
    info["mailward"] = measured
    info["filesystem"] = describe_fs(workdir, args.fs == "loop")
    mode = "full" if full else ("short" if args.short else "quick")
    print(f"bench: {info['date']}, {info['nproc']} cores ({info['cpu']}), kernel {info['kernel']}, "
          f"workdir {workdir} ({fs}); {mode}: {duration}s per cell, "
          f"{rounds} round(s); mailward: {measured}", flush=True)
    ca, cert, key = peers.make_certs(base)

    report: dict = {"machine": info, "mode": mode, "duration": duration, "warmup": warmup,
                    "rounds": rounds, "stat": args.stat, "pipelining": not args.no_pipelining, "peers": names,
                    "cells": {}, "openssl": [], "idle": {}, "outbound": None, "accessmap": None}
    try:
        rate = peers.openssl_handshake_rate(cert, key, 5 if full else 2)
        report["openssl"].append(rate)
        print(f"openssl s_time -new: {rate:.0f} full handshakes/s", flush=True)

        profile_out = None
        if args.profile:
            suffix = "raw" if args.profile == "py-spy" else "prof"
            profile_out = args.out / f"profile-{args.tag}.{suffix}"
        matrix = dict(cells=cells, names=names, rounds=rounds, cert=cert, key=key, ca=ca, duration=duration,
                      warmup=warmup, pipelining=not args.no_pipelining, profile=args.profile or "",
                      profile_out=profile_out, stat=args.stat)
        measure_matrix(report["cells"], workdir, **matrix)
        if args.fs == "both" and loop_dir is not None and not args.profile:
            print(f"the same cells, every spool on its own loop-mounted ext4 ({loop_dir}):", flush=True)
            report["second"] = {"filesystem": describe_fs(loop_dir, True), "cells": {}}
            measure_matrix(report["second"]["cells"], loop_dir, **matrix)
        if args.profile:
            from bench import profile as prof
            for path in sorted(args.out.glob(f"profile-{args.tag}-*")):
                if path.suffix in (".raw", ".prof"):
                    summary = prof.summarise(path)
                    path.with_suffix(".txt").write_text(summary)
                    print(f"\n{path.name}:\n{summary}")
            return 0

        rate = peers.openssl_handshake_rate(cert, key, 5 if full else 2)
        report["openssl"].append(rate)
        print(f"openssl s_time -new (again): {rate:.0f} full handshakes/s", flush=True)

        if MAILWARD_WORKERS > 1 and 102400 in sizes and 100 in concs:
            # The memory target is about one process; measure it as well, beside the workers' tree.
            print("memory of one receiving process (server.workers = 1), 100 KiB, C=100:", flush=True)
            report["single_process"] = {}
            for m in per_conns:
                server = peers.Mailward(workdir, cert, key, ca, src=MAILWARD_SRC, workers=1)
                with server:
                    res = run_cell(server, 102400, 100, m, duration, warmup, not args.no_pipelining)
                report["single_process"][cell_name(102400, 100, m)] = asdict(res)
                print(f"  {cell_name(102400, 100, m):<22} mailward, 1 process {res.line()}", flush=True)

        if idle_count:
            print(f"idle TLS sessions: {idle_count}", flush=True)
            for name in [n for n in ("mailward", "aiosmtpd-discard") if n in names]:
                report["idle"][name] = idle_sessions(name, workdir, cert, key, ca, idle_count)
        if outbound_available() and out_count:
            print(f"outbound: {out_count} messages of 4 KiB to an aiosmtpd sink over STARTTLS", flush=True)
            try:
                report["outbound"] = outbound_rate(workdir, cert, key, ca, out_count, kick=0)
                ob = report["outbound"]
                print(f"  without help: {ob['delivered']}/{ob['messages']} delivered, {ob['msgs_per_s']:.0f} msgs/s",
                      flush=True)
                if ob["delivered"] < ob["messages"]:
                    report["outbound_stuck"] = ob
                    report["outbound"] = outbound_rate(workdir, cert, key, ca, out_count, kick=0.1)
            except Exception as err:
                report["outbound"] = f"outbound run failed: {err}"
        elif not outbound_available():
            report["outbound"] = "mailward has no outbound delivery yet (mailward/deliver/outbound.py is absent)"
        print(f"outbound: {report['outbound']}", flush=True)
        if map_entries:
            print(f"access map: {map_entries} entries", flush=True)
            report["accessmap"] = accessmap_bench(map_entries, 200_000 if full else 50_000)
            print(report["accessmap"], flush=True)
    finally:
        if loop_dir is not None:
            unmount_loop_fs(base)
        if not args.keep:
            shutil.rmtree(base, ignore_errors=True)

    report["machine"]["loadavg_end"] = os.getloadavg()[0]
    from bench import report as rep
    (args.out / f"{args.tag}.json").write_text(json.dumps(report, indent=1))
    md = rep.markdown(report, chart=f"{args.tag}.png")
    (args.out / f"{args.tag}.md").write_text(md)
    try:
        rep.chart(report, args.out / f"{args.tag}.png")
    except ImportError:
        print("bench: matplotlib is missing (pip install -e '.[bench]'): no chart", file=sys.stderr)
    if args.readme:
        readme = Path(__file__).resolve().parent.parent / "docs" / "performance.md"
        if rep.update_readme(readme, report, f"../bench/results/{args.tag}"):
            print(f"bench: updated the results in {readme}")
        else:
            print(f"bench: {readme} has no <!-- bench-results:start --> marker; not changed", file=sys.stderr)
    print("\n" + rep.summary_table(report))
    if report.get("second"):
        print(f"\nevery spool on {report['second']['filesystem']}:\n" + rep.summary_table(report, report["second"]["cells"]))
    print(f"\nbench: wrote {args.out / (args.tag + '.md')}, .json, .png")
    return 0


if __name__ == "__main__":
    sys.exit(main())
