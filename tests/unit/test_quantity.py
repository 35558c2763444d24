from decimal import Decimal

import pytest

from kubejobs.spec.quantity import parse_quantity


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("2", Decimal(2)),
        ("500m", Decimal("0.5")),
        ("1.5", Decimal("1.5")),
        (".5", Decimal("0.5")),
        ("1.", Decimal(1)),
        ("+2", Decimal(2)),
        ("512Mi", Decimal(512 * 2**20)),
        ("1Ki", Decimal(1024)),
        ("2Ei", Decimal(2 * 2**60)),
        ("2G", Decimal(2 * 10**9)),
        ("3k", Decimal(3000)),
        ("1e9", Decimal(10**9)),
        ("1E3", Decimal(1000)),
        ("12e-3", Decimal("0.012")),
        ("1.5Gi", Decimal("1.5") * 2**30),
        ("0", Decimal(0)),
    ],
)
def test_accepts_every_kubernetes_form(text: str, value: Decimal) -> None:
    assert parse_quantity(text) == value


@pytest.mark.parametrize(
    "text", ["1 GB", "1GB", "1gi", "Mi", "", "1.2.3", "e3", "1Mi ", "1KiB", "0x10", "1m5"]
)
def test_rejects_what_kubernetes_rejects(text: str) -> None:
    with pytest.raises(ValueError, match="not a Kubernetes quantity"):
        parse_quantity(text)
