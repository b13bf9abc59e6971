"""Start-up contract: `loopscope` runs in loops in scripts, so starting a command must stay light.

`loopscope.cli.app.main` imports only the invoked command's module; a command module imports its own
machinery, never another command's heavy one (simulation, plotting, lab, watch engines).
"""

import json
import subprocess
import sys

import pytest

HEAVY = [
    "numpy",
    "simpy",
    "matplotlib",
    "pydantic",
    "loopscope.sim",
    "loopscope.lab",
    "loopscope.watch",
]
OWN = {"watch": "loopscope.watch", "simulate": "loopscope.sim", "lab": "loopscope.lab"}


def _loaded_by(command: str) -> set[str]:
    code = (
        "import sys, json\nfrom loopscope.cli.app import build_app\n"
        f"build_app([{command!r}])\nprint(json.dumps(sorted(sys.modules)))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    return set(json.loads(out))


@pytest.mark.parametrize("command", ["scan", "ports", "map", "doctor", "probe", "bench", "watch"])
def test_command_start_up_does_not_load_heavy_modules(command):
    loaded = _loaded_by(command)
    allowed = OWN.get(command)
    heavy = sorted(
        m
        for m in loaded
        if any(m == h or m.startswith(h + ".") for h in HEAVY)
        and not (allowed and m.startswith(allowed))
    )
    assert heavy == [], f"`loopscope {command}` imports at start-up: {heavy}"


def test_plain_import_of_the_cli_loads_no_command():
    code = "import sys, json, loopscope.cli.app; print(json.dumps(sorted(sys.modules)))"
    loaded = set(
        json.loads(
            subprocess.run(
                [sys.executable, "-c", code], capture_output=True, text=True, check=True
            ).stdout
        )
    )
    assert not [
        m for m in loaded if m.startswith("loopscope.cli.") and m not in ("loopscope.cli.app",)
    ]
