"""Turn a benchmark run (the dict bench/run.py builds) into Markdown, a chart and target checks.

Each server's figure for a cell is its best round (highest msgs/s) — the same rule for every
server; with a busy shared machine the best round is the one least disturbed by others. A run
made with ``--stat median`` marks its cells ``"stat": "median"``: then the median round is used.

``report["cells"]`` is the main table (spools on the work folder's file system by default);
``report["second"]`` (``--fs both``) holds the same cells measured with every spool on its own
loop-mounted ext4, shown as a second table.
"""

from __future__ import annotations

from pathlib import Path

LABELS = {"mailward": "mailward", "postfix": "Postfix", "aiosmtpd-discard": "aiosmtpd (discard)",
          "aiosmtpd-fsync": "aiosmtpd (fsync)"}
COLOURS = {"mailward": "#1f77b4", "postfix": "#d62728", "aiosmtpd-discard": "#7f7f7f",
           "aiosmtpd-fsync": "#bcbd22"}


def best(cell: dict, name: str) -> dict | None:
    """The server's run that stands for the cell: its best round, or its median one."""
    runs = [r for r in cell["runs"].get(name, []) if "error" not in r and r["msgs"]]
    if not runs:
        return None
    if cell.get("stat") == "median":
        runs.sort(key=lambda r: r["msgs_per_s"])
        return runs[(len(runs) - 1) // 2]
    return max(runs, key=lambda r: r["msgs_per_s"])


def ratio(a: dict | None, b: dict | None) -> float | None:
    if not a or not b or not b["msgs_per_s"]:
        return None
    return a["msgs_per_s"] / b["msgs_per_s"]


def fmt_ratio(x: float | None, goal: float | None = None) -> str:
    if x is None:
        return "–"
    mark = "" if goal is None else (" ✓" if x >= goal else " ✗")
    return f"{x:.2f}×{mark}"


def openssl_rate(report: dict) -> float:
    rates = report.get("openssl") or []
    return sum(rates) / len(rates) if rates else 0.0


def targets(report: dict) -> list[tuple[str, bool | None, str]]:
    """(target, met, detail) for each performance target (docs/performance.md)."""
    out = []
    cells = report["cells"]
    peers = report["peers"]

    def check(goal: float, peer: str, sizes: set[int]) -> tuple[bool | None, str]:
        if peer not in peers:
            return None, f"{peer} not run"
        bad, seen = [], 0
        for name, cell in cells.items():
            if cell["size"] not in sizes:
                continue
            r = ratio(best(cell, "mailward"), best(cell, peer))
            if r is None:
                continue
            seen += 1
            if r < goal:
                bad.append(f"{name} ({r:.2f}×)")
        if not seen:
            return None, "no cell measured"
        return not bad, ("every cell" if not bad else "short: " + "; ".join(bad))

    for text, goal, peer, sizes in (("≥ 1.5× Postfix in every 4 KiB cell", 1.5, "postfix", {4096}),
                                    ("≥ 1.0× Postfix in every 100 KiB cell", 1.0, "postfix", {102400}),
                                    ("≥ 1.0× aiosmtpd (no fsync) in every cell", 1.0, "aiosmtpd-discard",
                                     {4096, 102400})):
        met, detail = check(goal, peer, sizes)
        out.append((text, met, detail))

    limit = openssl_rate(report)
    m1 = [(n, best(c, "mailward")) for n, c in cells.items() if c["m"] == 1]
    m1 = [(n, r) for n, r in m1 if r]
    if limit and m1:
        name, r = max(m1, key=lambda x: x[1]["handshakes_per_s"])
        share = r["handshakes_per_s"] / limit
        out.append(("1 message per connection: ≥ 90% of OpenSSL's full handshakes/s", share >= 0.9,
                    f"best {r['handshakes_per_s']:.0f}/s ({name}) = {share:.0%} of {limit:.0f}/s"))
    big = [(n, best(c, "mailward")) for n, c in cells.items() if c["size"] == 102400 and c["c"] == 100]
    big = [(n, r) for n, r in big if r]
    single = report.get("single_process") or {}
    if single:
        peak1 = max(r["peak_rss_mb"] for r in single.values())
        detail = f"{peak1:.0f} MB with one receiving process"
        if big:
            r2 = max((r for _, r in big), key=lambda r: r["peak_rss_mb"])
            detail += (f"; {r2['peak_rss_mb']:.0f} MB RSS ({r2['peak_pss_mb']:.0f} MB PSS) for the master and its "
                       f"workers as measured above")
        out.append(("peak RSS < 100 MB at C=100 with 100 KiB messages", peak1 < 100, detail))
    elif big:
        peak = max(r["peak_rss_mb"] for _, r in big)
        out.append(("peak RSS < 100 MB at C=100 with 100 KiB messages", peak < 100, f"{peak:.0f} MB"))
    idle = (report.get("idle") or {}).get("mailward")
    if idle:
        ok = idle["sessions"] >= 5000 and idle["rss_at_rest_mb"] < 500
        detail = (f"{idle['sessions']} sessions: {idle['rss_at_rest_mb']:.0f} MB, the whole process tree "
                  f"({idle['kb_per_session']:.0f} KB each)")
        if idle["sessions"] < 5000:
            ok = None
            detail += f"; projected for 5,000: {idle['rss_before_mb'] + idle['kb_per_session'] * 5000 / 1024:.0f} MB"
        out.append(("5,000 idle TLS sessions in < 500 MB", ok, detail))
    ob = report.get("outbound")
    if isinstance(ob, dict) and ob.get("msgs_per_s"):
        out.append(("outbound delivery ≥ the inbound rate to a local sink", ob["msgs_per_s"] >= ob["inbound_msgs_per_s"],
                    f"{ob['msgs_per_s']:.0f} msgs/s out vs {ob['inbound_msgs_per_s']:.0f} msgs/s in "
                    f"(4 KiB, C=10, M=20)"))
    else:
        out.append(("outbound delivery ≥ the inbound rate to a local sink", None, str(ob or "not run")))
    return out


def outbound_text(ob) -> str:
    if not isinstance(ob, dict):
        return str(ob or "not run")
    return (f"{ob['delivered']} of {ob['messages']} queued messages ({ob['size'] // 1024} KiB) delivered to an "
            f"aiosmtpd sink over STARTTLS in {ob['seconds']:.1f} s: **{ob['msgs_per_s']:.0f} msgs/s** "
            f"(mailward CPU {ob['mailward_cpu_ms_per_msg']:.2f} ms/msg including start-up, sink "
            f"{ob['sink_cpu_ms_per_msg']:.2f} ms/msg; {ob['deferred_log_lines']} deferrals). The same mailward "
            f"received them at {ob['inbound_msgs_per_s']:.0f} msgs/s (C=10, M=20, delivery parked). Defaults: "
            f"max_deliveries 20, max_per_destination 4, 100 messages per connection.")


def summary_table(report: dict, cells: dict | None = None) -> str:
    peers = [p for p in report["peers"] if p != "mailward"]
    head = "| cell | mailward msgs/s | " + " | ".join(f"{LABELS[p]} msgs/s | ratio" for p in peers) + " |"
    sep = "|---|---:|" + "---:|---:|" * len(peers)
    rows = [head, sep]
    goals = {"postfix": None, "aiosmtpd-discard": 1.0, "aiosmtpd-fsync": None}
    for name, cell in (report["cells"] if cells is None else cells).items():
        mw = best(cell, "mailward")
        row = [name, f"{mw['msgs_per_s']:.0f}" if mw else "–"]
        for p in peers:
            r = best(cell, p)
            goal = goals.get(p)
            if p == "postfix":
                goal = 1.5 if cell["size"] == 4096 else 1.0
            row += [f"{r['msgs_per_s']:.0f}" if r else "–", fmt_ratio(ratio(mw, r), goal)]
        rows.append("| " + " | ".join(row) + " |")
    return "\n".join(rows)


def cpu_table(report: dict, cells: dict | None = None) -> str:
    """Server CPU (user + system of the whole process tree) per message: less disturbed by a
    busy machine than msgs/s."""
    peers = report["peers"]
    rows = ["| cell | " + " | ".join(LABELS[p] for p in peers) + " |", "|---|" + "---:|" * len(peers)]
    for name, cell in (report["cells"] if cells is None else cells).items():
        vals = []
        for p in peers:
            runs = [r for r in cell["runs"].get(p, []) if "error" not in r and r["msgs"]]
            vals.append(f"{min(r['server_cpu_ms_per_msg'] for r in runs):.2f}" if runs else "–")
        rows.append(f"| {name} | " + " | ".join(vals) + " |")
    return "\n".join(rows)


def detail_table(report: dict) -> str:
    rows = ["| cell | server | msgs/s | p50 ms | p99 ms | handshakes/s | peak RSS MB | peak PSS MB | "
            "server CPU ms/msg | other work (cores) | failures |",
            "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for name, cell in report["cells"].items():
        for p in report["peers"]:
            r = best(cell, p)
            if not r:
                errs = [x.get("error") for x in cell["runs"].get(p, []) if "error" in x]
                rows.append(f"| {name} | {LABELS[p]} | error: {errs[0][:80] if errs else 'no run'} ||||||||")
                continue
            rows.append(f"| {name} | {LABELS[p]} | {r['msgs_per_s']:.0f} | {r['p50_ms']:.1f} | {r['p99_ms']:.1f} | "
                        f"{r['handshakes_per_s']:.0f} | {r['peak_rss_mb']:.0f} | {r['peak_pss_mb']:.0f} | "
                        f"{r['server_cpu_ms_per_msg']:.2f} | {r.get('other_cores', 0):.2f} | {r['failures']} |")
    return "\n".join(rows)


def markdown(report: dict, chart: str = "latest.png") -> str:
    m = report["machine"]
    lines = [
        f"# mailward benchmark: {m['date']}",
        "",
        f"mailward: {m.get('mailward', 'the working tree')}.",
        "",
        f"Machine: {m['nproc']} cores ({m['cpu']}), {m['memory_gb']} GB, Linux {m['kernel']}, "
        f"spools on {m.get('filesystem', '?')} (first table)"
        + (f" and on {report['second']['filesystem']} (second table)" if report.get("second") else "")
        + f"; Python {m['python']}; Postfix {m['postfix']}; "
        f"mailward's TLS: pyOpenSSL over {m['mailward_openssl']}; client: stdlib ssl over {m['client_openssl']}; "
        f"`openssl`: {m['openssl_cli']}. Load average {m['loadavg_start']:.2f} at the start, "
        f"{m.get('loadavg_end', 0):.2f} at the end (the machine is shared: figures are noisy).",
        "",
        f"Mode: {report['mode']} — {report['duration']:.0f} s of load per cell after {report['warmup']:.1f} s of "
        f"warm-up, {report['rounds']} round(s), {report.get('stat', 'best')} round kept; every server started fresh for each cell; "
        f"STARTTLS on every connection; PIPELINING {'used where offered' if report['pipelining'] else 'off'}. "
        f"mailward: `spool.fsync = true` (group commit), recipient in a non-local domain (nothing delivered "
        f"during the run). Postfix: cleanup's fsynced queue, delivery to `discard:`.",
        "",
        "Machine limit: `openssl s_time -new` against `openssl s_server` (same certificate): "
        + ", ".join(f"{r:.0f}" for r in report.get("openssl", [])) + " full handshakes/s.",
        "",
        f"![msgs/s per cell]({chart})",
        "",
        "## Messages per second, and mailward / peer",
        "",
        "✓/✗: the target for that column (Postfix ≥ 1.5× at 4 KiB and ≥ 1.0× at 100 KiB; aiosmtpd without "
        "fsync ≥ 1.0×).",
        "",
        summary_table(report),
        "",
        "## Targets",
        "",
    ]
    for text, met, detail in targets(report):
        mark = {True: "met", False: "**not met**", None: "not measured"}[met]
        lines.append(f"- {text}: {mark} — {detail}")
    lines += ["", "## Server CPU per message (ms, user + system, whole process tree; lowest round)", "",
              cpu_table(report), "", "## Every server, every cell", "", detail_table(report), ""]
    second = report.get("second")
    if second:
        lines += [f"## The same cells with every spool on {second['filesystem']}", "",
                  "A fresh ext4 per server: no other work's files share it. Messages per second and mailward / "
                  "peer:", "", summary_table(report, second["cells"]), "",
                  "Server CPU per message (ms, lowest round):", "", cpu_table(report, second["cells"]), ""]
    if report.get("idle"):
        lines += ["## Idle TLS sessions (RSS at rest)", ""]
        for name, r in report["idle"].items():
            lines.append(f"- {LABELS.get(name, name)}: {r['sessions']} sessions ({r['failures']} failed) opened in "
                         f"{r['open_seconds']:.1f} s; RSS {r['rss_before_mb']:.0f} MB before, "
                         f"{r['rss_at_rest_mb']:.0f} MB at rest: {r['kb_per_session']:.0f} KB per session.")
        lines.append("")
    lines += ["## Outbound delivery", "", outbound_text(report.get("outbound")), ""]
    stuck = report.get("outbound_stuck")
    if stuck:
        lines += [f"Without help, the queue runner delivered {stuck['delivered']} of {stuck['messages']} due "
                  f"messages and then stopped making progress (no removal for 10 s): it takes at most "
                  f"`max_deliveries` due messages per pass and drops the rest of the due list from its "
                  f"timetable. The figure above was measured with `mailward queue flush` (SIGUSR1) sent every "
                  f"{report['outbound'].get('kick_every', 0) * 1000:.0f} ms "
                  f"({report['outbound'].get('kicks', 0)} times) while the queue drained.", ""]
    if report.get("accessmap"):
        lines += ["## Access map (bench/accessmap.py)", "", "```", report["accessmap"], "```", ""]
    return "\n".join(lines)


def chart(report: dict, path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    peers = report["peers"]
    sizes = sorted({c["size"] for c in report["cells"].values()})
    fig, axes = plt.subplots(1, len(sizes), figsize=(6.5 * len(sizes), 4.6), squeeze=False)
    width = 0.8 / max(1, len(peers))
    for ax, size in zip(axes[0], sizes):
        cells = [(n, c) for n, c in report["cells"].items() if c["size"] == size]
        xs = range(len(cells))
        for i, p in enumerate(peers):
            vals = [(best(c, p) or {}).get("msgs_per_s", 0) for _, c in cells]
            bars = ax.bar([x + (i - (len(peers) - 1) / 2) * width for x in xs], vals, width,
                          label=LABELS[p], color=COLOURS[p])
            if p == "mailward":
                for b, v in zip(bars, vals):
                    ax.annotate(f"{v:.0f}", (b.get_x() + b.get_width() / 2, v), ha="center", va="bottom",
                                fontsize=7, xytext=(0, 1), textcoords="offset points")
        ax.set_xticks(list(xs))
        ax.set_xticklabels([f"C={c['c']}\nM={c['m']}" for _, c in cells])
        ax.set_title(f"{size // 1024} KiB messages, STARTTLS on every connection")
        ax.set_ylabel("messages/s (250 after the final dot)")
        ax.grid(axis="y", alpha=0.3)
    axes[0][0].legend(fontsize=8, loc="upper left")
    fig.suptitle(f"mailward (fsync on) beside Postfix and aiosmtpd — {report['machine']['date']}, "
                 f"{report['machine']['nproc']} cores; OpenSSL pair: {openssl_rate(report):.0f} handshakes/s",
                 fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


START, END = "<!-- bench-results:start -->", "<!-- bench-results:end -->"


def readme_block(report: dict, stem: str) -> str:
    """The results as the README shows them: machine, chart, ratio table, targets."""
    m = report["machine"]
    lines = [
        f"Measured {m['date']} (`python -m bench.run{' --full' if report['mode'] == 'full' else ''}`), "
        f"mailward {m.get('mailward', 'working tree')}: "
        f"{m['nproc']} cores ({m['cpu']}), {m['memory_gb']} GB, Linux {m['kernel']}, Python {m['python']}, "
        f"Postfix {m['postfix']}, {m['mailward_openssl']} (mailward) / {m['client_openssl']} (client); "
        f"{report['duration']:.0f} s per cell, {report.get('stat', 'best')} of {report['rounds']} rounds, the machine "
        f"shared with other work "
        f"(load average {m['loadavg_start']:.1f}–{m.get('loadavg_end', 0):.1f}). "
        f"OpenSSL pair: " + ", ".join(f"{r:.0f}" for r in report.get("openssl", [])) + " full handshakes/s. "
        f"Everything, with latency, RSS and CPU per message for every server: [{stem}.md]({stem}.md).",
        "",
        f"![messages per second, mailward beside Postfix and aiosmtpd]({stem}.png)",
        "",
        summary_table(report),
        "",
        "Server CPU per message (ms, user + system of the server's whole process tree, lowest round):",
        "",
        cpu_table(report),
        "",
    ]
    for text, met, detail in targets(report):
        mark = {True: "met", False: "**not met**", None: "not measured"}[met]
        lines.append(f"- {text}: {mark} — {detail}")
    return "\n".join(lines)


def update_readme(readme: Path, report: dict, stem: str) -> bool:
    text = readme.read_text()
    if START not in text or END not in text:
        return False
    head, rest = text.split(START, 1)
    _, tail = rest.split(END, 1)
    readme.write_text(f"{head}{START}\n{readme_block(report, stem)}\n{END}{tail}")
    return True
