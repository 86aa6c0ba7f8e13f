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

    The sum over stations is a serial chain of additions (its order is fixed, see above), so a
    step costs about ``nf`` add latencies whatever else the loop does: the first cotangent rides
    in that shadow, its sum in the same sweep and its ``Z`` one step late (``Z(k-1)`` finished
    during step ``k``'s sweep, ``Z(m)`` after the loop). Same operations on the same values, so
    the same bits, at about half the cost of a separate sweep (the optimiser's case, ``q = 1``).
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
        # the sweep: R(k) = f (1 + Q(k-1)) with Q(k-1) = x(k-1) R(k-1) (the numpy loop's product,
        # recomputed here instead of stored), the throughput's sum and c_0 . R(k)
        tot = d_sum
        acc = 0.0
        if q == 0:
            for i in range(nf):
                r = f[i] * (1.0 + x_prev * R[i])
                Rn[i] = r
                tot += r
        else:
            s0 = s[0, k - 2] if k >= 2 else 0.0
            for i in range(nf):
                rp = R[i]
                if k >= 2:
                    Z[0, i] = x_prev * (f[i] * (Z[0, i] + s0) + Cf[0, i] * rp)
                r = f[i] * (1.0 + x_prev * rp)
                Rn[i] = r
                tot += r
                acc += Cf[0, i] * r
        x = k / tot
        lam[k] = x
        logG[k] = logG[k - 1] - math.log(x)
        R, Rn = Rn, R
        if q > 0:
            s[0, k] = x * (acc + cd_rho[0])
        for j in range(1, q):  # further rows: Z(k) = x (f (Z(k-1) + s(k-1)) + c R(k)), s(k) = c . Q(k)
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
    if q > 0:
        s0 = s[0, m - 1]
        for i in range(nf):
            zi = Z[0, i]
            Zp[0, i] = zi
            Z[0, i] = x_prev * (f[i] * (zi + s0) + Cf[0, i] * R[i])
    return lam, logG, x_prev * R, lam[m - 1] * Rn, s, Z, Zp
