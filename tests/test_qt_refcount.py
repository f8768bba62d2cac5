"""A tray app emits signals all day: emitting must not leak or drop references.

PySide6 6.12.0 dropped a reference to True on every emit; on Python 3.11 the interpreter
aborts ("bool_dealloc: deallocating True or False") once True's count runs out, which for a
poll every second is a matter of hours. pyproject.toml excludes that release; this test keeps
it (and any release like it) out.
"""

from __future__ import annotations

import sys

from PySide6.QtCore import QObject, Signal


class Emitter(QObject):
    snapshot = Signal(object)
    nothing = Signal()


def test_emitting_signals_keeps_reference_counts(qapp: object) -> None:
    emitter = Emitter()
    received = [0]

    def count(_value: object) -> None:
        received[0] += 1

    emitter.snapshot.connect(count)
    emitter.nothing.connect(lambda: None)
    before = (sys.getrefcount(True), sys.getrefcount(False), sys.getrefcount(None))
    for _ in range(2000):
        emitter.snapshot.emit(None)
        emitter.nothing.emit()
    after = (sys.getrefcount(True), sys.getrefcount(False), sys.getrefcount(None))
    assert received[0] == 2000
    # A few references may come and go elsewhere; a leak per emit would show in thousands.
    assert all(abs(b - a) < 100 for a, b in zip(before, after, strict=True)), (before, after)
