"""How a model learns: training loops, evaluation, checkpoints."""
