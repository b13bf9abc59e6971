"""Pure checks over facts read elsewhere: no sockets, files, clock or printing (tests/unit/test_contract.py).

- ``firewall``: rulesets as values and which rule stops a loopback packet.
- ``facts``, ``verdict``, ``ladder``: the doctor's facts, verdicts and ladder; the rung checks live in
  ``loopback``, ``resolution``, ``ports`` and ``network``. The I/O that gathers the facts is
  ``loopscope.doctor.gather``.
"""
