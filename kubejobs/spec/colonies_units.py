"""The cpu and memory forms the Colonies server reads the way Kubernetes does.

The server (v1.9.7, pkg/parsers) stores conditions as numbers and hands them
back rewritten, so the executor only ever sees what survived that trip:

- cpu counts only as whole millicores: "500m" is kept, "2" or "1.5" become
  "0m" (no request at all), "1.5m" is refused at submit;
- mem, storage and gpu.mem need a whole number and a unit; of its units, Ki,
  Mi, Gi, M and G also mean the same to Kubernetes (its KiB, K, KB, ... do
  not, and 1.5Gi, 1e9 or 2Ti are refused); the value comes back in whole MiB,
  rounded down, so anything under 1Mi becomes 0.

A spec in any other form would run with other resources than it names, so
validation refuses it and says which form to write.
"""

from __future__ import annotations

import math
import re
from decimal import Decimal

from kubejobs.spec.quantity import parse_quantity

_CPU = re.compile(r"^[0-9]+m$")
_MEMORY = re.compile(r"^[0-9]+(?:Ki|Mi|Gi|M|G)$")
_MI = 2**20


def cpu_problem(text: str) -> str | None:
    """Why the server would not run `text` as the cpu Kubernetes reads it, or None."""
    if _CPU.match(text):
        return None
    amount = _amount(text)
    if amount is None:
        return f"{text!r} is not a cpu amount; write whole millicores such as 500m or 2000m"
    if amount < 0:
        return f"{text!r} is negative"
    millicores = math.ceil(amount * 1000)
    return (
        f"the Colonies server reads cpu only as whole millicores and would run {text!r} "
        f"with no cpu at all; write '{millicores}m'"
    )


def memory_problem(text: str) -> str | None:
    """Why the server would not keep `text` as the amount Kubernetes reads, or None."""
    amount = _amount(text)
    if amount is None:
        return (
            f"{text!r} is not an amount of memory; write a whole number with Ki, Mi, Gi, M or G "
            "(512Mi, 4Gi)"
        )
    if amount < 0:
        return f"{text!r} is negative"
    if not _MEMORY.match(text):
        return (
            f"the Colonies server takes memory only as a whole number with Ki, Mi, Gi, M or G "
            f"and refuses or misreads {text!r}; write '{_whole_mib(amount)}'"
        )
    if 0 < amount < _MI:
        return (
            f"the Colonies server keeps memory in whole MiB, so {text!r} would become 0 "
            "(no request at all); write at least 1Mi"
        )
    return None


def _amount(text: str) -> Decimal | None:
    try:
        return parse_quantity(text)
    except ValueError:
        return None


def _whole_mib(amount: Decimal) -> str:
    mib = amount / _MI
    if mib == int(mib) and int(mib) % 1024 == 0 and mib:
        return f"{int(mib) // 1024}Gi"
    return f"{max(1, int(mib))}Mi"
