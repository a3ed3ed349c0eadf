"""Fault injection for the sandbox: reproducible with a seed, chosen by rate and/or by lead id.

Modes (what the client sees, and whether the assignment was applied):

    latency       every request waits `latency_ms` plus up to `jitter_ms` (not a rule, a setting)
    503           a burst of `burst` consecutive 503s on any endpoint           (not applied)
    500-before    500 on assign-workflow, nothing applied                       (not applied)
    500-after     the assignment is applied, then 500                           (applied)
    drop-after    the assignment is applied, then the connection is closed      (applied)
    slow-after    the assignment is applied, the answer comes `delay_s` later   (applied)

A rule is written `MODE[:rate=R][:leads=ID,ID...|@FILE][:times=N][:burst=N][:delay=S]` on the
command line, e.g. `500-after:rate=0.05` or `drop-after:leads=@ids.txt:times=1`.
"""

from __future__ import annotations

import random
import threading
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["AFTER_MODES", "FaultPlan", "FaultRule", "parse_fault_rule"]

AFTER_MODES = frozenset({"500-after", "drop-after", "slow-after"})
_MODES = frozenset({"503", "500-before"}) | AFTER_MODES


@dataclass(frozen=True, slots=True)
class FaultRule:
    """One fault mode: fires with probability `rate`, or for the listed leads, `times` at most."""

    mode: str
    rate: float = 0.0
    lead_ids: frozenset[str] = frozenset()
    times: int | None = None
    burst: int = 5
    delay_s: float = 5.0

    def __post_init__(self) -> None:
        if self.mode not in _MODES:
            raise ValueError(f"unknown fault mode {self.mode!r}; choose from {sorted(_MODES)}")
        if not 0.0 <= self.rate <= 1.0:
            raise ValueError(f"fault rate must be between 0 and 1, got {self.rate}")


def parse_fault_rule(text: str) -> FaultRule:
    """Parse `MODE[:key=value...]` as documented in this module."""
    mode, *parts = text.split(":")
    options: dict[str, object] = {}
    for part in parts:
        key, sep, value = part.partition("=")
        if not sep:
            raise ValueError(f"fault option {part!r} must look like key=value")
        if key == "rate":
            options["rate"] = float(value)
        elif key == "leads":
            raw = Path(value[1:]).read_text().split() if value.startswith("@") else value.split(",")
            options["lead_ids"] = frozenset(item.strip().lower() for item in raw if item.strip())
        elif key in ("times", "burst"):
            options[key] = int(value)
        elif key == "delay":
            options["delay_s"] = float(value)
        else:
            raise ValueError(f"unknown fault option {key!r} (rate, leads, times, burst, delay)")
    return FaultRule(mode.strip(), **options)  # type: ignore[arg-type]


@dataclass(slots=True)
class FaultPlan:
    """Decides, per request, which fault (if any) fires; thread-safe and seeded."""

    rules: tuple[FaultRule, ...] = ()
    latency_ms: float = 0.0
    jitter_ms: float = 0.0
    seed: int | None = None
    _rng: random.Random = field(init=False)
    _lock: threading.Lock = field(init=False, default_factory=threading.Lock)
    _fired: Counter[tuple[str, str]] = field(init=False, default_factory=Counter)
    _burst_left: int = field(init=False, default=0)
    injected: Counter[str] = field(init=False, default_factory=Counter)

    def __post_init__(self) -> None:
        self._rng = random.Random(self.seed)

    def delay_s(self) -> float:
        """How long this request waits before being handled."""
        if not self.latency_ms and not self.jitter_ms:
            return 0.0
        with self._lock:
            jitter = self._rng.uniform(0, self.jitter_ms) if self.jitter_ms else 0.0
        return (self.latency_ms + jitter) / 1000.0

    def unavailable(self) -> bool:
        """Whether this request (any endpoint) is answered 503."""
        with self._lock:
            if self._burst_left > 0:
                self._burst_left -= 1
                self.injected["503"] += 1
                return True
            for rule in self.rules:
                if rule.mode == "503" and rule.rate and self._rng.random() < rule.rate:
                    self._burst_left = max(rule.burst - 1, 0)
                    self.injected["503"] += 1
                    return True
        return False

    def for_assign(self, lead_id: str, *, before: bool) -> FaultRule | None:
        """The fault that fires on this assign-workflow call, in the before or after phase."""
        with self._lock:
            for rule in self.rules:
                if (rule.mode == "500-before") != before or rule.mode == "503":
                    continue
                if self._fires(rule, lead_id):
                    self.injected[rule.mode] += 1
                    return rule
        return None

    def _fires(self, rule: FaultRule, lead_id: str) -> bool:
        key = (rule.mode, lead_id)
        if rule.times is not None and self._fired[key] >= rule.times:
            return False
        hit = lead_id in rule.lead_ids or (rule.rate > 0 and self._rng.random() < rule.rate)
        if hit:
            self._fired[key] += 1
        return hit
