"""The scale row's script (bench/scale.py) fills its own Redis and measures, at a tiny count."""

from __future__ import annotations

import importlib.util
import json
import shutil
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest

BENCH = Path(__file__).resolve().parents[1] / "bench"

pytestmark = pytest.mark.skipif(
    shutil.which("redis-server") is None, reason="no redis-server on PATH: the scale script starts one of its own"
)


@pytest.fixture
def scale(monkeypatch: pytest.MonkeyPatch) -> Iterator[ModuleType]:
    # The bench's scripts import their siblings (`common`, `loadgen`) by name, as when run from bench/;
    # those names leave sys.modules again afterwards.
    monkeypatch.syspath_prepend(str(BENCH))
    spec = importlib.util.spec_from_file_location("bench_scale", BENCH / "scale.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, "bench_scale", module)  # its dataclass looks itself up there
    try:
        spec.loader.exec_module(module)
        yield module
    finally:
        for name in ("common", "loadgen"):
            sys.modules.pop(name, None)


def test_fills_and_measures_a_tiny_store(scale: ModuleType, tmp_path: Path) -> None:
    assert scale.main(["--counts", "200", "--lookups", "300", "--out", str(tmp_path)]) == 0

    results = json.loads((tmp_path / "scale.json").read_text())
    [row] = results["rows"]
    assert row["conversations"] == 200
    assert row["bytes_per_conversation"] > 0
    # a sample read back equal to what was written, by contact and by id; every timed lookup found its conversation
    assert row["verified"] == 100
    assert row["found"] == row["lookups"] == 300
    assert 0 < row["lookup_us"]["p50"] <= row["lookup_us"]["p99"]
    assert 0 < row["by_id_us"]["p50"] <= row["by_id_us"]["p99"]
    assert results["growth"] == {}  # one row: nothing to compare
