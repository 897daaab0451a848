import importlib
import pkgutil

import nnfit


def test_public_names_resolve_after_every_submodule_is_imported():
    """A submodule named like a public function would shadow it once imported; none does."""
    for info in pkgutil.iter_modules(nnfit.__path__):
        importlib.import_module(f"nnfit.{info.name}")
    for name in nnfit.__all__:
        assert getattr(nnfit, name) is not None
    assert callable(nnfit.mlp) and callable(nnfit.split) and callable(nnfit.load) and callable(nnfit.setup)
    assert nnfit.mlp.__module__ == "nnfit.mlpfit" and nnfit.split.__module__ == "nnfit.sampling"


def test_dir_lists_the_public_api():
    assert {"Design", "split", "setup", "mlp", "load", "datasets", "metrics", "callbacks", "plot"} <= set(dir(nnfit))
