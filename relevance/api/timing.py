"""Stage timings as a standard ``Server-Timing`` header, so any client can read them."""

from __future__ import annotations

from relevance.pipeline import Timings


def server_timing(timings: Timings) -> str:
    return ", ".join(f"{name};dur={ms}" for name, ms in timings.stages_ms.items())
