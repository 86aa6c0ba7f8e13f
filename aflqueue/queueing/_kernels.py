"""Compiled (numba) MVA with the cotangent recursion fused into one loop.

Same recursion as :func:`aflqueue.queueing.mva.mva` (see its docstring); per population step it
does one sweep over FIFO stations instead of a dozen numpy calls. Importing this module imports
numba (~0.2 s), and the first call in a process loads the machine code from the on-disk cache
(~0.3 s; compiling it, once per machine, takes seconds), so ``mva.py`` imports it lazily and
only for problems large enough to repay that (:func:`aflqueue.queueing.mva.auto_backend`).
"""

from __future__ import annotations

import math

import numpy as np

from ..jit import cached_njit


@cached_njit()
def mva_cotangent_kernel(f, d_sum, m, Cf, cd_rho, H):  # pragma: no cover - compiled
    """FIFO demands ``f`` (nf,), total delay demand ``d_sum``, population ``m``, FIFO cotangents
    ``Cf`` (q, nf), ``cd_rho[j] = sum_delay c_jt rho_t`` (q,), history ``H``: ``(m+1, nf)`` to
    receive ``Q(k)`` for every ``k`` (row 0 left as given), or ``(0, nf)`` for none.

    Returns ``lam (m+1,), logG (m+1,), Q (nf,), Q_prev (nf,), s (q, m+1), Z (q, nf), Z_prev (q, nf)``.

    No ``fastmath``: reassociating the sums would change the last bits from one call site (or
    CPU) to another. Without it LLVM keeps the source order, which the numpy loop in ``mva.py``
    reproduces operation for operation, so both backends return identical bits.
    """
    nf = f.size
    q = Cf.shape[0]
    keep = H.shape[0] > 0
    lam = np.zeros(m + 1)
    logG = np.zeros(m + 1)
    R = np.zeros(nf)  # R(k-1) at the top of step k, R(k) after the swap
    Rn = np.zeros(nf)
    s = np.zeros((q, m + 1))
    Z = np.zeros((q, nf))
    Zp = np.zeros((q, nf))
    x_prev = 0.0
    for k in range(1, m + 1):
        # sweep 1: Q(k-1) = x(k-1) R(k-1) (the numpy loop's product, recomputed here instead of
        # stored by a second sweep), R(k) = f (1 + Q(k-1)) and the throughput
        tot = d_sum
        for i in range(nf):
            r = f[i] * (1.0 + x_prev * R[i])
            Rn[i] = r
            tot += r
        x = k / tot
        lam[k] = x
        logG[k] = logG[k - 1] - math.log(x)
        R, Rn = Rn, R
        # sweep 2 (per cotangent): Z(k) = x (f (Z(k-1) + s(k-1)) + c R(k)), s(k) = c . Q(k)
        for j in range(q):
            sj = s[j, k - 1]
            acc = 0.0
            for i in range(nf):
                zi = Z[j, i]
                Zp[j, i] = zi
                cr = Cf[j, i] * R[i]
                Z[j, i] = x * (f[i] * (zi + sj) + cr)
                acc += cr
            s[j, k] = x * (acc + cd_rho[j])
        if keep:
            for i in range(nf):
                H[k, i] = x * R[i]
        x_prev = x
    return lam, logG, x_prev * R, lam[m - 1] * Rn, s, Z, Zp
