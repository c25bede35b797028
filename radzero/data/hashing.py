"""The project's hashes: run keys and fingerprints, seeded draws in [0, 1), content hashes.

Which hash each one uses is part of what it produces, so none of them may change silently:

- :func:`fingerprint` (SHA-256) names runs and caches: a changed hash only makes the next run
  recompute instead of reusing its outputs.
- :func:`unit_interval` (BLAKE2b, 64 bits) draws the split of manifest rows that come without
  one: changing it would move images between train, val and test.
- :func:`content_hash` (BLAKE2b, 128 bits) is stored per prepared image (``content_hash``) and
  enters the prepared output's fingerprint.
"""

from __future__ import annotations

import hashlib


def fingerprint(*parts: str, length: int | None = None) -> str:
    """The SHA-256 hex digest of ``parts`` joined by NUL characters; its first ``length`` chars.

    One part hashes as itself: ``fingerprint(text) == sha256(text).hexdigest()``.
    """
    digest = hashlib.sha256("\0".join(parts).encode()).hexdigest()
    return digest if length is None else digest[:length]


def unit_interval(key: str, seed: int) -> float:
    """A number in [0, 1) drawn from ``key`` and ``seed`` alone (uniform over keys)."""
    digest = hashlib.blake2b(f"{seed}:{key}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2**64


def content_hash(data: bytes) -> str:
    """The 32-hex-character BLAKE2b-128 digest of a file's bytes."""
    return hashlib.blake2b(data, digest_size=16).hexdigest()
