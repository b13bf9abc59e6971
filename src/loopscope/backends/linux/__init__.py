"""loopscope.backends.linux."""
