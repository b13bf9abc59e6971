"""loopscope.checks."""
