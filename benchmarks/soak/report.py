"""A soak run's report: counts, submit-to-close per kind, the faults, RSS; and a plot.

``text(history, violations)`` is the printed report. ``svg(history)`` is the plot
of submit-to-close over time (each process a dot at its submission, its kind's
colour) with the faults as shaded bands: hand-written SVG, no plotting library
(one file, viewable in any browser).
"""

from __future__ import annotations

import statistics
from collections import Counter
from html import escape

from benchmarks.realnode.run import percentile
from benchmarks.soak.checks import Violation
from benchmarks.soak.history import History

STATES = {0: "WAITING", 1: "RUNNING", 2: "SUCCESS", 3: "FAILED", -1: "unknown"}


def text(
    history: History,
    violations: list[Violation],
    explained: list[tuple[Violation, str]] | None = None,
) -> str:
    h, t0 = history, history.started
    lines = [
        f"soak seed {h.seed}: {h.duration:.0f} s of submissions, {h.ended - t0:.0f} s in all, "
        f"namespace {h.namespace}, replicas {', '.join(h.replicas)}",
        f"{len(h.processes)} processes "
        f"({', '.join(f'{n} {STATES[s]}' for s, n in sorted(Counter(p.state for p in h.processes).items()))}); "
        f"{len(h.submit_errors)} submissions sent again after an error",
        "",
        f"{'kind':<14} {'n':>4} {'p50 s':>7} {'p99 s':>7} {'max s':>7}  submit to close",
    ]
    kinds: dict[str, list[float]] = {}
    for p in h.processes:
        kinds.setdefault(p.kind, []).append(p.submit_to_close)
    for kind, values in sorted(kinds.items()):
        done = [v for v in values if v > 0]
        if done:
            lines.append(
                f"{kind:<14} {len(values):>4} {statistics.median(done):>7.1f} "
                f"{percentile(done, 0.99):>7.1f} {max(done):>7.1f}"
            )
        else:
            lines.append(f"{kind:<14} {len(values):>4}       -       -       -")
    lines += ["", f"{len(h.faults)} faults:"]
    for f in h.faults:
        lines.append(
            f"  +{f.start - t0:6.1f} s  {f.kind:<9} {f.end - f.start:5.1f} s  {f.target} {f.detail}".rstrip()
        )
    lines += ["", "executor RSS (MiB) per replica: first, median, max, last sample of each process"]
    for replica, samples in sorted(h.rss.items()):
        lives: dict[int, list[int]] = {}
        for _, os_pid, kib in samples:
            lives.setdefault(os_pid, []).append(kib)
        for os_pid, kibs in lives.items():
            mib = [k / 1024 for k in kibs]
            lines.append(
                f"  {replica} pid {os_pid}: {mib[0]:.0f}, {statistics.median(mib):.0f}, "
                f"{max(mib):.0f}, {mib[-1]:.0f} ({len(mib)} samples)"
            )
    window = 300.0 if h.ended - t0 > 900 else 60.0
    lines += ["", f"executor RSS (MiB) per replica over time: median of each {window:.0f} s"]
    for replica, samples in sorted(h.rss.items()):
        buckets: dict[int, list[int]] = {}
        for t, _, kib in samples:
            buckets.setdefault(int((t - t0) // window), []).append(kib)
        lines.append(
            f"  {replica}: "
            + " ".join(f"{statistics.median(v) / 1024:.0f}" for _, v in sorted(buckets.items()))
        )
    lines += ["", f"{len(violations)} violations" + (":" if violations else "")]
    lines += [f"  {v}" for v in violations]
    if explained:
        lines += ["", f"{len(explained)} deviations a fault explains:"]
        lines += [f"  {v}\n    because {why}" for v, why in explained]
    return "\n".join(lines) + "\n"


PALETTE = (
    "#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2",
    "#7f7f7f", "#bcbd22", "#17becf", "#393b79", "#637939", "#8c6d31", "#843c39",
    "#7b4173", "#3182bd", "#e6550d",
)  # fmt: skip


def svg(history: History, width: int = 900, height: int = 420) -> str:
    """Submit-to-close (y) of each process against its submission (x); faults shaded."""
    h = history
    left, right, top, bottom = 50, 150, 20, 40
    span = max(h.ended - h.started, 1.0)
    points = [(p.submitted - h.started, p.submit_to_close, p.kind) for p in h.processes]
    ymax = max([y for _, y, _ in points] + [1.0]) * 1.05
    plot_w, plot_h = width - left - right, height - top - bottom

    def x(t: float) -> float:
        return left + plot_w * t / span

    def y(v: float) -> float:
        return top + plot_h * (1 - v / ymax)

    kinds = sorted({k for _, _, k in points})
    colour = {k: PALETTE[i % len(PALETTE)] for i, k in enumerate(kinds)}
    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        'font-family="sans-serif" font-size="11">',
        f'<rect x="0" y="0" width="{width}" height="{height}" fill="white"/>',
    ]
    for f in h.faults:
        a, b = x(f.start - h.started), x(f.end - h.started)
        out.append(
            f'<rect x="{a:.1f}" y="{top}" width="{max(b - a, 1.0):.1f}" height="{plot_h}" '
            f'fill="#f4a582" fill-opacity="0.35"><title>{escape(f.kind)} {escape(f.target)}</title></rect>'
        )
        out.append(f'<text x="{a:.1f}" y="{top + 10}" fill="#b2182b">{escape(f.kind)}</text>')
    out.append(
        f'<line x1="{left}" y1="{top + plot_h}" x2="{left + plot_w}" y2="{top + plot_h}" stroke="black"/>'
        f'<line x1="{left}" y1="{top}" x2="{left}" y2="{top + plot_h}" stroke="black"/>'
    )
    for i in range(6):
        v, t = ymax * i / 5, span * i / 5
        out.append(f'<text x="{left - 5}" y="{y(v) + 4:.1f}" text-anchor="end">{v:.0f}</text>')
        out.append(
            f'<text x="{x(t):.1f}" y="{top + plot_h + 15}" text-anchor="middle">{t:.0f}</text>'
        )
    out.append(
        f'<text x="{left + plot_w / 2}" y="{height - 5}" text-anchor="middle">'
        "seconds since the start (submission)</text>"
        f'<text x="12" y="{top + plot_h / 2}" transform="rotate(-90 12 {top + plot_h / 2})" '
        'text-anchor="middle">submit to close, s</text>'
    )
    for t, v, kind in points:
        if v > 0:
            out.append(f'<circle cx="{x(t):.1f}" cy="{y(v):.1f}" r="2.5" fill="{colour[kind]}"/>')
    for i, kind in enumerate(kinds):
        ly = top + 14 * i + 10
        out.append(
            f'<circle cx="{left + plot_w + 15}" cy="{ly - 4}" r="4" fill="{colour[kind]}"/>'
            f'<text x="{left + plot_w + 24}" y="{ly}">{escape(kind)}</text>'
        )
    out.append("</svg>")
    return "\n".join(out) + "\n"
