"""The source of a standalone ``network.py``: the network with the blind noise estimate and texture check, in one
file that imports only torch and the standard library; ``Network()`` needs no arguments.

It is made from this project's own two files, not a copy kept beside them: ``raw/noise_estimation.py`` then
``model/nafnet.py``, each without its imports of this project (what the second imports the first defines). A blind
network carries the estimate too and never calls it: one recipe for every network.py.
"""

from __future__ import annotations

import ast
import inspect
import sys
import textwrap
from pathlib import Path
from types import ModuleType
from typing import Any

from denoise.config import ModelConfig
from denoise.model import nafnet
from denoise.raw import noise_estimation


class StandaloneError(ValueError):
    """A network that cannot be written as a standalone file; the message says why."""


def check_standalone_imports(source: str, origin: str = "network.py") -> None:
    """The network file may import only torch and the standard library, so it runs where only torch is installed."""
    allowed = set(sys.stdlib_module_names) | {"torch"}
    for node in ast.walk(ast.parse(source)):
        names = [a.name for a in node.names] if isinstance(node, ast.Import) else []
        if isinstance(node, ast.ImportFrom):
            names = [node.module or ""] if node.level == 0 else ["." * node.level]
        for name in names:
            if name.split(".")[0] not in allowed:
                raise StandaloneError(f"{origin}: imports {name!r}; network.py may import only torch")


def constructor_defaults(model_cfg: ModelConfig) -> dict[str, Any]:
    """NAFNet's keyword arguments taken from the config fields of the same name (tuples kept as tuples)."""
    if model_cfg.name != "nafnet":
        raise StandaloneError(f"model.name {model_cfg.name!r}: only NAFNet has a standalone network.py")
    params = [p for p in inspect.signature(nafnet.NAFNet).parameters if p != "self"]
    values = {p: getattr(model_cfg, p) for p in params if hasattr(model_cfg, p)}
    return {k: tuple(v) if isinstance(v, list) else v for k, v in values.items()}


def _module_body(module: ModuleType) -> str:
    """A module's source without ``from __future__`` and without its imports from this project."""
    path = Path(inspect.getsourcefile(module))
    source = path.read_text()
    lines = source.splitlines()
    drop = set()
    for node in ast.parse(source).body:
        if isinstance(node, ast.ImportFrom) and node.level == 0 and (node.module or "").split(".")[0] in (
            "__future__", "denoise"
        ):  # fmt: skip
            drop.update(range(node.lineno - 1, node.end_lineno))
    body = "\n".join(line for i, line in enumerate(lines) if i not in drop).strip()
    check_standalone_imports(body, str(path))
    return body


def defined_names(source: str) -> set[str]:
    """The names a module's top level defines (functions, classes, assignments), imports aside."""
    names = set()
    for node in ast.parse(source).body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, (ast.Assign, ast.AnnAssign)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            names |= {n.id for t in targets for n in ast.walk(t) if isinstance(n, ast.Name)}
    return names


def _joined(modules: tuple[ModuleType, ...]) -> str:
    """The modules' bodies one after another; a name two of them define would silently shadow the first."""
    bodies, seen = [], {}
    for module in modules:
        body = _module_body(module)
        for name in sorted(defined_names(body)):
            if name in seen:
                raise StandaloneError(f"network.py: {module.__name__} and {seen[name]} both define {name!r}")
            seen[name] = module.__name__
        bodies.append(f"\n\n# ---- {module.__name__} ----\n\n{body}\n")
    return "".join(bodies)


def network_source(model_cfg: ModelConfig, noise_settings: dict[str, float] | None = None) -> str:
    """network.py for ``model_cfg``: the modules it needs, then ``Network``, whose defaults are the model's
    hyper-parameters and, for a noise-aware model, ``noise_settings`` (``NoiseAwareNAFNet``'s keywords:
    noise_window, texture_threshold, texture_scale, texture_read_share)."""
    defaults = constructor_defaults(model_cfg)
    aware = model_cfg.noise_channels > 0
    modules = (noise_estimation, nafnet)
    extra = dict(noise_settings or {}) if aware else {}
    signature = "".join(f"        {k}={v!r},\n" for k, v in {**defaults, **extra}.items())
    forward = "".join(f"            {k}={k},\n" for k in {**defaults, **extra})
    base = "NoiseAwareNAFNet" if aware else "NAFNet"
    what = " and estimates each frame's noise level itself" if aware else ""
    # Test-time local statistics are a setting, not a constructor argument; build_model applies it after.
    window = model_cfg.local_window
    text = (f"A submission's network: ``Network()`` matches model.pth; it takes the normalised packed planes (N, 4, "
            f"H, W){what}.\n\nMade by raw-denoise of its modules {', '.join(m.__name__ for m in modules)}, one after "
            "another; imports only torch.")  # fmt: skip
    wrapped = "\n".join(textwrap.fill(part, 116) for part in text.split("\n"))
    header = f'"""{wrapped}\n"""\n\nfrom __future__ import annotations\n'

    return (
        header
        + _joined(modules)
        + "\n\nclass Network("
        + base
        + "):\n"
        + '    """NAFNet with this submission\'s hyper-parameters as defaults: ``Network()`` matches model.pth."""\n\n'
        + f"    def __init__(\n        self,\n{signature}        local_window={window!r},\n    ) -> None:\n"
        + f"        super().__init__(\n{forward}        )\n"
        + "        self.set_local_window(local_window)\n"
    )
