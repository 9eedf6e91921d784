"""Why the searched PTLoss student misses the Bayes posterior on the synthetic task: Q term by term.

    python benchmarks/ptloss_q_mechanism.py [--seeds 0 1 2] [--no-student]

For each seed of benchmarks/ptloss_synthetic.py (same data, same teacher: its training is re-run with the
same seed, and the teacher's Q on the validation points is checked against the committed search), every
coefficient set Algorithm 2 tried (benchmarks/results/ptloss_synthetic_search_seed<N>/search.json) gets its
proxy teacher re-solved on the 500 validation points, and is scored by

* the two terms of eq. 4.20: (mean ||p^px - y||_2)^2 and mean (p^px . log p^px)^2, and the first term
  read with the squared norm, (mean ||p^px - y||_2^2)^2;
* what Q stands in for, known here exactly: the proxy's mean L2 distance to the Bayes posterior p*, and
  its mean entropy.

It reports the rank correlation (Spearman) of Q and of each term with the distance to p*, the set each
criterion picks and that set's distance to p*, and how many sets have a proxy closer to p* than the teacher
(with the sign of their first-order coefficient). Unless --no-student, a student is distilled with the
*oracle* set (the proxy closest to p* on validation; not available in practice) exactly as the synthetic
benchmark distils its students, to see whether a proxy closer to p* gives a student closer to p* (the
premise of section 4.5). Writes benchmarks/results/ptloss_q_mechanism.json.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from ptloss_synthetic import RESULTS, fit, make_data, probs, scores  # noqa: E402

from prefalign.methods.ptloss import losses  # noqa: E402
from prefalign.methods.ptloss.proxy import quality_score, solve_proxy  # noqa: E402


def terms(proxy: np.ndarray, labels: np.ndarray, posterior: np.ndarray) -> dict:
    """Q's terms (eq. 4.20) and the proxy's distance to p* and entropy, for one proxy teacher (N, C)."""
    gap = np.linalg.norm(proxy - np.eye(proxy.shape[1])[labels], axis=1)
    neg_entropy = (proxy * np.log(np.maximum(proxy, 1e-300))).sum(1)
    return {
        "q": quality_score(proxy, labels),
        "distance_term": float(gap.mean() ** 2),
        "entropy_term": float(np.mean(neg_entropy**2)),
        "distance_term_squared_norm": float(np.mean(gap**2) ** 2),
        "l2_to_bayes": float(np.linalg.norm(proxy - posterior, axis=1).mean()),
        "mean_entropy": float(-neg_entropy.mean()),
    }


def spearman(a, b) -> float:
    from scipy.stats import spearmanr

    return float(spearmanr(a, b).statistic)


def run_seed(seed: int, args) -> dict:
    t0 = time.time()
    search = json.loads((RESULTS / f"ptloss_synthetic_search_seed{seed}" / "search.json").read_text())
    data = make_data(seed)
    (xtr, ytr, _), (xva, yva, pva), (xte, yte, pte) = data["train"], data["val"], data["test"]
    teacher = fit(xtr, np.eye(3)[ytr], losses.kl_loss, seed, args.teacher_epochs)
    t_val = probs(teacher, xva)
    teacher_row = terms(t_val, yva, pva)
    reproduced = abs(teacher_row["q"] - search["q_kl"]) < 1e-9
    rows = []
    for tried in search["tried"]:
        proxy = solve_proxy(t_val, np.array(tried["eps"])).proxy
        rows.append({"order": tried["order"], "trial": tried["trial"], "eps": tried["eps"], **terms(proxy, yva, pva)})
    dist = [r["l2_to_bayes"] for r in rows]

    def pick(key: str) -> dict:
        best = min(rows, key=lambda r: r[key])
        return {k: best[k] for k in ("order", "trial", "eps", "q", key, "l2_to_bayes", "mean_entropy")}

    closer = [r for r in rows if r["l2_to_bayes"] < teacher_row["l2_to_bayes"]]
    out = {
        "seed": seed,
        "teacher_reproduced": reproduced,
        "teacher": teacher_row,
        "spearman_with_l2_to_bayes": {
            k: spearman([r[k] for r in rows], dist)
            for k in ("q", "distance_term", "entropy_term", "distance_term_squared_norm")
        },
        "spearman_q_with_mean_entropy": spearman([r["q"] for r in rows], [r["mean_entropy"] for r in rows]),
        "picked_by": {k: pick(k) for k in ("q", "distance_term", "distance_term_squared_norm", "l2_to_bayes")},
        "sets_closer_to_bayes_than_teacher": len(closer),
        "of_which_first_order_eps_negative": sum(r["eps"][0] < 0 for r in closer),
        "sets": len(rows),
    }
    if args.student:
        oracle = np.array(out["picked_by"]["l2_to_bayes"]["eps"])
        student = fit(xtr, probs(teacher, xtr), lambda t, z: losses.pt_loss(t, z, oracle), seed + 100, args.epochs)
        out["oracle_student"] = scores(probs(student, xte), yte, pte)
    out["seconds"] = round(time.time() - t0, 1)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--epochs", type=int, default=30, help="student epochs (as ptloss_synthetic.py)")
    parser.add_argument("--teacher-epochs", type=int, default=30, help="teacher epochs (as ptloss_synthetic.py)")
    parser.add_argument("--no-student", dest="student", action="store_false", help="skip the oracle student")
    parser.add_argument("--output", default=str(RESULTS / "ptloss_q_mechanism.json"))
    args = parser.parse_args()
    torch.set_num_threads(1)
    synthetic = {r["seed"]: r for r in json.loads((RESULTS / "ptloss_synthetic.json").read_text())["runs"]}
    runs = []
    for seed in args.seeds:
        r = run_seed(seed, args)
        if "oracle_student" in r and seed in synthetic:
            r["kl_student"] = synthetic[seed]["kl_student"]
            r["searched_ptloss_student"] = synthetic[seed]["ptloss_student"]
        runs.append(r)
        rho = r["spearman_with_l2_to_bayes"]
        print(
            f"seed {seed}: Spearman with the proxy's L2 to p*: Q {rho['q']:+.2f}, distance term "
            f"{rho['distance_term']:+.2f}, entropy term {rho['entropy_term']:+.2f}, squared-norm distance "
            f"{rho['distance_term_squared_norm']:+.2f}; proxy L2 to p*: teacher {r['teacher']['l2_to_bayes']:.4f}, "
            f"Q's pick {r['picked_by']['q']['l2_to_bayes']:.4f}, "
            f"oracle {r['picked_by']['l2_to_bayes']['l2_to_bayes']:.4f}"
            + (
                f"; oracle student {r['oracle_student']['l2_to_bayes']:.4f} (KL {r['kl_student']['l2_to_bayes']:.4f})"
                if "kl_student" in r
                else ""
            )
            + f" ({r['seconds']} s)",
            flush=True,
        )
    summary = {"settings": {k: v for k, v in vars(args).items() if k != "output"}, "runs": runs}
    Path(args.output).write_text(json.dumps(summary, indent=1) + "\n")
    print(f"-> {args.output}")


if __name__ == "__main__":
    main()
