"""loopscope.cli."""
