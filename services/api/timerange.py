"""The time range of a warehouse request (history, waste): ``from``, ``to`` and ``step``, with
the bounds its handler checks (``handlers/history.to_query``)."""

from __future__ import annotations

from typing import Annotated

from msgspec import Meta, Struct, field

MAX_HISTORY_STEPS = 20_000  # points per group one request may ask for

Step = Annotated[int, Meta(
    ge=60, le=86_400 * 31,
    description=f"seconds per point; at most {MAX_HISTORY_STEPS:,} steps between `from` and "
                f"`to` ((to - from) / step <= {MAX_HISTORY_STEPS}, after a step of whole "
                "hours widens them to whole hours), else 400 naming `step`",
)]


class TimeRange(Struct, kw_only=True, forbid_unknown_fields=True):
    """``from``/``to`` are Unix seconds; without ``from``, the route's default span before
    ``to`` (history: the last hour, waste: the last day); ``step`` seconds per point."""

    from_: Annotated[int, Meta(
        ge=0, le=4_000_000_000,
        description="Unix seconds; default `to` minus the route's span; before `to`",
    )] | None = field(default=None, name="from")
    to: Annotated[int, Meta(ge=0, le=4_000_000_000,
                            description="Unix seconds; default now")] | None = None
    step: Step = 300
