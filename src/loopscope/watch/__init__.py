"""loopscope watch: connection events over time (collector; analysis lives in loopscope.analysis)."""
