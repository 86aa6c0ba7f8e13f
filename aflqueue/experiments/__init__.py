"""Experiments on top of the pipeline: validation grids, their statistics and reports."""
