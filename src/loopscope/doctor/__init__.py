"""``loopscope doctor``: the troubleshooting ladder (gather facts in each namespace, judge them purely)."""
