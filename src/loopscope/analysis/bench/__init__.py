"""Path benchmark analysis (pure): latency histograms and summaries, Nagle stalls, report records."""
