"""Wall time of Algorithm 2 with the thesis's settings (appendix C.0.3): orders 1..5, 100 coefficient sets
from [-1, 10] each, 1,000 validation examples, for 2 and 3 classes.

    python benchmarks/ptloss_search_time.py [--solver newton|fsolve] [--examples 1000]

The teacher rows are Dirichlet draws and the labels follow them; only the time and the fallback count
matter here. Prints one line per class count.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from prefalign.methods.ptloss.search import SearchSettings, search_coefficients


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--solver", default="newton", choices=("newton", "fsolve"))
    parser.add_argument("--examples", type=int, default=1000)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    for classes in (2, 3):
        teacher = rng.dirichlet(np.ones(classes), size=args.examples)
        labels = np.array([rng.choice(classes, p=row) for row in teacher])
        t0 = time.time()
        record = search_coefficients(teacher, labels, SearchSettings(solver=args.solver), None, progress=False)
        fallback = sum(t["fallback"] for t in record["tried"])
        print(
            f"{classes} classes, {args.examples} examples, {len(record['tried'])} sets, solver {args.solver}: "
            f"{time.time() - t0:.0f} s; best Q {record['best']['q']:.4f} (order {record['best']['order']}) "
            f"vs teacher {record['q_kl']:.4f}; {fallback} example solves fell back to the direct minimiser"
        )


if __name__ == "__main__":
    main()
