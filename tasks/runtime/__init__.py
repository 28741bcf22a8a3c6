"""Code that cannot change a result: the progress line, the turns of Keras work in threads, and the
fault-injection hook for tests."""
