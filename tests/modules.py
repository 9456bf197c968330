"""Files that are not importable packages, loaded as Python modules: sod2's tools (tools/ is
not a package) and config files whose helper functions a test calls (LazyConfig.load keeps
only the configs)."""
import importlib.util
from pathlib import Path
from types import ModuleType

REPO = Path(__file__).resolve().parents[1]


def load_file(path, name: str) -> ModuleType:
    """The Python file ``path`` executed as a new module called ``name``."""
    spec = importlib.util.spec_from_file_location(name, str(path))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def tool_module(name: str) -> ModuleType:
    """``tools/<name>.py`` as a module."""
    return load_file(REPO / "tools" / f"{name}.py", f"_sod2_tool_{name}")


def config_module(path: str) -> ModuleType:
    """A config file without relative imports (``path`` relative to configs/, as for
    ``sod2.config.get_config_file``) as a module, with its helper functions."""
    from sod2.config import get_config_file

    return load_file(get_config_file(path), "_sod2_cfg_" + path.replace("/", "_")[:-3])
