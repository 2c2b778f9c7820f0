"""Optional raw recording: the serialized messages of chosen topics, per episode, into an MCAP file.

Subscriptions are raw (CDR bytes, never deserialized), so the log costs a copy, not a conversion. Schemas
are the ``.msg`` definitions of the installed message packages (``ros2msg`` encoding), so Foxglove, ``ros2
bag`` and ``mcap-ros2-support`` can decode the file.
"""

from __future__ import annotations

import re
import threading
import time
from pathlib import Path

from ament_index_python.packages import PackageNotFoundError, get_package_share_directory
from rclpy.node import Node

PRIMITIVES = {"bool", "byte", "char", "float32", "float64", "int8", "uint8", "int16", "uint16", "int32", "uint32",
              "int64", "uint64", "string", "wstring"}
SEPARATOR = "=" * 80


def message_definition(msg_type: type) -> str:
    """The ``ros2msg`` definition of a message class with its dependencies appended ('' if not found)."""
    module = msg_type.__module__.split(".")[0]
    try:
        return _definition(f"{module}/{msg_type.__name__}")
    except (OSError, PackageNotFoundError):
        return ""


def _read(full_name: str) -> str:
    package, name = full_name.split("/")
    return (Path(get_package_share_directory(package)) / "msg" / f"{name}.msg").read_text()


def _dependencies(full_name: str, text: str) -> list[str]:
    package = full_name.split("/")[0]
    out = []
    for line in text.splitlines():
        line = line.split("#", 1)[0].strip()
        if not line or "=" in line.split()[0]:
            continue
        field_type = re.sub(r"\[.*\]$", "", line.split()[0])
        field_type = re.sub(r"<=\d+$", "", field_type)
        if field_type in PRIMITIVES or field_type.startswith(("string<", "wstring<")):
            continue
        if field_type == "Header":
            field_type = "std_msgs/Header"
        if "/" not in field_type:
            field_type = f"{package}/{field_type}"
        out.append(field_type.replace("/msg/", "/"))
    return out


def _definition(full_name: str) -> str:
    main = _read(full_name)
    parts, seen, todo = [main], {full_name}, _dependencies(full_name, main)
    while todo:
        dep = todo.pop(0)
        if dep in seen:
            continue
        seen.add(dep)
        text = _read(dep)
        parts.append(f"{SEPARATOR}\nMSG: {dep}\n{text}")
        todo.extend(_dependencies(dep, text))
    return "\n".join(parts)


class RawTopicLog:
    """Writes the raw messages of ``topics`` into ``<directory>/<name>-<time>.mcap`` between start/stop."""

    def __init__(self, node: Node, directory: Path, topics: list[tuple[str, type, object]]):
        from mcap.writer import CompressionType, Writer

        self._writer_cls, self._compression = Writer, CompressionType.NONE  # images do not compress cheaply
        self.directory = directory
        self._node = node
        self._lock = threading.Lock()
        self._writer = None
        self._file = None
        self.path: Path | None = None
        self.messages = 0
        self._types = {topic: msg_type for topic, msg_type, _ in topics}
        self._subs = [node.create_subscription(msg_type, topic, lambda data, t=topic: self._on_message(t, data), qos,
                                               raw=True)
                      for topic, msg_type, qos in topics]

    def start(self, name: str) -> Path:
        with self._lock:
            self._close(keep=True)
            self.directory.mkdir(parents=True, exist_ok=True)
            self.path = self.directory / f"{name}-{time.strftime('%Y%m%dT%H%M%S')}.mcap"
            self._file = open(self.path, "wb")
            writer = self._writer_cls(self._file, compression=self._compression)
            writer.start(profile="ros2", library="wovr")
            self._channels = {}
            for topic, msg_type in self._types.items():
                full = f"{msg_type.__module__.split('.')[0]}/msg/{msg_type.__name__}"
                schema = writer.register_schema(full, "ros2msg", message_definition(msg_type).encode())
                self._channels[topic] = writer.register_channel(topic, "cdr", schema)
            self._writer = writer
            self.messages = 0
            return self.path

    def _on_message(self, topic: str, data: bytes) -> None:
        now = time.time_ns()
        with self._lock:
            if self._writer is not None:
                self._writer.add_message(self._channels[topic], now, data, now, self.messages)
                self.messages += 1

    def stop(self, keep: bool = True) -> None:
        with self._lock:
            self._close(keep)

    def _close(self, keep: bool) -> None:
        if self._writer is None:
            return
        self._writer.finish()
        self._file.close()
        if not keep and self.path is not None:
            self.path.unlink(missing_ok=True)
        self._writer = self._file = None
