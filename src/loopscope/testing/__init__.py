"""loopscope.testing."""
