"""Garbage-collector settings for a serving process: what is alive after start-up is never scanned again.

A started worker holds some 70,000 objects (modules, configuration, compiled
policies, keys) that live as long as the process. CPython's cycle collector
still walks all of them on every full collection: ≈40 ms measured on the
benchmark machine, during which every in-flight exchange waits. That pause
was the 99th percentile (docs/performance.md, step 17). :func:`tuned_gc`
moves them into the permanent generation (:func:`gc.freeze`) once the runtime
has started, and collects the young generation less often; both are undone
when the runtime stops.
"""

from __future__ import annotations

import contextlib
import gc
from collections.abc import Iterator

#: how many youngest-generation collections trigger one of the middle generation, and of those one full
#: collection (CPython's defaults are 10 and 10); with start-up objects frozen a full collection is short,
#: but most objects of a request die young, so the older generations are rarely worth walking
_MIDDLE_EVERY, _FULL_EVERY = 20, 100


@contextlib.contextmanager
def tuned_gc(*, freeze: bool, young_threshold: int) -> Iterator[None]:
    """Freeze what exists now and set the young-generation threshold (0: keep the current settings)."""
    previous = gc.get_threshold()
    if young_threshold > 0:
        gc.set_threshold(young_threshold, _MIDDLE_EVERY, _FULL_EVERY)
    if freeze:
        gc.collect()  # what start-up left as garbage is freed, not frozen
        gc.freeze()
    try:
        yield
    finally:
        if freeze:
            gc.unfreeze()
        gc.set_threshold(*previous)
