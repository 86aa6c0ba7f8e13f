"""Compiled (numba) MVA with the cotangent recursion fused into one loop.

Same recursion as :func:`aflqueue.queueing.mva.mva` (see its docstring); per population step it
does one sweep over FIFO stations instead of a dozen numpy calls, which matters when the
optimiser evaluates value and gradient thousands of times. Imported lazily: numba costs ~0.3 s
to import and compiles once per machine (cached on disk).
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit


@njit(cache=True)
def mva_cotangent_kernel(f, d_sum, m, Cf, cd_rho):  # pragma: no cover - compiled
    """FIFO demands ``f`` (nf,), total delay demand ``d_sum``, population ``m``, FIFO cotangents
    ``Cf`` (q, nf), ``cd_rho[j] = sum_delay c_jt rho_t`` (q,).

    Returns ``lam (m+1,), logG (m+1,), Q (nf,), Q_prev (nf,), s (q, m+1), Z (q, nf), Z_prev (q, nf)``.

    No ``fastmath``: reassociating the sums would change the last bits from one call site (or
    CPU) to another. Without it LLVM keeps the source order, which the numpy loop in ``mva.py``
    reproduces operation for operation, so both backends return identical bits.
    """
    nf = f.size
    q = Cf.shape[0]
    lam = np.zeros(m + 1)
    logG = np.zeros(m + 1)
    Q = np.zeros(nf)
    Qp = np.zeros(nf)
    R = np.empty(nf)
    s = np.zeros((q, m + 1))
    Z = np.zeros((q, nf))
    Zp = np.zeros((q, nf))
    for k in range(1, m + 1):
        # sweep 1: R(k) = f (1 + Q(k-1)) and the throughput
        tot = d_sum
        for i in range(nf):
            r = f[i] * (1.0 + Q[i])
            R[i] = r
            tot += r
        x = k / tot
        lam[k] = x
        logG[k] = logG[k - 1] - math.log(x)
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
        for i in range(nf):
            Qp[i] = Q[i]
            Q[i] = x * R[i]
    return lam, logG, Q, Qp, s, Z, Zp
