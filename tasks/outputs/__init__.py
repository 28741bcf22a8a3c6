"""Results written atomically, the saved-model folder, and predictions from it."""
