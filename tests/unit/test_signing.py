"""kubejobs' Colonies signatures are pycolonies' own, byte for byte (the server checks them)."""

from __future__ import annotations

import crypto
from hypothesis import given, settings
from hypothesis import strategies as st

from kubejobs.adapters.signing import multiply_g, sign

keys = st.integers(min_value=1, max_value=crypto.N - 1).map(lambda k: f"{k:064x}")


@settings(max_examples=60, deadline=None)
@given(keys, st.text())
def test_the_signature_is_pycolonies_signature(prvkey: str, payload: str) -> None:
    assert sign(payload, prvkey) == crypto.sign(payload, prvkey)


@given(st.sampled_from([1, 2, 15, 16, 255, 2**252, crypto.N - 1, crypto.N - 16**63]))
def test_the_generator_multiples_at_the_edges(k: int) -> None:
    assert multiply_g(k) == crypto.fast_multiply(crypto.G, k)


def test_a_key_made_by_pycolonies_signs_alike() -> None:
    prvkey = crypto.Crypto().prvkey()
    assert sign("eyJtc2d0eXBlIjoiYXNzaWduIn0=", prvkey) == crypto.sign(
        "eyJtc2d0eXBlIjoiYXNzaWduIn0=", prvkey
    )
