"""Room for work: whole requests counted, pending assigns bounded, finished work released."""

from __future__ import annotations

import threading
from decimal import Decimal

from hypothesis import given, settings
from hypothesis import strategies as st

from kubejobs.executor.admission import Admission, Request, Room
from kubejobs.spec import validate_spec
from kubejobs.spec.quantity import parse_quantity


def spec(nodes: int = 1, ppn: int = 1, cpu: str = "500m", mem: str = "1Gi") -> dict[str, object]:
    return {
        "funcname": "execute",
        "kwargs": {"docker-image": "busybox", "cmd": "true"},
        "conditions": {"nodes": nodes, "processespernode": ppn, "cpu": cpu, "mem": mem},
    }


def test_request_counts_nodes_times_processes_per_node() -> None:
    request = Request.of_spec(validate_spec(spec(nodes=3, ppn=2)))
    assert request == Request(Decimal("3.0"), Decimal(6 * 2**30))


def test_request_of_a_job_found_on_the_cluster() -> None:
    job = {
        "spec": {
            "parallelism": 2,
            "template": {
                "spec": {
                    "containers": [
                        {
                            "name": "main-0",
                            "resources": {"requests": {"cpu": "250m", "memory": "1Mi"}},
                        },
                        {
                            "name": "main-1",
                            "resources": {"requests": {"cpu": "250m", "memory": "1Mi"}},
                        },
                    ]
                }
            },
        }
    }
    assert Request.of_job(job) == Request(Decimal("1.000"), Decimal(4 * 2**20))


def test_full_admission_gives_up_after_the_timeout_without_taking_a_slot() -> None:
    admission = Admission(max_jobs=1)
    stop = threading.Event()
    assert admission.acquire(stop) == Room()
    assert admission.acquire(stop, wait=0.01, timeout=0.05) is None
    assert not stop.is_set()
    admission.cancel()
    assert admission.acquire(stop, timeout=0.05) == Room()  # the one slot, not two


def test_max_jobs_counts_pending_assigns() -> None:
    admission = Admission(max_jobs=2)
    stop = threading.Event()
    assert admission.acquire(stop) == Room()
    assert admission.acquire(stop) == Room()
    stop.set()
    assert admission.acquire(stop) is None  # full: waits until stopped
    admission.cancel()
    admission.commit("p1", Request())
    assert admission.in_flight == 1


def test_budget_tells_the_server_what_is_left_and_releases() -> None:
    admission = Admission(max_jobs=10, cpu=Decimal(4), mem=Decimal(8 * 2**30))
    stop = threading.Event()
    assert admission.acquire(stop) == Room(cpu="4000m", mem=f"{8 * 2**20}Ki")
    admission.commit("p1", Request(Decimal(3), Decimal(2**30)))
    assert admission.acquire(stop) == Room(cpu="1000m", mem=f"{7 * 2**20}Ki")
    admission.commit("p2", Request(Decimal(1), Decimal(2**30)))
    stop.set()
    assert admission.acquire(stop) is None  # cpu used up
    admission.release("p1")
    stop.clear()
    assert admission.acquire(stop) == Room(cpu="3000m", mem=f"{7 * 2**20}Ki")


def test_adopted_jobs_count_even_past_the_limit() -> None:
    admission = Admission(max_jobs=1)
    admission.adopt("a", Request())
    admission.adopt("b", Request())
    assert admission.in_flight == 2
    stop = threading.Event()
    stop.set()
    assert admission.acquire(stop) is None


@settings(max_examples=200, deadline=None)
@given(
    steps=st.lists(
        st.tuples(
            st.sampled_from(["commit", "adopt", "release"]),
            st.integers(0, 5),  # one of a few process ids: the same one comes again
            st.sampled_from(["1m", "250m", "3", "0.5", "0.001", "16Mi", "1Ei", "7"]),
        ),
        max_size=40,
    )
)
def test_what_is_used_is_the_sum_of_what_is_held_however_they_came_and_went(
    steps: list[tuple[str, int, str]],
) -> None:
    """The used total is kept as reservations come and go (summing them on every assign made
    assigning N processes cost N squared): it must stay the plain sum of what is held."""
    admission = Admission(max_jobs=100)
    held: dict[str, Request] = {}
    for action, index, quantity in steps:
        pid = f"p{index}"
        request = Request(parse_quantity(quantity), parse_quantity(quantity) * 2)
        if action == "release":
            admission.release(pid)
            held.pop(pid, None)
        elif action == "commit":
            assert admission.acquire(threading.Event()) is not None
            admission.commit(pid, request)
            held[pid] = request
        else:
            admission.adopt(pid, request)
            held[pid] = request
        expected = Request(
            sum((r.cpu for r in held.values()), Decimal(0)),
            sum((r.mem for r in held.values()), Decimal(0)),
        )
        assert admission.used() == expected
