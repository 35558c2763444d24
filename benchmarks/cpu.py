"""CPU seconds of this process and every process it started, by program.

On a small machine the servers share the cores with what is measured: what
each burns during a run says which one bounds it.
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Mapping


def cpu_seconds(names: Mapping[int, str] | None = None) -> Counter[str]:
    """User + system CPU seconds so far of this process ("python") and its descendants, by
    their program name (`comm`), or by `names[pid]` for the pids named there."""
    tick = os.sysconf("SC_CLK_TCK")
    procs: dict[int, tuple[int, str, int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                raw = f.read()
        except OSError:  # ended meanwhile
            continue
        fields = raw[raw.rindex(")") + 2 :].split()
        comm = raw[raw.index("(") + 1 : raw.rindex(")")]
        procs[int(entry)] = (int(fields[1]), comm, int(fields[11]) + int(fields[12]))
    mine = {os.getpid()}
    while more := {pid for pid, (ppid, _, _) in procs.items() if ppid in mine} - mine:
        mine |= more
    named = {os.getpid(): "python", **(names or {})}
    out: Counter[str] = Counter()
    for pid in mine:
        _, comm, ticks = procs[pid]
        out[named.get(pid, comm)] += ticks / tick
    return out
