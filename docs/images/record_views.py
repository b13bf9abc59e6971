"""Record the screenshots of docs/views.md on this host (root, chromium, tmux, graphviz):

    python docs/images/record_views.py

A real self-calling app (``shopapi``: each GET /work makes 3 new loopback connections to its own /leaf)
under 15 requests/s from a load generator; then ``loopscope top`` in tmux at 80x24 (captured with its
colours and drawn as SVG by rich), ``loopscope watch --html --plot`` and Chromium's PNG of the report.
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
sys.path.insert(0, str(ROOT / "tests" / "live"))

from rich.console import Console  # noqa: E402
from rich.text import Text  # noqa: E402
from test_html_report import load, screenshot, self_calling_app  # noqa: E402
from test_top_tmux import tmux_top  # noqa: E402


def main() -> None:
    tmp = Path("/tmp/loopscope-views")
    tmp.mkdir(exist_ok=True)
    with self_calling_app("shopapi") as port, load(port, rate_per_s=15):
        with tmux_top("--port", str(port), "--refresh", "0.5", "--window", "10") as t:
            t.wait_for(lambda s: "last 9 s" in s or "last 10 s" in s, timeout_s=40)
            ansi = t.capture(ansi=True)
            t.run("send-keys", "-t", t.session, "q")
        (HERE / "top-80x24.txt").write_text(Text.from_ansi(ansi).plain)
        console = Console(record=True, width=80, file=open("/dev/null", "w"), color_system="truecolor")
        console.print(Text.from_ansi(ansi), end="")
        (HERE / "top-80x24.svg").write_text(console.export_svg(title="loopscope top (tmux, 80x24)"))
        html = tmp / "watch.html"
        subprocess.run(
            [sys.executable, "-m", "loopscope", "watch", "--duration", "8", "--port", str(port),
             "--html", str(html), "--plot", str(HERE / "watch-plot.png")],
            check=False, stdout=subprocess.DEVNULL,
        )
    screenshot(html, HERE / "html-report.png", tmp, height=1350)


if __name__ == "__main__":
    main()
    time.sleep(0.1)
