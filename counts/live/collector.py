"""The cyclic garbage collector of a worker holding thousands of live connections.

Each held connection is a few hundred long-lived objects, and Python's full (generation 2)
collection walks every one of them: at 10,000 connections a worker held ~400,000, and each full
collection stopped the worker's event loop for 0.5-1.9 s on a loaded 2-core machine (gc
callbacks, bench live pass): every write and every live event in that window waited it out,
which was the live delivery tail (p99 214-295 ms; with this, 114 ms in the same conditions).

So what survives a full collection is frozen (gc.freeze: the collector never walks it again,
reference counting still frees it), and later full collections walk only what came since.
Cyclic garbage made of frozen objects (a long-lived connection whose objects form cycles, once
it closes) is found only by a collection that walks everything: one in every FULL_SCAN_EVERY
seconds does (it unfreezes first), which bounds what can wait to be freed to what closed in
that time.
"""

import gc
import time

FULL_SCAN_EVERY = 600.0  # seconds: one long pause every ten minutes, not one every few seconds


class Collector:
    """Installs itself as a gc callback (install), or not (uninstall)."""

    def __init__(self, full_scan_every: float = FULL_SCAN_EVERY):
        self.full_scan_every = full_scan_every
        self.last_full_scan = time.monotonic()
        self.full_scans = 0

    def install(self) -> None:
        gc.callbacks.append(self._on_collection)

    def uninstall(self) -> None:
        """Stop (tests); what is frozen goes back to the collector."""
        if self._on_collection in gc.callbacks:
            gc.callbacks.remove(self._on_collection)
        gc.unfreeze()

    def _on_collection(self, phase: str, info: dict) -> None:
        if info["generation"] != 2:
            return
        if phase == "start":
            if time.monotonic() - self.last_full_scan >= self.full_scan_every:
                gc.unfreeze()  # this collection walks everything: frozen cycles are found
                self.last_full_scan = time.monotonic()
                self.full_scans += 1
        else:
            gc.freeze()  # what survived a full collection is not garbage now
