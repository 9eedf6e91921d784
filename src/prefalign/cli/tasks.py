"""`prefalign tasks`: the registered tasks, their kind, metric, expected files and shift."""

from __future__ import annotations

COMMAND = "tasks"


def add_parser(subparsers) -> None:
    subparsers.add_parser("tasks", help="list the registered tasks: kind, metric, expected files and shift")


def run(args) -> int:
    from ..tasks import TASKS

    for task in TASKS.values():
        print(f"{task.name:16s} {task.kind:16s} metric {task.metric:10s} shift {task.shift or '-'}")
        print(f"{'':16s} files: {task.files}")
        print(f"{'':16s} {task.description}")
    return 0
