"""Probe analysis (pure): why an address failed, and expectations that turn a probe into a check."""
