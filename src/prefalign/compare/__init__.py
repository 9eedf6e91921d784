"""`prefalign compare`: methods x datasets x seeds, resumable, into the tables and charts of the paper."""

from .config import CompareConfig, load_compare_config
from .grid import plan, run_grid
from .report import markdown_tables, median_table, write_reports

__all__ = [
    "CompareConfig",
    "load_compare_config",
    "markdown_tables",
    "median_table",
    "plan",
    "run_grid",
    "write_reports",
]
