"""ament_python build of the ROS 2 package ``wovr``; the launch file and its configs live in the
repository's top-level ``launch/`` folder and are installed into ``share/wovr/launch``."""

from glob import glob
from pathlib import Path

from setuptools import find_packages, setup

PACKAGE = "wovr"  # the ROS package (package.xml) and the Python package of the nodes
# The Python *distribution* gets another name: the repository's own distribution is called "wovr", and two
# distributions of one name on sys.path shadow each other's entry points (the `wovr` CLI would lose its
# commands in a shell that sourced this workspace).
DISTRIBUTION = "wovr_ros"
HERE = Path(__file__).resolve().parent
# setuptools wants data_files relative to this file; the launch folder is three levels up.
LAUNCH = Path("..", "..", "..", "launch")
NODES = ["camera_node", "arm_node", "teleop_node", "recorder_node", "policy_node", "sim_node"]


def files(pattern: str) -> list[str]:
    return sorted(str(Path(p)) for p in glob(str(LAUNCH / pattern), root_dir=HERE))


setup(
    name=DISTRIBUTION,
    version="0.1.0",
    packages=find_packages(exclude=["test"]),
    data_files=[
        ("share/ament_index/resource_index/packages", [f"resource/{PACKAGE}"]),
        (f"share/{PACKAGE}", ["package.xml"]),
        (f"share/{PACKAGE}/launch", files("*.launch.py")),
        (f"share/{PACKAGE}/launch/config", files("config/*.yaml")),
    ],
    install_requires=["setuptools"],
    zip_safe=True,
    maintainer="WoVR maintainers",
    maintainer_email="wovr@example.org",
    description="WoVR robot side: camera, arm, teleop, recorder, policy and sim nodes",
    license="Apache-2.0",
    entry_points={"console_scripts": [f"{node} = {PACKAGE}.{node}:main" for node in NODES]},
)
