"""Federated-learning layer: data sets, client partitions and models for trace-driven training.

``data`` loads data sets as in-memory tensors and splits them among clients, ``partition`` holds
the pure index-partitioning schemes, ``models`` builds small ``torch.func``-friendly networks.
Submodules are imported explicitly (they pull in torch), never from here.

Training is the optional ``fl`` extra (``pip install 'aflqueue[fl]'``): without torch, importing
this package raises an :class:`ImportError` that says so in one line.
"""

try:
    import torch as _torch  # noqa: F401  (every submodule needs it: fail here, with the remedy)
except ImportError:
    from ..errors import FL_EXTRA_MESSAGE

    raise ImportError(FL_EXTRA_MESSAGE) from None
