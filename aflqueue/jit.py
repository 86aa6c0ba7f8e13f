"""Compiling the package's numba kernels with an on-disk cache, and what to do where none can be kept.

``njit(cache=True)`` stores the machine code next to the source (``__pycache__``), in
``NUMBA_CACHE_DIR`` or in the user cache (``~/.cache/numba``), whichever numba can write first,
so that a new process loads the kernel instead of compiling it again (seconds). Where none of
them is writable (read-only install, read-only or missing home, unwritable ``NUMBA_CACHE_DIR``)
numba refuses ``cache=True`` at decoration; :func:`cached_njit` then compiles without a cache,
:func:`caching_available` turns False and :func:`warn_once` says so, once per process, in one
line. The exact analysis then stays on its numpy path (same bits, see ``mva.py``); the
approximate analysis, which has no numpy path, compiles in every process.

This module itself does not import numba, so light modules (``mva.py``) can import it.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from typing import Any

__all__ = ["CompiledKernelWarning", "NO_CACHE_MESSAGE", "cached_njit", "caching_available", "warn_once"]


class CompiledKernelWarning(RuntimeWarning):
    """A compiled kernel cannot be cached on disk or loaded; results are unaffected, speed is."""


_STATE = {"cached": True, "warned": False}

NO_CACHE_MESSAGE = ("aflqueue: numba has no writable cache folder (package __pycache__, NUMBA_CACHE_DIR, "
                    "~/.cache/numba): backend='auto' runs the exact analysis on numpy (same results, slower) "
                    "and compiled kernels compile anew in each process; set NUMBA_CACHE_DIR to a writable folder")


def cached_njit(**options: Any) -> Callable[[Callable[..., Any]], Any]:
    """``numba.njit(cache=True, **options)``, or ``numba.njit(**options)`` (and one warning) where
    numba finds no writable cache folder. Never ``fastmath``: the caller's operation order is kept."""

    if options.get("fastmath"):
        raise ValueError("fastmath: reassociated sums would make results depend on the call site")

    def decorate(fn: Callable[..., Any]) -> Any:
        from numba import njit  # lazy: keeps numba (~0.2 s to import) out of light importers of this module

        try:
            return njit(cache=True, **options)(fn)
        except RuntimeError:  # numba: "cannot cache function ...: no locator available for file ..."
            _STATE["cached"] = False
            warn_once(NO_CACHE_MESSAGE)
            return njit(**options)(fn)

    return decorate


def caching_available() -> bool:
    """True unless a kernel decorated by :func:`cached_njit` in this process could not be cached."""
    return _STATE["cached"]


def warn_once(message: str) -> None:
    """Issue :class:`CompiledKernelWarning` (the first call in a process only), as one line on stderr."""
    if _STATE["warned"]:
        return
    _STATE["warned"] = True
    # line 0 has no source text, so the default formatter prints the warning as a single line
    warnings.warn_explicit(message, CompiledKernelWarning, __file__, 0, module=__name__)
