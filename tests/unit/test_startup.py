"""Start-up contract: `loopscope` runs in loops in scripts, so importing the CLI must stay light.

Command modules import their heavy machinery (simulation, plotting, watch engines, probes, HTTP) inside
the command function, not at module level.
"""

import json
import subprocess
import sys

HEAVY = [
    "numpy", "simpy", "matplotlib", "httpx", "pydantic", "psutil",
    "loopscope.sim", "loopscope.lab", "loopscope.watch", "loopscope.benchpaths", "loopscope.doctor",
    "loopscope.probes",
]  # fmt: skip


def test_cli_import_does_not_load_heavy_modules():
    code = "import sys, json, loopscope.cli.app; print(json.dumps(sorted(sys.modules)))"
    loaded = set(json.loads(subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout))
    heavy = sorted(m for m in loaded if any(m == h or m.startswith(h + ".") for h in HEAVY))
    assert heavy == [], f"imported at CLI start-up: {heavy}"
