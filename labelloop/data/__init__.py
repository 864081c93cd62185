"""Datasets: leak-free export of a project, frozen test splits, JSON Lines."""
