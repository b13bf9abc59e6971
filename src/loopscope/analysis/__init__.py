"""loopscope.analysis."""
