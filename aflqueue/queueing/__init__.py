"""Exact analysis of the closed network: MVA, log-space convolution, metrics, gradients.

Pure functions of arrays; no I/O, no torch.
"""

from .analysis import Analysis, StationMetrics, analyze
from .convolution import log_normalizing_constants, marginal_distribution, mean_queue_lengths
from .gradients import RoutingGradients, RoutingJacobians, metrics_vjp, routing_gradients, routing_jacobians
from .mva import MVAResult, mva
from .network import Network, network_of

__all__ = [
    "Analysis", "StationMetrics", "analyze", "log_normalizing_constants", "marginal_distribution",
    "mean_queue_lengths", "RoutingGradients", "RoutingJacobians", "metrics_vjp", "routing_gradients",
    "routing_jacobians", "MVAResult", "mva", "Network", "network_of",
]
