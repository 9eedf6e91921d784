"""`prefalign report RUN_DIR [--output report.html]`: one offline HTML page of a run directory."""

from __future__ import annotations

COMMAND = "report"


def add_parser(subparsers) -> None:
    r = subparsers.add_parser(
        "report", help="one offline HTML page of a run directory: curves, metrics, probes, dataset cards"
    )
    r.add_argument("run_dir", help="a folder written by `prefalign train` (with probe outputs below it, if any)")
    r.add_argument("--output", "-o", help="where to write the page (default: RUN_DIR/report.html)")


def run(args) -> int:
    from ..analysis.report import build_report

    out = build_report(args.run_dir, args.output)
    print(f"wrote {out} ({out.stat().st_size // 1024} KB, self-contained: open it in any browser, offline)")
    return 0
