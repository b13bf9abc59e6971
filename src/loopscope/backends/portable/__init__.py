"""loopscope.backends.portable."""
