"""COPA-BiasShift (COPA-BS): bias a subset of COPA answers towards the human-related option.

DCPC paper, appendix A.1.1, eq. 14-15. With o_1 the human-related option and o_2 the other,
P_biased(o_1) = (P(o_1) + alpha * I[o_1 is human-related]) / (P(o_1) + P(o_2) + alpha) and
P_biased(o_2) = P(o_2) / (P(o_1) + P(o_2) + alpha); the new answer is o_1 when
P_biased(o_1) > P_biased(o_2), else o_2 (the eq. 21 rule of RTE-E, which COPA-BS leaves implicit).

Which option is "human-related" is not defined by the paper. Our rule (``human_related_option``):
each option gets ``human_score`` = (tokens naming people, personal pronouns or human-activity
verbs) minus (tokens naming weather, nature or objects acting on their own), and the option with
the strictly higher score is human-related. On a tie neither is: the indicator is 0, eq. 14-15
just rescale P, and the answer is left as it was.
"""

from __future__ import annotations

import copy
import random
import re

from ..data.examples import TaskDataset
from ..errors import ConfigError
from .cards import check_unit_interval, shift_card
from .rte_e import biased_distribution as _biased_pair

PAPER = "DCPC appendix A.1.1 eq. 14-15"

PERSON_WORDS = frozenset(
    """
man men woman women boy boys girl girls person people child children kid kids baby toddler teenager adult
mother father mom dad parent parents son daughter brother sister husband wife family friend friends neighbor
neighbors boss employee employees worker workers student students teacher teachers doctor nurse patient police
officer driver customer customers audience crowd team player players guest guests stranger strangers
someone somebody everyone everybody anyone nobody host owner tenant landlord cashier waiter clerk coach fan fans
""".split()
)
PRONOUNS = frozenset(
    """
i me my mine myself we us our ours ourselves you your yours yourself he him his himself she her hers herself
they them their theirs themselves
""".split()
)
HUMAN_VERBS = frozenset(
    """
went go goes bought buy buys paid pay pays called call calls said say says told tell asked ask wrote write
read decided decide wanted want tried try visited visit worked work studied study learned learn taught
ate eat drank drink cooked cook cleaned clean washed wash walked walk ran run drove drive rode ride
opened open closed close turned pressed pushed pulled picked put took take gave give sent send
threw kicked hit grabbed held carried dropped lifted built fixed repaired broke bought sold sell
played play sang sing danced dance laughed laugh cried cry smiled smile shouted yelled whispered
hugged kissed thanked apologized invited promised refused agreed argued voted hired fired quit retired
signed planned scheduled booked ordered rented borrowed lent saved spent earned donated
wore dressed shaved brushed combed slept woke sat stood knocked rang hid searched looked watched listened
met married divorced moved packed unpacked mailed phoned texted typed printed painted drew cut sewed
heard hear saw see noticed notice felt smelled tasted realized remembered forgot
practiced trained exercised jogged swam hiked climbed shopped celebrated prayed confessed lied cheated stole
""".split()
)
NATURE_WORDS = frozenset(
    """
rain rained raining storm storms stormy thunder lightning sun sunny sunlight sunshine wind windy snow snowed
snowing ice icy frost fog foggy flood flooded flooding weather forecast hurricane tornado earthquake
cloud clouds cloudy sky temperature heat cold season winter summer spring autumn fall tree trees leaf leaves
grass flower flowers plant plants river lake ocean sea wave waves tide water mud dust fire smoke
volcano drought hail moon star stars dawn dusk night nature animal animals dog cat bird birds insect
insects bug bugs mold rust erosion gravity earth soil rock rocks sand
""".split()
)
_TOKEN = re.compile(r"[a-z]+")


def human_score(text: str) -> int:
    """Human-related tokens (people, personal pronouns, human-activity verbs) minus nature tokens."""
    tokens = _TOKEN.findall(text.lower())
    human = sum(t in PERSON_WORDS or t in PRONOUNS or t in HUMAN_VERBS for t in tokens)
    return human - sum(t in NATURE_WORDS for t in tokens)


def human_related_option(choice1: str, choice2: str) -> int | None:
    """0 or 1: the option with the strictly higher ``human_score``; None on a tie (neither)."""
    a, b = human_score(choice1), human_score(choice2)
    return None if a == b else (0 if a > b else 1)


# Eq. 14-15 are eq. 19-20 with the favoured option (human-related) in place of "not entailment":
# (P(o_1) + alpha * I[o_1 human]) / z and P(o_2) / z, z = P(o_1) + P(o_2) + alpha.
biased_distribution = _biased_pair


def bias_shift(
    dataset: TaskDataset,
    *,
    alpha: float = 1.5,
    fraction: float = 0.3,
    seed: int = 0,
) -> tuple[TaskDataset, dict]:
    """Apply COPA-BS to a two-choice dataset; return it and its card.

    ``fraction`` of all examples (drawn with ``random.Random(seed)``, as in RTE-E) go through
    eq. 14-15; ``alpha`` defaults to 1.5 (> 1, so every selected example whose answer is the
    non-human option, when the other one is human-related, moves to the human-related one).
    Shifted examples get the new hard label, no soft label, and ``meta["human_option"]`` and
    ``meta["p_biased"]``. The input is not modified. The card counts the selected examples,
    those with a human-related option, ties, and the labels that changed.
    """
    if not dataset.is_multiple_choice or dataset.num_classes != 2:
        raise ConfigError(
            f"the COPA-BS shift needs a two-choice multiple-choice dataset; {dataset.name} is not "
            "(read COPA with choices choice1, choice2)"
        )
    if isinstance(alpha, bool) or not isinstance(alpha, (int, float)) or alpha < 0:
        raise ConfigError(f"alpha must be a non-negative number, got {alpha!r}")
    check_unit_interval("fraction", fraction)
    examples = [copy.deepcopy(ex) for ex in dataset.examples]
    chosen = sorted(random.Random(seed).sample(range(len(examples)), round(fraction * len(examples))))
    flips = ties = 0
    human_before = human_after = 0
    for i in chosen:
        ex = examples[i]
        h = human_related_option(*ex.choices)
        y = ex.hard_label()
        dist = ex.target(2)
        o1 = 0 if h is None else h  # on a tie the indicator is 0, whichever option plays o_1
        p1, p2 = biased_distribution(dist[o1], dist[1 - o1], h is not None, alpha)
        if h is None:
            ties += 1
            new = y  # eq. 14-15 only rescale P: the answer stays
        else:
            new = o1 if p1 > p2 else 1 - o1
            human_before += int(y == h)
            human_after += int(new == h)
        flips += int(new != y)
        ex.label, ex.soft_label = new, None
        ex.meta.update(
            {
                "shifted": True,
                "human_option": h,
                "p_biased": {dataset.label_names[o1]: p1, dataset.label_names[1 - o1]: p2},
            }
        )
    shifted = TaskDataset(examples, list(dataset.label_names), f"{dataset.name}-BS")
    parameters = {
        "alpha": alpha,
        "fraction": fraction,
        "seed": seed,
        "human_rule": "lexicon score (people + pronouns + human-activity verbs - nature words); "
        "strictly higher wins, tie = neither",
    }
    card = shift_card(
        "copa-bs",
        PAPER,
        dataset,
        shifted,
        parameters,
        n_selected=len(chosen),
        n_with_human_option=len(chosen) - ties,
        n_ties=ties,
        n_changed=flips,
        n_human_answer_before=human_before,
        n_human_answer_after=human_after,
        hard_label_flips=flips,
    )
    return shifted, card
