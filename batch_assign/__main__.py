"""The `batch-assign` command (and `python -m batch_assign`): the CLI in a process of its own,
with two garbage-collector settings for a one-shot run.

- No collection while the dependencies load, and what they built is frozen afterwards: it lives
  as long as the process, so no collection needs to walk it, then or later.
- A young generation of 10,000 objects instead of 700. With 64 requests in flight a few
  thousand objects are alive at any time, so at 700 a 20,000-row run made ~1,000 young
  collections (~0.1 ms each) that freed almost nothing, and 8 full ones; at 10,000 it makes a
  handful (counted with `gc.callbacks`). Cycles are still collected, in larger batches.
"""

from __future__ import annotations

import gc

_YOUNG_GENERATION = 10_000


def main() -> None:
    gc.disable()
    try:
        from batch_assign.cli import main as cli_main
    finally:
        gc.freeze()
        gc.enable()
    _, older, oldest = gc.get_threshold()
    gc.set_threshold(_YOUNG_GENERATION, older, oldest)
    cli_main()


if __name__ == "__main__":
    main()
