"""Models built from the spec and trained: the epoch plan, the feed, scoring, stacked folds."""
