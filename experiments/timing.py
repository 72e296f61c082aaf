"""Where a run's time goes: JAX compilation (tracing, lowering, XLA) versus the rest.

:func:`compile_clock` listens to the duration events JAX records for each compilation
(``/jax/core/compile/...``: tracing to a jaxpr, lowering to MLIR, the backend compile) while
a run executes. The runner stores the sum in every run record as ``compile_time_s``, so a
study's summary can say how much of its time was compilation: on a 2-core CPU most of it.
"""

import contextlib
from collections.abc import Iterator

from jax import monitoring

__all__ = ["COMPILE_EVENTS", "CompileClock", "compile_clock"]

COMPILE_EVENTS = "/jax/core/compile/"


class CompileClock:
    """Seconds JAX spent compiling since the clock started (``seconds``)."""

    def __init__(self) -> None:
        self.seconds = 0.0

    def __call__(self, event: str, duration_secs: float, **kwargs) -> None:
        """The listener: adds the duration of every compilation event."""
        if event.startswith(COMPILE_EVENTS):
            self.seconds += float(duration_secs)


@contextlib.contextmanager
def compile_clock() -> Iterator[CompileClock]:
    """Counts compilation seconds inside the ``with`` block (this process, all threads)."""
    clock = CompileClock()
    monitoring.register_event_duration_secs_listener(clock)
    try:
        yield clock
    finally:
        monitoring.unregister_event_duration_listener(clock)
