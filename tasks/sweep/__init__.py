"""The plain half of a Ray Tune sweep: config groups, one trial's training, checkpoints, export."""
