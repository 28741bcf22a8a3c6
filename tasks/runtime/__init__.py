"""Code that cannot change a result: the progress line, the turns of Keras work in threads, whether a recorded
process still runs and whether a server answers, and the fault-injection hook for tests."""
