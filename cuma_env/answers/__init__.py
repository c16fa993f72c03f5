"""Final answers: extraction, normalisation, canonical keys and mathematical equivalence.

    from cuma_env.answers import extract_answer, normalize_answer, canonical_key, is_equivalent, cluster_answers

Every public function returns within its time budget on any input and from any thread; see
`equivalence` for how (pure-python keys first, then a killable sympy worker process).
"""

from .equivalence import cluster_answers, is_equivalent, matches_reference, prewarm
from .extract import extract_answer
from .normalize import canonical_key, normalize_answer

__all__ = [
    "canonical_key", "cluster_answers", "extract_answer", "is_equivalent", "matches_reference", "normalize_answer",
    "prewarm",
]
