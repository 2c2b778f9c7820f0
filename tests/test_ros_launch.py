"""The launch file and the ROS package agree: every executable the launch file starts is a console script of
the ``wovr`` package, and every parameter it (or a config YAML) sets is declared by that node.

``launch``/``launch_ros`` are not installable from PyPI, so the launch file is read with ``ast``; the nodes'
declared parameters come from their classes (``parameter_schema()``), which is what they declare at runtime.
"""

from __future__ import annotations

import ast
import configparser
import importlib
import inspect
import os
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
PKG = ROOT / "robot_ws" / "src" / "wovr"
LAUNCH = ROOT / "launch" / "bringup.launch.py"
CONFIGS = sorted((ROOT / "launch" / "config").glob("*.yaml"))
sys.path.insert(0, str(PKG))

# Parameters every rclpy node has without declaring them.
BUILTIN_PARAMETERS = {"use_sim_time"}


def console_scripts() -> dict[str, str]:
    """``{executable: "module:function"}`` from setup.py (its NODES list feeds entry_points)."""
    tree = ast.parse((PKG / "setup.py").read_text())
    package = nodes = None
    for node in ast.walk(tree):
        if isinstance(node, ast.Assign) and isinstance(node.targets[0], ast.Name):
            if node.targets[0].id == "NODES":
                nodes = ast.literal_eval(node.value)
            elif node.targets[0].id == "PACKAGE":
                package = ast.literal_eval(node.value)
    assert package == "wovr" and nodes, "setup.py must define PACKAGE = 'wovr' and the NODES list"
    return {name: f"{package}.{name}:main" for name in nodes}


def node_class(module_name: str):
    from wovr.node_base import WovrNode

    module = importlib.import_module(f"wovr.{module_name}")
    classes = [c for _, c in inspect.getmembers(module, inspect.isclass)
               if issubclass(c, WovrNode) and c is not WovrNode and c.__module__ == module.__name__]
    assert len(classes) == 1, f"wovr.{module_name} must define exactly one node class, found {classes}"
    return classes[0]


def declared(executable: str) -> set[str]:
    return set(node_class(executable).parameter_schema()) | BUILTIN_PARAMETERS


def _keyword(call: ast.Call, name: str):
    return next((k.value for k in call.keywords if k.arg == name), None)


def launched_nodes() -> list[dict]:
    """Every ``Node(...)`` of the launch file: executable, node name, parameter names it passes."""
    tree = ast.parse(LAUNCH.read_text())
    dict_vars: dict[str, set[str]] = {}
    for node in ast.walk(tree):  # params = {...} and params["key"] = ...
        if isinstance(node, ast.Assign) and isinstance(node.targets[0], ast.Name) and isinstance(node.value, ast.Dict):
            keys = dict_vars.setdefault(node.targets[0].id, set())
            for key in node.value.keys:
                assert key is not None, "use explicit keys (no **splat) so the parameters can be checked"
                keys.add(ast.literal_eval(key))
        if isinstance(node, ast.Assign) and isinstance(node.targets[0], ast.Subscript) \
                and isinstance(node.targets[0].value, ast.Name):
            dict_vars.setdefault(node.targets[0].value.id, set()).add(ast.literal_eval(node.targets[0].slice))
    found = []
    for call in ast.walk(tree):
        if not (isinstance(call, ast.Call) and getattr(call.func, "id", None) == "Node"):
            continue
        executable = ast.literal_eval(_keyword(call, "executable"))
        assert ast.literal_eval(_keyword(call, "package")) == "wovr"
        names: set[str] = set()
        parameters = _keyword(call, "parameters")
        assert isinstance(parameters, ast.List), f"{executable}: parameters must be a list literal"
        for item in parameters.elts:
            if isinstance(item, ast.Dict):
                for key in item.keys:
                    assert key is not None, f"{executable}: use explicit keys (no **splat)"
                    names.add(ast.literal_eval(key))
            elif isinstance(item, ast.Name) and item.id in dict_vars:
                names |= dict_vars[item.id]
        found.append({"executable": executable, "parameters": names, "name": _keyword(call, "name")})
    return found


def test_package_metadata_is_an_ament_python_package():
    root = ET.parse(PKG / "package.xml").getroot()
    assert root.findtext("name") == "wovr"
    assert root.find("export").findtext("build_type") == "ament_python"
    assert (PKG / "resource" / "wovr").exists()
    cfg = configparser.ConfigParser()
    cfg.read(PKG / "setup.cfg")
    assert cfg["install"]["install_scripts"] == "$base/lib/wovr"  # where `ros2 run/launch wovr X` looks
    assert cfg["develop"]["script_dir"] == "$base/lib/wovr"


