"""Every snippet of API.md sections 1-3 runs as written: the examples hold them verbatim."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("script", ["seed_lab.py", "formula_lab.py", "five_seeds.py"])
def test_example_runs(script, tmp_path):
    env = dict(os.environ, MPLBACKEND="Agg", PYTHONWARNINGS="ignore")
    result = subprocess.run(
        [sys.executable, str(ROOT / "examples" / script)], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stderr
    if script == "formula_lab.py":
        assert (tmp_path / "mass.nnfit").exists()
