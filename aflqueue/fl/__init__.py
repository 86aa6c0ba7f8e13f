"""Federated-learning layer: data sets, client partitions and models for trace-driven training.

``data`` loads data sets as in-memory tensors and splits them among clients, ``partition`` holds
the pure index-partitioning schemes, ``models`` builds small ``torch.func``-friendly networks.
Submodules are imported explicitly (they pull in torch), never from here.
"""
