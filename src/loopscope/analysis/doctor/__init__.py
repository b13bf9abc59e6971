"""The doctor's pure half: facts as values, the rung checks, verdicts and the ladder."""
