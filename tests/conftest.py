"""Suite-wide collection order.

Test files that keep a worker busy for minutes (measured under `make test`) come
first: pytest-xdist (``--dist loadfile --no-loadscope-reorder``) hands out files in
collection order, so the long ones start early and the run does not end waiting
for one of them. Only the order changes; a file not listed keeps its place.
"""

from __future__ import annotations

import pytest

SLOW_FIRST = (
    "tests/integration/realnode/test_soak.py",
    "tests/integration/test_replicas.py",
    "tests/integration/test_executor_e2e.py",
    "tests/integration/realnode/test_inpod_realnode.py",
    "tests/integration/realnode/test_executor_realnode.py",
    "tests/integration/test_kueue_executor.py",
    "tests/integration/realnode/test_retries_realnode.py",
    "tests/integration/test_chart_install.py",
    "tests/integration/test_inpod_shipper.py",
    "tests/integration/realnode/test_workflows_realnode.py",
    "tests/integration/realnode/test_kueue_realnode.py",
    "tests/integration/realnode/test_chart_realnode.py",
    "tests/integration/realnode/test_mixed_load.py",
    "tests/integration/realnode/test_upgrade_realnode.py",
)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    rank = {path: i for i, path in enumerate(SLOW_FIRST)}
    items.sort(key=lambda item: rank.get(item.nodeid.split("::")[0], len(SLOW_FIRST)))
