"""The deployment recipes in deploy/ (issue #10), checked by the tools that read them, short of running
them (no systemd as PID 1, container runtime or Kubernetes cluster on the test machine):

- the systemd unit passes ``systemd-analyze verify`` (with ExecStart pointed at the installed script);
- the DaemonSet validates, strictly (no unknown field), against Kubernetes' own OpenAPI schemas
  (kubernetes-validate, offline);
- the exporter arguments of all three recipes parse with the exporter command itself, and the port
  each binds is the one its manifest publishes.

Each check has a negative control, so it can fail.
"""

from __future__ import annotations

import json
import re
import shlex
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import typer
import yaml

from loopscope.cli.app import build_app

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
UNIT = DEPLOY / "systemd" / "loopscope-exporter.service"
DAEMONSET = DEPLOY / "kubernetes" / "loopscope-exporter.daemonset.yaml"
CONTAINERFILE = DEPLOY / "Containerfile"


def _verify_unit(tmp_path: Path, text: str) -> subprocess.CompletedProcess[str]:
    tool = shutil.which("systemd-analyze")
    if tool is None:
        pytest.skip("systemd-analyze not installed (.ci/run installs Debian's systemd)")
    script = shutil.which("loopscope")
    assert script, "the loopscope console script is not on PATH"
    unit = tmp_path / UNIT.name
    unit.write_text(text.replace("/opt/loopscope/venv/bin/loopscope", script))
    return subprocess.run(
        [tool, "verify", str(unit)], capture_output=True, text=True, timeout=60, check=False
    )


def test_the_systemd_unit_verifies(tmp_path: Path):
    result = _verify_unit(tmp_path, UNIT.read_text())
    assert result.returncode == 0 and not (result.stdout + result.stderr).strip(), result


def test_the_unit_verifier_reports_an_unknown_key(tmp_path: Path):
    result = _verify_unit(tmp_path, UNIT.read_text().replace("ProtectHome=", "ProtectHomes="))
    assert "Unknown key" in result.stdout + result.stderr  # the check above is not blind


def _daemonset() -> dict[str, Any]:
    doc = yaml.safe_load(DAEMONSET.read_text())
    assert isinstance(doc, dict)
    return doc


def test_the_daemonset_matches_the_kubernetes_schema_strictly():
    kv = pytest.importorskip("kubernetes_validate")
    doc = _daemonset()
    assert kv.validate(doc, kv.latest_version(), strict=True)
    container = doc["spec"]["template"]["spec"]["containers"][0]
    security = container["securityContext"]
    assert security["privileged"] is False and security["readOnlyRootFilesystem"] is True
    assert security["allowPrivilegeEscalation"] is False
    assert security["capabilities"] == {
        "drop": ["ALL"],
        "add": ["BPF", "PERFMON", "NET_ADMIN", "SYS_ADMIN", "SYS_PTRACE", "DAC_READ_SEARCH"],
    }
    assert doc["spec"]["template"]["spec"]["hostPID"] is True
    assert doc["spec"]["template"]["spec"]["hostNetwork"] is True


def test_the_schema_check_rejects_a_misspelt_field():
    kv = pytest.importorskip("kubernetes_validate")
    doc = _daemonset()
    security = doc["spec"]["template"]["spec"]["containers"][0]["securityContext"]
    security["readOnlyRootFileSystem"] = security.pop("readOnlyRootFilesystem")
    with pytest.raises(kv.ValidationError):
        kv.validate(doc, kv.latest_version(), strict=True)


def _parse_exporter_args(args: list[str]) -> dict[str, Any]:
    """The exporter command's parameters for ``args``, parsed by the command itself (not run)."""
    group = typer.main.get_command(build_app(["exporter"]))
    assert isinstance(group, typer.core.TyperGroup)
    command = group.commands["exporter"]
    with command.make_context("exporter", list(args)) as ctx:
        return dict(ctx.params)


def _unit_args() -> list[str]:
    line = next(x for x in UNIT.read_text().splitlines() if x.startswith("ExecStart="))
    argv = shlex.split(line.removeprefix("ExecStart="))
    assert argv[0].endswith("/loopscope") and argv[1] == "exporter"
    return argv[2:]


def _instruction(name: str) -> list[str]:
    """A Containerfile instruction in exec form (a JSON array), e.g. ``CMD ["--listen", ...]``."""
    found = re.search(rf"^{name} (\[.*\])$", CONTAINERFILE.read_text(), re.M)
    assert found, f"no {name} in exec form"
    return list(json.loads(found.group(1)))


def _containerfile_args() -> list[str]:
    assert _instruction("ENTRYPOINT") == ["loopscope", "exporter"]
    return _instruction("CMD")


def _port(listen: object) -> int:
    return int(str(listen).rsplit(":", 1)[1])


def test_every_recipe_passes_arguments_the_exporter_accepts():
    unit = _parse_exporter_args(_unit_args())
    assert unit["listen"] == "127.0.0.1:9864" and unit["all_netns"] is True

    container = _daemonset()["spec"]["template"]
    args = container["spec"]["containers"][0]["args"]
    daemonset = _parse_exporter_args(args)
    assert daemonset["all_netns"] is True
    port = _port(daemonset["listen"])
    assert container["metadata"]["annotations"]["prometheus.io/port"] == str(port)
    published = container["spec"]["containers"][0]["ports"][0]
    assert published["containerPort"] == published["hostPort"] == port

    image = _parse_exporter_args(_containerfile_args())
    assert image["all_netns"] is True
    assert re.search(rf"^EXPOSE {_port(image['listen'])}$", CONTAINERFILE.read_text(), re.M)


def test_an_argument_the_exporter_does_not_know_is_refused():
    try:  # typer >= 0.25 vendors click as typer._click (as cli.app)
        from typer._click.exceptions import NoSuchOption
    except ImportError:  # pragma: no cover - depends on the installed typer
        from click.exceptions import NoSuchOption  # type: ignore[no-redef]

    with pytest.raises(NoSuchOption, match="--all-namespaces"):
        _parse_exporter_args(["--listen", "127.0.0.1:9864", "--all-namespaces"])
