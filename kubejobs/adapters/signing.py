"""Colonies request signatures, as pycolonies makes them, about ten times faster.

Every Colonies request is signed (secp256k1 ECDSA over the SHA3-256 of the
payload, with a deterministic nonce and Ethereum's recovery byte). pycolonies
does it in pure Python with a double-and-add multiplication of the generator
G: some 256 doublings and 128 additions of big integers a signature, several
milliseconds of CPU. The executor signs every assign, close and lookup; every
pod's shipper signs every log batch. At 1,000 processes in flight that was a
fifth of the executor's CPU.

Only the multiplication changes: G is fixed, so k*G is a sum of 64 table
entries (k's 64 hexadecimal digits, each entry j * 16^i * G precomputed once,
in affine coordinates, which makes each addition cheaper). The nonce, the
hash, the encoding and the low-s rule are pycolonies' own functions, so the
signature is byte for byte pycolonies' (tests/unit/test_signing.py checks it
on random keys and payloads, and every integration test against the real
server).
"""

from __future__ import annotations

import hashlib
import threading

from crypto import (  # pycolonies' module
    G,
    N,
    P,
    big_endian_to_int,
    deterministic_generate_k,
    int_to_big_endian,
    int_to_byte,
    jacobian_add,
    pad32,
    to_jacobian,
)

WINDOWS = 64  # hexadecimal digits of a 256-bit scalar

_table: list[list[tuple[int, int]]] = []
_table_lock = threading.Lock()


def _affine(point: tuple[int, int, int]) -> tuple[int, int]:
    z = pow(point[2], -1, P)
    return (point[0] * z * z) % P, (point[1] * z * z * z) % P


def _build() -> list[list[tuple[int, int]]]:
    """table[i][j] = j * 16^i * G (j in 1..15; entry 0 unused)."""
    table = []
    base = to_jacobian(G)  # 16^i * G
    for _ in range(WINDOWS):
        row = [(0, 0)]
        point = base
        for _ in range(15):
            row.append(_affine(point))
            point = jacobian_add(point, base)
        table.append(row)
        base = point  # 16 * base
    return table


def _g_table() -> list[list[tuple[int, int]]]:
    if not _table:
        with _table_lock:
            if not _table:
                _table.extend(_build())
    return _table


def multiply_g(k: int) -> tuple[int, int]:
    """k * G in affine coordinates (0 < k < N)."""
    table = _g_table()
    x1 = y1 = z1 = 0  # the point at infinity while z1 is 0
    for i in range(WINDOWS):
        digit = (k >> (4 * i)) & 15
        if not digit:
            continue
        x2, y2 = table[i][digit]
        if not z1:
            x1, y1, z1 = x2, y2, 1
            continue
        # mixed addition: (x1, y1, z1) Jacobian + (x2, y2) affine
        zz = z1 * z1 % P
        h = (x2 * zz - x1) % P
        r = (y2 * zz * z1 - y1) % P
        if not h:
            if r:  # the two cancel out: infinity
                x1 = y1 = z1 = 0
                continue
            raise ArithmeticError("doubling in a fixed-base sum")  # cannot happen for k < N
        hh = h * h % P
        hhh = h * hh % P
        v = x1 * hh % P
        x3 = (r * r - hhh - 2 * v) % P
        y1 = (r * (v - x3) - y1 * hhh) % P
        x1, z1 = x3, z1 * h % P
    return _affine((x1, y1, z1))


def sign(payload: str, prvkey: str) -> str:
    """pycolonies' crypto.sign(payload, prvkey), the generator's multiplication replaced."""
    key = bytes.fromhex(prvkey)
    digest = hashlib.sha3_256(payload.encode("utf-8")).digest()
    z = big_endian_to_int(digest)
    k = deterministic_generate_k(digest, key)
    r, y = multiply_g(k)
    s_raw = pow(k, -1, N) * (z + r * big_endian_to_int(key)) % N
    v = (y % 2) ^ (0 if s_raw * 2 < N else 1)
    s = s_raw if s_raw * 2 < N else N - s_raw
    return b"".join(
        (pad32(int_to_big_endian(r)), pad32(int_to_big_endian(s)), int_to_byte(v))
    ).hex()
