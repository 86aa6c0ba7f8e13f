"""Shared test helper: a server algorithm that raises once, mid-run, to test checkpoint/resume."""


def crash_once(base, at: int):
    """Subclass of ``base`` (same registered name, hence the same configuration hash) that raises
    ``RuntimeError("simulated crash")`` at arrival ``at``, once per returned class."""

    class CrashOnce(base):
        name = base.name
        armed = True

        def on_arrival(self, a):
            if a.index == at and CrashOnce.armed:
                CrashOnce.armed = False
                raise RuntimeError("simulated crash")
            super().on_arrival(a)

    return CrashOnce
