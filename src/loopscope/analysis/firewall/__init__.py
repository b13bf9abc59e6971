"""Firewall rulesets as values (pure): the model, the parsers, and which rule stops a loopback packet."""
