"""Which queue a caller really joins: queues with hours (expert seats) give way to their `closed` alternative.

Pure, shared by the live IVR (ivr/calls.py) and `hotline explain`, so both say the same.
"""

from __future__ import annotations

import datetime as dt

from model.config import Config
from model.destinations import MAX_REDIRECTS, AnnounceDest, Destination, QueueDest
from model.hours import is_open


def resolve_queue(config: Config, dest: Destination, at: dt.datetime) -> tuple[Destination, list[str], list[str]]:
    """(final destination, prompts to play first, notes for logs/explain).

    A closed queue goes to its `closed` destination (default: the general queue),
    keeping the caller's category; an announcement there is played and followed.
    Chains are bounded; anything unresolvable ends in the general queue.
    """
    general = QueueDest(queue=config.center.general_queue)
    prompts: list[str] = []
    notes: list[str] = []
    for _ in range(MAX_REDIRECTS):
        if isinstance(dest, AnnounceDest):
            prompts.append(dest.prompt)
            dest = dest.then or general
            continue
        if not isinstance(dest, QueueDest):
            return dest, prompts, notes
        q = config.queues.get(dest.queue)
        if q is None or q.hours is None or is_open(config.hours.get(q.hours), at, config.center.timezone):
            return dest, prompts, notes
        alt = q.closed or general
        if isinstance(alt, QueueDest) and alt.category is None and dest.category is not None:
            alt = QueueDest(queue=alt.queue, category=dest.category)
        elif isinstance(alt, AnnounceDest) and isinstance(alt.then, QueueDest) and alt.then.category is None \
                and dest.category is not None:
            alt = AnnounceDest(prompt=alt.prompt, then=QueueDest(queue=alt.then.queue, category=dest.category))
        notes.append(f"queue {dest.queue} is closed (hours {q.hours}): {alt.label()}")
        dest = alt
    notes.append("closed-queue chain too long: the general queue")
    return general, prompts, notes
