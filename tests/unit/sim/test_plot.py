"""Plots are written, non-empty, in the format asked for."""

import pytest

from loopscope.errors import UsageError
from loopscope.sim.plot import Series, plot_curves


def _series():
    return [
        Series(
            label="selfcall",
            offered_per_s=(10.0, 20.0, 40.0),
            goodput_per_s=(10.0, 20.0, 0.0),
            p99_s=(0.05, 0.07, 2.0),
            knee_per_s=40.0,
            color_key="selfcall",
        ),
        Series(
            label="selfcall sim",
            offered_per_s=(10.0, 20.0, 40.0),
            goodput_per_s=(10.0, 19.0, 1.0),
            p99_s=(0.05, None, 2.0),
            style=1,
            color_key="selfcall",
        ),
    ]


@pytest.mark.parametrize("suffix", [".png", ".svg"])
@pytest.mark.parametrize("log_x", [False, True])
def test_plot_written(tmp_path, suffix, log_x):
    path = plot_curves(_series(), tmp_path / f"out{suffix}", title="t", log_x=log_x)
    data = path.read_bytes()
    assert len(data) > 5000
    assert data.startswith(b"\x89PNG") if suffix == ".png" else b"<svg" in data[:2000]


def test_plot_rejects_bad_suffix(tmp_path):
    with pytest.raises(UsageError):
        plot_curves(_series(), tmp_path / "out.jpg", title="t")
    with pytest.raises(UsageError):
        plot_curves([], tmp_path / "out.png", title="t")
