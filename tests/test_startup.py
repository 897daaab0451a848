"""Start-up: ``import nnfit`` loads no heavy optional library; each loads on first use."""

import subprocess
import sys

HEAVY = ("matplotlib", "sklearn", "formulaic", "pandas", "torch._dynamo")


def loaded_after(code: str) -> set:
    """The HEAVY modules a fresh interpreter has imported after running ``code``."""
    script = f"import sys\n{code}\nprint(' '.join(m for m in {HEAVY!r} if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True).stdout
    return set(out.split())


def test_import_nnfit_loads_none_of_them():
    assert loaded_after("import nnfit") == set()


def test_the_training_engine_needs_no_frames_formulas_or_plots():
    code = "import nnfit as nf\nnf.setup, nf.metrics, nf.callbacks, nf.MLP"
    assert loaded_after(code) == set()


def test_nf_mlp_and_design_load_pandas_only_when_called_and_never_formulaic():
    assert loaded_after("import nnfit as nf\nnf.mlp, nf.Design, nf.split") == set()
    code = (
        "import warnings; warnings.simplefilter('ignore')\nimport nnfit as nf\n"
        "nf.mlp('body_mass_g ~ .', data=nf.datasets.load('penguins'), hidden=3, epochs=1, seed=1, verbose=False)"
    )
    # the fused trainer makes no torch optimizer, whose first construction imports torch._dynamo
    assert loaded_after(code) == {"pandas"}  # nnfit parses formulas itself
