"""Kubernetes resource quantities, parsed exactly as the API server's grammar allows.

<signedNumber><suffix>, suffix one of the binary SI (Ki..Ei), decimal SI (m, k, M..E,
or none) or a decimal exponent (e3, E-2). The value is kept as a Decimal so the
executor can sum requests without rounding.
"""

from __future__ import annotations

import re
from decimal import Decimal

_QUANTITY = re.compile(
    r"""^(?P<number>[+-]?(?:\d+\.?\d*|\.\d+))
        (?P<suffix>Ki|Mi|Gi|Ti|Pi|Ei|[mkMGTPE]|[eE][+-]?\d+)?$""",
    re.VERBOSE,
)
_BINARY = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "Pi": 2**50, "Ei": 2**60}
_DECIMAL: dict[str, Decimal | int] = {
    "m": Decimal("0.001"),
    "k": 10**3,
    "M": 10**6,
    "G": 10**9,
    "T": 10**12,
    "P": 10**15,
    "E": 10**18,
}


def parse_quantity(text: str) -> Decimal:
    """The value of a Kubernetes quantity; ValueError when `text` is not one."""
    match = _QUANTITY.match(text)
    if match is None:
        raise ValueError(
            f"{text!r} is not a Kubernetes quantity (examples: 500m, 2, 1.5, 512Mi, 2G, 1e9)"
        )
    number = Decimal(match["number"])
    suffix = match["suffix"] or ""
    if suffix in _BINARY:
        return number * _BINARY[suffix]
    if suffix in _DECIMAL:
        return number * _DECIMAL[suffix]
    if suffix:
        return number * Decimal(10) ** int(suffix[1:])
    return number


def is_quantity(text: str) -> bool:
    return _QUANTITY.match(text) is not None
