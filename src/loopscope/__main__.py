"""``python -m loopscope``."""

from loopscope.cli.app import main

main()
