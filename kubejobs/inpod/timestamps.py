"""RFC3339Nano timestamps as the kubelet prefixes them to log lines, as integer nanoseconds."""

from __future__ import annotations

import calendar
import datetime as dt
import time

_cache: tuple[bytes, int] = (b"", 0)


def parse_ns(stamp: bytes) -> int:
    """`2024-05-01T12:00:00.123456789Z` (any number of fraction digits, or none) -> ns since the epoch."""
    global _cache
    seconds = stamp[:19]
    cached_key, cached_value = _cache
    if seconds == cached_key:
        base = cached_value
    else:
        base = calendar.timegm(time.strptime(seconds.decode("ascii"), "%Y-%m-%dT%H:%M:%S"))
        _cache = (seconds, base)
    rest = stamp[19:]
    if rest.endswith(b"Z"):
        rest = rest[:-1]
    else:
        # An explicit offset: rare (the kubelet writes UTC); let datetime handle it.
        when = dt.datetime.fromisoformat(stamp.decode("ascii"))
        digits = b""
        if rest.startswith(b"."):
            for c in rest[1:]:
                if not 48 <= c <= 57:
                    break
                digits += bytes((c,))
        return int(when.timestamp()) * 1_000_000_000 + int(digits[:9].ljust(9, b"0"))
    nanos = 0
    if rest.startswith(b"."):
        nanos = int(rest[1:10].ljust(9, b"0"))
    return base * 1_000_000_000 + nanos


def to_datetime(ns: int) -> dt.datetime:
    return dt.datetime.fromtimestamp(ns // 1_000_000_000, dt.UTC)
