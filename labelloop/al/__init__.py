"""Active learning: scores of how informative a task is, the order of the queue, and the simulation."""
