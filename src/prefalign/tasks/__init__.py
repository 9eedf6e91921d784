"""Declarative task definitions: where a benchmark's splits live, how they read, how they are prompted.

Importing this package registers every task. ``registry`` holds ``TaskDefinition``, ``TASKS`` and
the shared helpers; each family module holds its parsers and registers its tasks at import:

* ``glue``: sst2, rte
* ``reviews``: rotten_tomatoes (embedded, no data.path)
* ``annotated``: md-agreement, convabuse, armis, popquorn, davidson (multi-annotator)
* ``superglue``: boolq, copa, record
* ``instructions``: alpaca
* ``tweeteval``: tweeteval-emotion, tweeteval-hate
"""

# Imported in this order so that TASKS (and `prefalign tasks`) list the tasks in it.
from . import annotated, glue, instructions, reviews, superglue, tweeteval  # noqa: F401  (register at import)
from .registry import TASKS, TaskDefinition, get_task, load_task, register

__all__ = ["TASKS", "TaskDefinition", "get_task", "load_task", "register"]
