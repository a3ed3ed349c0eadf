"""Planner: which input rows this run owns (`--shard K/N`), before they reach the journal.

A row belongs to shard `blake2b(lead id) mod N`: stable across machines, processes and Python
versions (unlike `hash()`), so N hosts split one file with no coordination. Valid rows hash their
canonical lead id, so a lead always lands in one shard whatever its spelling; invalid rows hash
the raw value, so they too are reported by exactly one shard.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Iterator

from batch_assign.errors import UsageError
from batch_assign.reader import ReadBatch
from batch_assign.records import Shard

__all__ = ["ShardCounter", "parse_shard", "shard_of", "take_shard"]


def parse_shard(text: str) -> Shard:
    """`K/N` with 0 <= K < N."""
    index, sep, count = text.partition("/")
    try:
        shard = Shard(int(index), int(count))
    except ValueError:
        raise UsageError(f"--shard {text!r}: write it as K/N, e.g. 0/4") from None
    if not sep or shard.count < 1 or not 0 <= shard.index < shard.count:
        raise UsageError(
            f"--shard {text!r}: K counts from 0, so it must be 0 to N-1 (e.g. 0/4 ... 3/4)"
        )
    return shard


def shard_of(lead_key: str, count: int) -> int:
    digest = hashlib.blake2b(lead_key.encode("utf-8"), digest_size=8).digest()
    return int.from_bytes(digest, "big") % count


class ShardCounter:
    """Counts every row read, kept or not, so a shard report knows the input's size."""

    def __init__(self) -> None:
        self.rows = 0


def take_shard(
    batches: Iterable[ReadBatch], shard: Shard | None, counter: ShardCounter
) -> Iterator[ReadBatch]:
    """Only the rows of `shard` (all of them when None)."""
    for batch in batches:
        counter.rows += len(batch.rows)
        if shard is None or shard.count == 1:
            yield batch
            continue
        kept = [
            row
            for row in batch.rows
            if shard_of((row[1] or "").strip().lower(), shard.count) == shard.index
        ]
        yield ReadBatch(kept)
