"""The soak's mix: what each kind of submission runs and what it must end as.

A kind builds the function spec(s) a user would write and, beside each, its
``Expect``: the final state, the exact output, the errors (regular expressions
matched whole), the lines its program prints when it runs to its end, the files
it syncs back. Everything here is pure data, written into the history at
submission, so a recorded run can be checked again (checks.py).

Every program line is ``<run> <marker> <text>``: ``<marker>`` is the process's
own, so one process's line can never pass for another's, and ``<run>`` is drawn
by the program when it starts (8 hex digits of a kernel uuid), so a program run
twice (a Kueue preemption, a maxexectime take-back, or a bug) shows up as two
runs instead of as duplicated lines. A multi-node process's lines carry the
shipper's ``[rank/container] `` tag: a stream per tag.

Placement: the executors' Jobs select the node pool label ``POOL_LABEL``, which
the harness puts on real-node-0 (``real``) and on kwok-gpu-node-0 (``kwok``); a
spec asking for a GPU named ``kwok`` goes to the kwok node through kubejobs'
``gpu_node_label`` setting, as a GPU job goes to its product's nodes.
"""

from __future__ import annotations

import json
import random
import re
from dataclasses import asdict, dataclass, field
from typing import Any

from benchmarks.realnode.run import spec as realnode_spec
from kubejobs.executor.outcome import NEVER_STARTED

WAITING, RUNNING, SUCCESS, FAILED = 0, 1, 2, 3
POOL_LABEL = "kubejobs.io/soak-pool"
# busybox sh: the run id, then every line tagged with it and the marker
RUN_ID = "read id </proc/sys/kernel/random/uuid; id=${id%%-*}; "
JOB = r"kj-[0-9a-f]{40}(-\d+)?"  # the Job of any attempt
POD = JOB + r"-[a-z0-9]+"
GROW = 'x=0123456789abcdef; while :; do x="$x$x"; done'
LOW_PRIORITY, HIGH_PRIORITY = -10, 10  # spec priorities; the harness maps them to Kueue classes
BIG_CPU = "1000m"  # a preemption pair's request: two never fit the ClusterQueue's 2 cpu together
MAXEXEC, MAXRETRIES = 10, 1
# the stager's log record when a server does not answer (kubejobs/inpod/retry.py)
STAGER_RETRY = r"\S+ \S+ WARNING kubejobs\.inpod\.retry: .*; retrying in [0-9.]+ s"


@dataclass(frozen=True)
class Expect:
    """What a process must end as."""

    state: int
    out: list[Any] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    """Regular expressions, each matched whole (re.DOTALL) against the error at its place."""
    streams: dict[str, list[str]] = field(default_factory=dict)
    """Stream tag ("" untagged) -> the texts of a run that reaches its end, in order."""
    complete: bool = True
    """Whether the last run must print every text (False: every run is cut short)."""
    retries: int = 0
    files: dict[str, str] = field(default_factory=dict)
    """"LABEL/NAME" -> the content synced back at close."""
    extra: list[str] = field(default_factory=list)
    """Regular expressions for lines neither the program nor a note printed (the stager's)."""
    tolerated: list[str] = field(default_factory=list)
    """Regular expressions for lines that may come any number of times (the stager saying
    that it waits for a server: it is meant to tell the process log)."""
    unordered_in: bool = False
    """The output's "in" lists the parents' outputs in any order (a fan-in)."""
    closed_by_server: bool = False
    """The server ends it (maxexectime), so no executor reports it."""

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Step:
    """One function spec to submit, with what it must end as."""

    kind: str
    marker: str
    spec: dict[str, Any]
    expect: Expect
    node: str = ""  # the nodename in a workflow


@dataclass(frozen=True)
class Item:
    """One submission: a process, a workflow (several steps at once), or a preemption
    pair (the second submitted once the first prints ``after_line``)."""

    kind: str
    steps: list[Step]
    workflow: bool = False
    after_line: str = ""


