"""Job rids: UUIDs whose first 48 bits are the time they were made (the UUIDv7 layout, RFC 9562).

Random UUIDs (version 4) land anywhere in the rid indexes of ``job`` and of
the archive; over millions of jobs those indexes outgrow the cache and every
insert reads a page from disk. Time-ordered ones are added at the right-hand
edge, like a sequence, and stay as unique: 74 random bits per millisecond.
A rid therefore tells when its job was made, to the millisecond.
"""

from __future__ import annotations

import os
import time
from uuid import UUID

_VERSION_7 = 0x7 << 76
_VARIANT_RFC = 0x2 << 62
_CLEAR = ~((0xF << 76) | (0x3 << 62))


def new_rid() -> UUID:
    """A new, time-ordered job rid."""
    milliseconds = time.time_ns() // 1_000_000
    value = ((milliseconds & 0xFFFF_FFFF_FFFF) << 80) | int.from_bytes(os.urandom(10), "big")
    return UUID(int=(value & _CLEAR) | _VERSION_7 | _VARIANT_RFC)