def test_the_ros_distribution_does_not_shadow_the_repository_distribution():
    import re

    project = re.search(r'^name = "([^"]+)"', (ROOT / "pyproject.toml").read_text(), re.M).group(1)  # no tomllib on 3.10
    namespace = _setup_namespace()
    assert namespace["SETUP_KWARGS"]["name"] != project, "same distribution name: entry points would shadow"


def _setup_namespace() -> dict:
    namespace: dict = {"__file__": str(PKG / "setup.py")}
    source = (PKG / "setup.py").read_text().replace("setup(", "SETUP_KWARGS = dict(", 1)
    exec(compile(source, str(PKG / "setup.py"), "exec"), namespace)  # setup() not run: only its arguments
    return namespace


def test_setup_installs_the_launch_file_and_its_configs():
    namespace = _setup_namespace()
    data_files = dict(namespace["SETUP_KWARGS"]["data_files"])
    launch_files = [(PKG / p).resolve() for p in data_files["share/wovr/launch"]]
    config_files = [(PKG / p).resolve() for p in data_files["share/wovr/launch/config"]]
    assert LAUNCH.resolve() in launch_files
    assert {p.name for p in config_files} == {p.name for p in CONFIGS} and len(CONFIGS) >= 3
    scripts = namespace["SETUP_KWARGS"]["entry_points"]["console_scripts"]
    assert sorted(s.split(" = ")[0] for s in scripts) == sorted(console_scripts())


def test_every_launched_executable_is_a_console_script_with_a_main():
    scripts = console_scripts()
    launched = {n["executable"] for n in launched_nodes()}
    assert launched == {"camera_node", "arm_node", "recorder_node", "policy_node", "teleop_node", "sim_node"}
    for executable in launched:
        module, function = scripts[executable].split(":")
        assert callable(getattr(importlib.import_module(module), function))


@pytest.mark.parametrize("node", launched_nodes(), ids=lambda n: n["name"] and ast.unparse(n["name"]))
def test_every_parameter_the_launch_file_sets_is_declared(node):
    unknown = node["parameters"] - declared(node["executable"])
    assert not unknown, f"{node['executable']} does not declare {sorted(unknown)}"


def _flatten(params: dict, prefix: str = "") -> set[str]:
    out = set()
    for key, value in params.items():
        if isinstance(value, dict):
            out |= _flatten(value, f"{prefix}{key}.")
        else:
            out.add(prefix + key)
    return out


@pytest.mark.parametrize("path", [p for p in CONFIGS if p.name != "cameras.yaml"], ids=lambda p: p.name)
def test_every_parameter_in_the_config_files_is_declared(path):
    config = yaml.safe_load(path.read_text())
    executables = {"arm_node": "arm_node", "recorder_node": "recorder_node", "teleop_node": "teleop_node",
                   "policy_node": "policy_node", "sim_node": "sim_node"}
    everyone = set().union(*(declared(e) for e in executables.values()), declared("camera_node"))
    for node_name, section in config.items():
        names = _flatten(section["ros__parameters"])
        if node_name == "/**":
            assert names <= everyone, f"{path.name}: /** sets {sorted(names - everyone)}, declared by no node"
            continue
        executable = "camera_node" if node_name.startswith("camera_") else executables[node_name]
        unknown = names - declared(executable)
        assert not unknown, f"{path.name}: {node_name} does not declare {sorted(unknown)}"


def test_camera_list_names_the_fields_the_launch_file_reads():
    cameras = yaml.safe_load((ROOT / "launch" / "config" / "cameras.yaml").read_text())["cameras"]
    assert cameras and all({"name", "serial", "width", "height", "fps"} <= set(c) for c in cameras)
    # the robot config gives each listed camera its own section
    robot = yaml.safe_load((ROOT / "launch" / "config" / "robot.yaml").read_text())
    assert {f"camera_{c['name']}" for c in cameras} <= set(robot)
    assert robot["recorder_node"]["ros__parameters"]["cameras"] == [c["name"] for c in cameras]


def test_launch_file_is_python_3_10_syntax():
    ast.parse(LAUNCH.read_text(), feature_version=(3, 10))
    for path in (PKG / "wovr").glob("*.py"):
        ast.parse(path.read_text(), feature_version=(3, 10))


def test_the_ros_package_never_imports_torch():
    code = ("import sys, importlib, wovr\n"
            "for name in wovr.NODES + ('launching', 'recording', 'mcap_log'):\n"
            "    importlib.import_module('wovr.' + name)\n"
            "import policy_server.client\n"
            "assert 'torch' not in sys.modules, 'torch was imported'\n"
            "print(sorted(wovr.NODES))")
    env = {**os.environ, "PYTHONPATH": f"{PKG}:{ROOT}"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300,
                         stdin=subprocess.DEVNULL)
    assert out.returncode == 0, out.stderr
    import wovr

    assert sorted(wovr.NODES) == sorted(console_scripts())
