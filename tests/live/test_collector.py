"""The worker's garbage collector: full collections walk only what is new, and now and then all."""

import gc
import weakref

import pytest

from counts.live.collector import Collector


class Node:
    """An object in a reference cycle: only the cyclic collector frees it."""

    def __init__(self) -> None:
        self.me = self


@pytest.fixture
def collector():
    gc.collect()
    made: list[Collector] = []

    def install(full_scan_every: float) -> Collector:
        made.append(Collector(full_scan_every))
        made[-1].install()
        return made[-1]

    yield install
    for each in made:
        each.uninstall()
    gc.collect()


def test_what_survives_a_full_collection_is_frozen_and_new_cycles_are_still_freed(collector):
    collector(full_scan_every=3600)
    survivor = Node()
    gc.collect()
    assert gc.get_freeze_count() > 0
    assert not any(o is survivor for o in gc.get_objects())  # frozen: in no generation walked
    garbage = Node()
    gone = weakref.ref(garbage)
    del garbage
    gc.collect()
    assert gone() is None  # made after the freeze: walked and freed


def test_a_frozen_cycle_is_freed_by_the_periodic_full_scan(collector):
    made = collector(full_scan_every=3600)
    cycle = Node()
    gone = weakref.ref(cycle)
    gc.collect()  # frozen with everything else that survived
    del cycle
    gc.collect()
    assert gone() is not None  # frozen: not walked
    made.full_scan_every = 0  # the next full collection walks everything
    gc.collect()
    assert made.full_scans == 1
    assert gone() is None
