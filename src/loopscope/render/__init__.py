"""loopscope.render."""
