"""The table and the chart of a results file: `python bench/report.py [bench/results/latest.json]`."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from common import HERE


def _fmt(value: Any, digits: int = 1) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def table(results: dict[str, Any]) -> str:
    head = (
        "system",
        "run",
        "offered/s",
        "accepted/s",
        "completed/s",
        "p50 ms",
        "p95 ms",
        "p99 ms",
        "CPU ms/msg",
        "peak RSS MiB",
    )
    rows = [head]
    for system in results["systems"]:
        for run in system["runs"]:
            if run["label"] == "warm-up":
                continue
            added = run["added_ms"]
            offered = run["offered_rate"] if run["mode"] == "open" else f"C={run['concurrency']}"
            rows.append(
                (
                    system["name"],
                    run["label"],
                    _fmt(offered),
                    _fmt(run["accepted_per_s"]),
                    _fmt(run["completed_per_s"]),
                    _fmt(added["p50"], 2),
                    _fmt(added["p95"], 2),
                    _fmt(added["p99"], 2),
                    _fmt(run["cpu_ms_per_msg"].get("system"), 2),
                    _fmt(run["peak_rss_mib"].get("system")),
                )
            )
    widths = [max(len(str(r[i])) for r in rows) for i in range(len(head))]
    lines = ["| " + " | ".join(str(c).ljust(w) for c, w in zip(r, widths, strict=True)) + " |" for r in rows]
    lines.insert(1, "|" + "|".join("-" * (w + 2) for w in widths) + "|")
    for name, reason in results.get("skipped", {}).items():
        lines.append(f"{name}: {reason}")
    lines.append("")
    for name, value in results["ratios"].items():
        lines.append(f"{name}: {_fmt(value, 3)}")
    return "\n".join(lines)


def chart(results: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (top, bottom) = plt.subplots(2, 1, figsize=(9, 9), sharex=True)
    highest = 1.0
    for system in results["systems"]:
        points = sorted((r for r in system["runs"] if r["mode"] == "open"), key=lambda r: r["offered_rate"])
        if not points:
            continue
        x = [r["offered_rate"] for r in points]
        highest = max(highest, *x)
        line = top.plot(x, [r["completed_per_s"] for r in points], marker="o", label=system["name"])[0]
        full = next((r for r in system["runs"] if r["label"] == "full speed"), None)
        if full:
            top.axhline(full["completed_per_s"], color=line.get_color(), linestyle=":", linewidth=1)
        bottom.plot(x, [r["added_ms"]["p99"] or float("nan") for r in points], marker="o", label=system["name"])
    top.plot([0, highest], [0, highest], color="grey", linewidth=0.8, label="offered")
    top.set_ylabel("completed round trips/s")
    top.set_title("Throughput vs offered rate (dotted: closed-loop full speed, 32 in flight)")
    top.legend(fontsize=8)
    bottom.set_yscale("log")
    bottom.axhline(10, color="red", linestyle="--", linewidth=0.8, label="10 ms target")
    bottom.set_ylabel("p99 added latency (ms)")
    bottom.set_xlabel("offered MO/s (open loop, evenly spaced)")
    bottom.set_title("p99 latency the system adds (webhook sent → MT at the SCG fake − fakes' time)")
    bottom.legend(fontsize=8)
    fig.suptitle(f"botbridge bench {results['when']}{' (quick)' if results.get('quick') else ''}")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _frame(frame: str) -> str:
    """`func (path:line)` → `func (package/module.py)`, without any directory of this machine."""
    func, _, where = frame.partition(" (")
    path = where.rstrip(")").rsplit(":", 1)[0]
    if not path.startswith("/"):
        return f"{func} ({path})"
    for marker in ("site-packages/", "/src/", "/lib/python3."):
        if marker in path:
            path = path.split(marker, 1)[1]
            break
    else:
        path = path.rsplit("/", 1)[-1]
    return f"{func} ({path})"


def summarize_profile(raw: Path, top: int = 45) -> str:
    """Inclusive and self shares of py-spy's collapsed stacks (`--format raw`), per thread kind."""
    inclusive: dict[str, int] = {}
    own: dict[str, int] = {}
    threads: dict[str, int] = {}
    total = 0
    for line in raw.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        n = int(count)
        total += n
        frames = [_frame(f) for f in stack.split(";")]
        kind = "sqlite thread" if any("_connection_worker_thread" in f for f in frames) else "event loop thread"
        threads[kind] = threads.get(kind, 0) + n
        for frame in set(frames):
            inclusive[frame] = inclusive.get(frame, 0) + n
        own[frames[-1]] = own.get(frames[-1], 0) + n
    if not total:
        return "no samples\n"
    out = [f"{total} samples (py-spy, 250 Hz, active threads only)", ""]
    out += [f"{100 * n / total:5.1f}%  {kind}" for kind, n in sorted(threads.items(), key=lambda kv: -kv[1])]
    out += ["", "inclusive:"]
    out += [f"{100 * n / total:5.1f}%  {f}" for f, n in sorted(inclusive.items(), key=lambda kv: -kv[1])[:top]]
    out += ["", "self:"]
    out += [f"{100 * n / total:5.1f}%  {f}" for f, n in sorted(own.items(), key=lambda kv: -kv[1])[:25]]
    return "\n".join(out) + "\n"


if __name__ == "__main__":
    source = Path(sys.argv[1]) if len(sys.argv) > 1 else HERE / "results" / "latest.json"
    data = json.loads(source.read_text())
    print(table(data))
    chart(data, source.with_suffix(".png"))
