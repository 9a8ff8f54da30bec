"""Training: the step loop, optimiser/schedule, checkpoints and logs."""
