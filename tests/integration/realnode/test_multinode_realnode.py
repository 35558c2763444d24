"""A multi-node process for real: its ranks find each other by the names kubejobs gives them.

conditions.nodes 2 x processespernode 2 on the real node's pod network: rank 0
listens on MASTER_PORT, every other rank connects to MASTER_ADDR (the first name
of KUBEJOBS_HOSTS, resolved by the cluster DNS through the Job's headless
Service), they exchange messages, and each rank's lines reach the process log
with its prefix; the torch variables and the MPI hostfile are what the README
says. Two pods on one node still have separate network
namespaces, addresses and names, so this is the path ranks on two nodes take.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from testenv.node import kubejobs_image
from tests.integration.realnode.conftest import job_spec
from tests.integration.test_executor_e2e import SUCCESS, ExecutorRun

pytestmark = pytest.mark.integration
WAIT = 240.0

RENDEZVOUS = r"""
import os, socket, time
env = os.environ
local, per_node = int(env["KUBEJOBS_LOCAL_RANK"]), int(env["KUBEJOBS_LOCAL_WORLD_SIZE"])
rank = int(env["KUBEJOBS_NODE_RANK"]) * per_node + local
world = int(env["KUBEJOBS_WORLD_SIZE"])
assert int(env["WORLD_SIZE"]) == world and int(env["LOCAL_RANK"]) == local
assert env["NODE_RANK"] == env["KUBEJOBS_NODE_RANK"]
master, port = env["MASTER_ADDR"], int(env["MASTER_PORT"])  # what torch's env:// reads
assert master == env["KUBEJOBS_HOSTS"].split(",")[0]
me = f"rank {rank} on {socket.gethostname()}"
if rank == 0:
    server = socket.create_server(("", port))
    print(f"{me}: listening on {master}:{port}", flush=True)
    hostfile = open(env["KUBEJOBS_HOSTFILE"]).read().split("\n")
    print(f"{me}: hostfile {[h for h in hostfile if h]}", flush=True)
    met = []
    while len(met) < world - 1:
        conn, _ = server.accept()
        with conn:
            hello = conn.recv(200).decode()
            conn.sendall(f"welcome {hello.split(' on ')[0]}".encode())
            met.append(hello)
    print(f"{me}: met {sorted(met)}", flush=True)
else:
    deadline, tries = time.monotonic() + 120, 0
    while True:  # the name exists once rank 0's pod has an address, the port once it listens
        tries += 1
        try:
            with socket.create_connection((master, port), timeout=5) as conn:
                conn.sendall(me.encode())
                reply = conn.recv(200).decode()
            break
        except OSError as e:
            if time.monotonic() > deadline:
                raise SystemExit(f"{me}: cannot reach {master}:{port}: {e}")
            time.sleep(0.2)
    print(f"{me}: {reply} from {master}", flush=True)
"""


def test_ranks_rendezvous_at_the_master_address_and_each_ranks_lines_are_prefixed(
    real_executor: Callable[..., ExecutorRun], colonies: Any
) -> None:
    run = real_executor()
    doc = job_spec(
        run.type,
        "python3",
        ["-c", RENDEZVOUS],
        conditions={"nodes": 2, "processespernode": 2},
    )
    doc["kwargs"]["docker-image"] = kubejobs_image()  # Python, for the sockets
    pid = run.submit(doc)
    process = run.wait_done(pid, WAIT)
    assert process["state"] == SUCCESS, process["errors"]
    lines = colonies.log_text(pid).splitlines()
    by_prefix: dict[str, list[str]] = {}
    for line in lines:
        prefix, _, text = line.partition("] ")
        by_prefix.setdefault(prefix + "]", []).append(text)
    assert sorted(by_prefix) == ["[0/main-0]", "[0/main-1]", "[1/main-0]", "[1/main-1]"], lines
    master_lines = by_prefix["[0/main-0]"]
    assert master_lines[0].startswith("rank 0 on ") and " listening on " in master_lines[0]
    master = master_lines[0].split(" listening on ")[1].rsplit(":", 1)[0]
    # the master address is rank 0's pod's name under the Job's headless Service
    assert master.split(".")[0].endswith("-0"), master
    for rank, prefix in ((1, "[0/main-1]"), (2, "[1/main-0]"), (3, "[1/main-1]")):
        (line,) = by_prefix[prefix]
        assert line.startswith(f"rank {rank} on ") and line.endswith(
            f": welcome rank {rank} from {master}"
        ), line
    hosts = master_lines[1].split(": hostfile ")[1]
    job = master.split(".")[1]
    assert hosts == str([f"{job}-0.{job} slots=2", f"{job}-1.{job} slots=2"]), master_lines
    (met,) = master_lines[2:]
    assert all(f"'rank {r} on " in met for r in (1, 2, 3)), met
    run.wait_no_jobs()
