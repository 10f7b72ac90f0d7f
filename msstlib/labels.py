"""The canonical label order used everywhere in the project (DFEW's; DESIGN.md §4).

DFEW's split files store labels 1..7 in this order; FERV39k stores emotion *names*, which
`data_prep.ferv39k` maps onto this order by name, so the two datasets never disagree.
"""

EMOTIONS: tuple[str, ...] = ("Happy", "Sad", "Neutral", "Angry", "Surprise", "Disgust", "Fear")
NUM_CLASSES = len(EMOTIONS)
LABEL_OF: dict[str, int] = {name.lower(): i for i, name in enumerate(EMOTIONS)}


def label_of(name: str) -> int:
    """Canonical 0-based label of an emotion name (case-insensitive); KeyError if unknown."""
    return LABEL_OF[name.strip().lower()]