def program(marker: str, body: str) -> str:
    """A busybox script whose `say TEXT` prints ``<run> <marker> TEXT``."""
    return f'{RUN_ID}say() {{ echo "$id {marker} $*"; }}; {body}'


def spec(
    executor_type: str, colony: str, script: str | None = None, **extra: Any
) -> dict[str, Any]:
    """A busybox `sh -c script` spec for the real node (benchmarks/realnode's), or, with
    ``cmd``, that command alone; ``conditions`` add to the spec's, the rest goes on top."""
    if "cmd" in extra:
        doc = realnode_spec(executor_type, [], cmd=extra.pop("cmd"))
    else:
        doc = realnode_spec(executor_type, ["-c", str(script)])
    doc["conditions"].update(colonyname=colony, **extra.pop("conditions", {}))
    doc.update(extra)
    return doc


def numbers(n: int) -> list[str]:
    return [str(i) for i in range(1, n + 1)]


def main_failed(detail: str) -> list[str]:
    return [rf"pod {POD} container main {detail}"]


@dataclass(frozen=True)
class Mix:
    """Builds the items of one run from a seeded random source."""

    executor_type: str
    colony: str
    walltime_seconds: int  # the walltime kind's conditions.walltime: past any fault's length
    fs_label_root: str

    def _spec(self, script: str | None, **extra: Any) -> dict[str, Any]:
        return spec(self.executor_type, self.colony, script, **extra)

    # -- single processes ---------------------------------------------------------------
    def quick(self, m: str, rng: random.Random) -> Item:
        doc = self._spec(program(m, f"say quick; printf out-{m} >/dev/termination-log"))
        return _one("quick", m, doc, Expect(SUCCESS, [f"out-{m}"], streams={"": ["quick"]}))

    def numbered(self, m: str, rng: random.Random) -> Item:
        n = rng.randint(20, 60)
        doc = self._spec(program(m, f"for i in $(seq 1 {n}); do say $i; sleep 0.5; done"))
        return _one("numbered", m, doc, Expect(SUCCESS, streams={"": numbers(n)}))

    def no_newline(self, m: str, rng: random.Random) -> Item:
        doc = self._spec(
            program(m, f'printf \'%s\\n%s\\n%s\' "$id {m} a" "$id {m} b" "$id {m} tail"')
        )
        return _one("no-newline", m, doc, Expect(SUCCESS, streams={"": ["a", "b", "tail"]}))

    def exit3(self, m: str, rng: random.Random) -> Item:
        doc = self._spec(program(m, "say fail; exit 3"))
        # FallbackToLogsOnError: the log's tail is the termination message
        errors = main_failed(rf"exited with code 3 \(Error\): [0-9a-f]{{8}} {m} fail")
        return _one("exit3", m, doc, Expect(FAILED, errors=errors, streams={"": ["fail"]}))

    def oom(self, m: str, rng: random.Random) -> Item:
        doc = self._spec(program(m, f"say grow; {GROW}"), conditions={"mem": "32Mi"})
        errors = main_failed(
            r"exited with code 137 \(OOMKilled\): it used more memory than its limit "
            rf"\(raise conditions\.mem\): [0-9a-f]{{8}} {m} grow"
        )
        return _one("oom", m, doc, Expect(FAILED, errors=errors, streams={"": ["grow"]}))

    def walltime(self, m: str, rng: random.Random) -> Item:
        script = program(m, "trap '' TERM; say started; sleep 3600")
        doc = self._spec(script, conditions={"walltime": self.walltime_seconds})
        errors = [
            rf"walltime exceeded: Job {JOB} ran longer than conditions\.walltime={self.walltime_seconds}s "
            r"and was stopped \(Kubernetes reason DeadlineExceeded\)"
            rf"(; {re.escape(NEVER_STARTED)} .*)?"
        ]
        return _one("walltime", m, doc, Expect(FAILED, errors=errors, streams={"": ["started"]}))

    def not_found(self, m: str, rng: random.Random) -> Item:
        doc = self._spec(None, cmd=f"no-such-program-{m}")
        errors = main_failed(
            rf'could not start \(StartError\): .*exec: "no-such-program-{m}": '
            r"executable file not found in \$PATH.*"
        )
        return _one("not-found", m, doc, Expect(FAILED, errors=errors))

    def multinode(self, m: str, rng: random.Random) -> Item:
        body = "say rank $KUBEJOBS_NODE_RANK; for i in 1 2 3; do say $i; sleep 0.3; done"
        doc = self._spec(program(m, body), conditions={"nodes": 2})
        streams = {f"[{r}/main] ": [f"rank {r}", "1", "2", "3"] for r in (0, 1)}
        return _one("multinode", m, doc, Expect(SUCCESS, streams=streams))

    def staged(self, m: str, rng: random.Random) -> Item:
        """fs staging in and sync back: the harness puts in.txt under the label first."""
        label = f"{self.fs_label_root}/{m}"
        fs = {
            "mount": "/cfs",
            "dirs": [
                {
                    "label": label,
                    "dir": "/data",
                    "keepfiles": False,
                    "onconflicts": {
                        "onstart": {"keeplocal": False},
                        "onclose": {"keeplocal": True},
                    },
                }
            ],
        }
        body = f'say "$(cat /cfs/data/in.txt)"; echo result-{m} >/cfs/data/out.txt'
        doc = self._spec(program(m, body), fs=fs)
        expect = Expect(
            SUCCESS,
            streams={"": [f"in-{m}"]},
            files={f"{label}/out.txt": f"result-{m}\n"},
            extra=[  # the stager's own lines, once a run
                rf"stage-in: dir {label} -> /cfs/data \(on conflict: remote wins\)",
                rf"stage-in: downloaded {label}/in\.txt -> /cfs/data/in\.txt "
                r"\(\d+ bytes, sha256 ok\)",
                r"stage-in: done: 1 downloaded \(\d+ bytes\), 0 unchanged, 0 kept local",
            ],
            tolerated=[STAGER_RETRY],
        )
        return _one("staged", m, doc, expect)

    def gpu_kwok(self, m: str, rng: random.Random) -> Item:
        """A GPU job on the kwok GPU node: its pod runs no container, so no line and no
        output; kwok ends it with exit 0."""
        doc = self._spec(program(m, "say never"), conditions={"gpu": {"name": "kwok", "count": 1}})
        return _one("gpu-kwok", m, doc, Expect(SUCCESS))

    def maxexectime(self, m: str, rng: random.Random) -> Item:
        """Runs past maxexectime every attempt: taken back once, failed after the second."""
        body = "trap 'exit 143' TERM; for i in $(seq 1 1000); do say $i; sleep 0.5; done"
        doc = self._spec(program(m, body), maxexectime=MAXEXEC, maxretries=MAXRETRIES)
        expect = Expect(
            FAILED,
            errors=["Maximum execution time limit exceeded"],
            streams={"": numbers(1000)},
            complete=False,
            retries=MAXRETRIES,
            closed_by_server=True,
        )
        return _one("maxexectime", m, doc, expect)

    # -- several processes ----------------------------------------------------------------
    def preemption(self, m: str, rng: random.Random) -> Item:
        """A low-priority process Kueue preempts for a high one submitted once it runs."""
        low_m, high_m = f"{m}l", f"{m}h"
        body = "trap 'exit 143' TERM; for i in $(seq 1 30); do say $i; sleep 0.5; done"
        cpu = {"cpu": BIG_CPU}
        low = self._spec(program(low_m, body), conditions=cpu, priority=LOW_PRIORITY)
        high = self._spec(program(high_m, "say high"), conditions=cpu, priority=HIGH_PRIORITY)
        return Item(
            "preemption",
            [
                Step("preempt-low", low_m, low, Expect(SUCCESS, streams={"": numbers(30)})),
                Step("preempt-high", high_m, high, Expect(SUCCESS, streams={"": ["high"]})),
            ],
            after_line=f"{low_m} 3",
        )

    def chain(self, m: str, rng: random.Random) -> Item:
        """a -> b -> c: each step's output holds its input, so c's holds the whole chain."""
        a = {"step": "a", "m": m}
        b = {"step": "b", "in": [a]}
        c = {"step": "c", "in": [b]}
        steps = [
            self._step("chain", m, "a", [], a),
            self._step("chain", m, "b", ["a"], b),
            self._step("chain", m, "c", ["b"], c),
        ]
        return Item("chain", steps, workflow=True)

    def fanin(self, m: str, rng: random.Random) -> Item:
        """x and y, both before z: z's input is both parents' outputs."""
        x, y = {"step": "x", "m": m}, {"step": "y", "m": m}
        z = {"step": "z", "in": [x, y]}
        steps = [
            self._step("fanin", m, "x", [], x),
            self._step("fanin", m, "y", [], y),
            self._step("fanin", m, "z", ["x", "y"], z, unordered=True),
        ]
        return Item("fanin", steps, workflow=True)

    def _step(
        self,
        kind: str,
        m: str,
        node: str,
        after: list[str],
        out: dict[str, Any],
        unordered: bool = False,
    ) -> Step:
        """A workflow step whose output is ``out``; "in" is the input file as the step read it."""
        marker = f"{m}{node}"
        if after:
            write = f'printf \'{{"step":"{node}","in":%s}}\' "$(cat "$KUBEJOBS_INPUT_FILE")"'
        else:
            write = f"printf '{json.dumps(out, separators=(',', ':'))}'"
        body = f'say step {node}; {write} >"$KUBEJOBS_OUTPUT_FILE"'
        doc = self._spec(program(marker, body), nodename=node)
        if after:
            doc["conditions"]["dependencies"] = after
        expect = Expect(SUCCESS, [out], streams={"": [f"step {node}"]}, unordered_in=unordered)
        return Step(f"{kind}-{node}", marker, doc, expect, node=node)

    def item(self, kind: str, marker: str, rng: random.Random) -> Item:
        build = getattr(self, kind.replace("-", "_"))
        found: Item = build(marker, rng)
        return found


