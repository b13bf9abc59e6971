"""loopscope.probes."""
