"""Our studies of the toolkit: one folder each (``validation/<study>/``), never installed.

Each study folder holds its ``PROTOCOL.md`` (fixed before its runs, or saying where in its code
the protocol was fixed), its experiment modules (``experiment.py``; the runs, as resumable jobs of
:func:`aflqueue.jobs.run_jobs` stamped with the package's and the study's own code, :func:`code`),
``run.py`` (the command that runs the study and writes its report; ``--report-only`` rebuilds the
report from saved records), ``report.py``, ``figures.py``, ``results/`` (the committed records and
reports) and ``figures/``. A study imports the library; the library never imports a study.

Studies: ``paper`` (the optimiser's operating point against tuned baselines), ``regimes`` (where
optimising the routing pays, predicted from pilot runs), ``approx`` (the approximation for general
service, and oracle tests of its delay formula), ``closed_forms`` (closed forms against
simulation), ``fedbuff_family`` (FedBuff, FedEcho, FedRevive: the papers' claims, tuned), ``grid``
(the first validation grid, superseded by ``paper``).

Import them from the repository root (``python -m validation.<study>.run``, or
``python validation/<study>/run.py``, which puts the root on the path itself); the test suite
runs from the root. :mod:`validation.reporting` holds what the reports share (number formats,
Markdown and HTML pages) and :mod:`validation.regenerate` rebuilds every committed report from
its records and compares.
"""

from __future__ import annotations

from pathlib import Path

#: The ``validation/`` folder.
ROOT = Path(__file__).resolve().parent
#: Shared code of the studies (stamped into every study's records with the study's own folder).
SHARED = (ROOT / "__init__.py", ROOT / "reporting.py")


def code(*studies: str) -> tuple[Path, ...]:
    """The code outside the package that a study's records depend on: the named study folders and
    the shared modules (for :func:`aflqueue.jobs.code_version` and ``run_jobs(..., code=...)``)."""
    return tuple(ROOT / s for s in studies) + SHARED
