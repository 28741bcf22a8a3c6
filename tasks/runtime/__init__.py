"""Code that cannot change a result: the progress line and the fault-injection hook for tests."""