def _one(kind: str, marker: str, doc: dict[str, Any], expect: Expect) -> Item:
    return Item(kind, [Step(kind, marker, doc, expect)])


#: kind -> weight in the mix (submissions, not processes: a workflow is three)
WEIGHTS = {
    "quick": 14,
    "numbered": 12,
    "no-newline": 5,
    "exit3": 5,
    "oom": 3,
    "walltime": 2,
    "not-found": 4,
    "multinode": 4,
    "staged": 5,
    "gpu-kwok": 12,
    "maxexectime": 2,
    "preemption": 2,
    "chain": 3,
    "fanin": 3,
}
#: kinds every run has at least once, whatever the draw
EVERY_RUN = tuple(WEIGHTS)


def plan(rng: random.Random, duration: float, per_minute: float) -> list[tuple[float, str]]:
    """(seconds after the start, kind) of every submission: Poisson arrivals at
    ``per_minute``, every kind at least once, all within ``duration``."""
    times: list[float] = []
    t = 0.0
    rate = per_minute / 60.0
    while True:
        t += rng.expovariate(rate)
        if t >= duration:
            break
        times.append(t)
    kinds = list(EVERY_RUN)
    names, weights = list(WEIGHTS), list(WEIGHTS.values())
    while len(kinds) < len(times):
        kinds.append(rng.choices(names, weights)[0])
    rng.shuffle(kinds)
    if len(times) < len(kinds):  # a short run: spread the rest evenly
        times = [duration * (i + 0.5) / len(kinds) for i in range(len(kinds))]
    return list(zip(times, kinds, strict=True))
