"""limakit: the LIMA recipe ("Less Is More for Alignment") as a toolkit.

Curate a small, diverse alignment set from raw dumps, fine-tune a pretrained model on it with the
paper's protocol, sample answers with the paper's decoding, and judge them.
"""

__version__ = "0.1.0"

# Modules that moved when the top level was grouped into packages; the old import paths keep
# working for a while and say where the module lives now.
_MOVED = {
    **{
        f"limakit.{m}": f"limakit.core.{m}" for m in ("errors", "files", "config", "faults", "asgi")
    },
    **{
        f"limakit.{m}": f"limakit.records.{m}"
        for m in ("example", "formats", "converters", "template", "inspect")
    },
    "limakit.pipeline": "limakit.run.stage",
    "limakit.ablate": "limakit.run.ablate",
    "limakit.demo": "limakit.run.demo",
}


class _MovedModules:
    """Import finder for ``_MOVED``: the old name gives the new module, with a warning."""

    @staticmethod
    def find_spec(name, path=None, target=None):
        import importlib.util

        if name not in _MOVED:
            return None
        return importlib.util.spec_from_loader(name, _MovedModules)

    @staticmethod
    def create_module(spec):
        import importlib
        import warnings

        new = _MOVED[spec.name]
        warnings.warn(
            f"{spec.name} moved to {new}; the old name will be removed",
            DeprecationWarning,
            stacklevel=3,
        )
        return importlib.import_module(new)

    @staticmethod
    def exec_module(module):
        pass


def _install_aliases() -> None:
    import sys

    if not any(isinstance(f, type) and f is _MovedModules for f in sys.meta_path):
        sys.meta_path.append(_MovedModules)


_install_aliases()
