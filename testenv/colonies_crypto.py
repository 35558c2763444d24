"""secp256k1 signatures as Colonies clients make them and the v1.9.7 server checks them.

internal/crypto: the signed text is the base64 payload, hashed with SHA3-256;
a signature is r || s || v (65 bytes, hex) with v the btcec recovery code minus
27; the server refuses s above N/2; an id is the SHA3-256 of the hex
uncompressed public key ("04" X Y).
"""

from __future__ import annotations

import hashlib
import os

_P = 2**256 - 2**32 - 977
_N = 115792089237316195423570985008687907852837564279074904382605163141518161494337
_G = (
    55066263022277343669578718895168534326250603453777594175500187360389116729240,
    32670510020758816978083085130507043184471273380659243275938904335757337482424,
)

Jac = tuple[int, int, int]


def _jdouble(p: Jac) -> Jac:
    x, y, z = p
    if y == 0:
        return (0, 0, 0)
    ysq = y * y % _P
    s = 4 * x * ysq % _P
    m = 3 * x * x % _P
    nx = (m * m - 2 * s) % _P
    ny = (m * (s - nx) - 8 * ysq * ysq) % _P
    nz = 2 * y * z % _P
    return (nx, ny, nz)


def _jadd(p: Jac, q: Jac) -> Jac:
    if p[2] == 0:
        return q
    if q[2] == 0:
        return p
    z1s, z2s = p[2] * p[2] % _P, q[2] * q[2] % _P
    u1, u2 = p[0] * z2s % _P, q[0] * z1s % _P
    s1, s2 = p[1] * z2s * q[2] % _P, q[1] * z1s * p[2] % _P
    if u1 == u2:
        return _jdouble(p) if s1 == s2 else (0, 0, 0)
    h, r = u2 - u1, s2 - s1
    h2 = h * h % _P
    h3 = h * h2 % _P
    u1h2 = u1 * h2 % _P
    nx = (r * r - h3 - 2 * u1h2) % _P
    ny = (r * (u1h2 - nx) - s1 * h3) % _P
    nz = h * p[2] * q[2] % _P
    return (nx, ny, nz)


def _jmul(p: Jac, n: int) -> Jac:
    result: Jac = (0, 0, 0)
    addend = p
    while n:
        if n & 1:
            result = _jadd(result, addend)
        addend = _jdouble(addend)
        n >>= 1
    return result


def _affine(p: Jac) -> tuple[int, int]:
    zinv = pow(p[2], -1, _P)
    return (p[0] * zinv * zinv % _P, p[1] * zinv * zinv * zinv % _P)


def recover_id(payload: str, signature_hex: str) -> str:
    """The Colonies id (SHA3-256 of the hex uncompressed public key) that signed `payload`.

    As internal/crypto/signature.go: 65 bytes r || s || v with v the btcec
    recovery code minus 27 (0..3, 4..7 for a compressed key), s at most N/2.
    """
    try:
        sig = bytes.fromhex(signature_hex)
    except ValueError:
        raise ValueError(
            "encoding/hex: invalid byte in signature"
            if len(signature_hex) % 2 == 0
            else "encoding/hex: odd length hex string"
        ) from None
    if len(sig) != 65:
        raise ValueError("Invalid signature length")
    r, s, code = int.from_bytes(sig[:32], "big"), int.from_bytes(sig[32:64], "big"), sig[64]
    if code > 7:
        raise ValueError("Failed to recover public key: invalid compact signature recovery code")
    recid = code & 3
    if not (0 < r < _N and 0 < s < _N):
        raise ValueError("Failed to recover public key: signature is invalid")
    x = r + (recid >> 1) * _N
    if x >= _P:
        raise ValueError("Failed to recover public key: signature is invalid")
    z = int.from_bytes(hashlib.sha3_256(payload.encode()).digest(), "big")
    y = pow((x * x * x + 7) % _P, (_P + 1) // 4, _P)
    if (y * y - (x * x * x + 7)) % _P != 0:
        raise ValueError("Failed to recover public key: signature is invalid")
    if y % 2 != recid & 1:
        y = _P - y
    rinv = pow(r, -1, _N)
    # Q = r^-1 (sR - zG) = u1*G + u2*R, computed in one pass (Shamir's trick)
    u1, u2 = (-z * rinv) % _N, (s * rinv) % _N
    g: Jac = (_G[0], _G[1], 1)
    rr: Jac = (x, y, 1)
    both = _jadd(g, rr)
    q: Jac = (0, 0, 0)
    for bit in range(max(u1.bit_length(), u2.bit_length()) - 1, -1, -1):
        q = _jdouble(q)
        b1, b2 = (u1 >> bit) & 1, (u2 >> bit) & 1
        if b1 and b2:
            q = _jadd(q, both)
        elif b1:
            q = _jadd(q, g)
        elif b2:
            q = _jadd(q, rr)
    if q[2] == 0:
        raise ValueError("Failed to recover public key: signature is invalid")
    if s * 2 > _N:
        raise ValueError("Failed verify signature: Signature s value is over half the order")
    return _pub_id(*_affine(q))


def _pub_id(qx: int, qy: int) -> str:
    pub_hex = "04" + qx.to_bytes(32, "big").hex() + qy.to_bytes(32, "big").hex()
    return hashlib.sha3_256(pub_hex.encode()).hexdigest()


def generate_prvkey() -> str:
    """A new private key (hex), as Colonies clients make them."""
    while True:
        key = hashlib.sha3_256(os.urandom(32)).digest()
        if 0 < int.from_bytes(key, "big") < _N:
            return key.hex()


def key_id(prvkey_hex: str) -> str:
    """The Colonies id of a private key."""
    qx, qy = _affine(_jmul((_G[0], _G[1], 1), int(prvkey_hex, 16)))
    return _pub_id(qx, qy)


def sign(payload: str, prvkey_hex: str, low_s: bool = True) -> str:
    """Sign like Colonies clients: SHA3-256 of the text, r || s || v (hex), s low."""
    z = int.from_bytes(hashlib.sha3_256(payload.encode()).digest(), "big")
    d = int(prvkey_hex, 16)
    while True:
        k = int.from_bytes(os.urandom(32), "big") % _N
        if k == 0:
            continue
        rx, ry = _affine(_jmul((_G[0], _G[1], 1), k))
        r = rx % _N
        if r == 0 or rx >= _N:
            continue
        s = pow(k, -1, _N) * (z + r * d) % _N
        if s == 0:
            continue
        v = ry % 2
        if (s * 2 >= _N) == low_s:
            s = _N - s
            v ^= 1
        return (r.to_bytes(32, "big") + s.to_bytes(32, "big") + bytes([v])).hex()
