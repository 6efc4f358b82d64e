"""SOA serial numbers (RFC 1982 serial number arithmetic, SERIAL_BITS = 32) (pure).

The registry zone's serial is its change index mod 2^32: it wraps after four billion
changes, and secondaries compare serials the RFC 1982 way, in which the numbers form a
circle and ``a < b`` means b is less than half the circle ahead of a.
"""

from __future__ import annotations

SERIAL_MODULUS = 2**32
_HALF = 2**31


def serial_of(index: int) -> int:
    """The SOA serial of a change index."""
    return index % SERIAL_MODULUS


def serial_lt(a: int, b: int) -> bool:
    """RFC 1982 3.2: a < b. Undefined pairs (exactly half the circle apart) are neither."""
    return (a < b and b - a < _HALF) or (a > b and a - b > _HALF)


def serial_gt(a: int, b: int) -> bool:
    return serial_lt(b, a)


def serial_add(a: int, n: int) -> int:
    """RFC 1982 3.1: n may be at most 2^31 - 1."""
    if not 0 <= n < _HALF:
        raise ValueError(f"serial addition of {n}: must be 0 to {_HALF - 1}")
    return (a + n) % SERIAL_MODULUS
