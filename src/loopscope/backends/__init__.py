"""loopscope.backends."""
