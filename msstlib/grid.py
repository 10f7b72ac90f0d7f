"""The study's rows as data: what is compared, and the rows that run it.

One vocabulary from the grid to the tables. A :class:`Config` is one configuration of the study
(frames, T-Former depths, variant, tag); the claims compare two of them (:class:`Comparison`). A
:class:`Row` is a configuration run once: on a fold (or split), with a seed, in a build. Each row's
``result.json`` records the same fields (``frames``, ``depths``, ``variant``, ``tag``, ``seed``,
``fold``, ``build``), and the tables and claims read them from there
(:func:`msstlib.results.load_results`), never from folder names.

The grids:

* :func:`grid`, the five-fold study: Table 1 (:func:`table1`), the T=4 depth-1 model without its
  temporal position embedding (the clean test of temporal order), Table 3's same-backbone baselines
  (ResNet-18 + LSTM / GRU / TCN, T=4), the LSTM at higher learning rates, joint space-time attention
  and two more seeds of one row (seed-to-seed spread);
* :func:`build_grid`, a claim build: every configuration :func:`build_claims` compares, once;
* :func:`validation_grid`, the validation draw: the LSTMs' budget sweep (no claim reads it).

The comparisons are DESIGN.md §9's claims (a)-(g) (:func:`paper_claims`) and, for the build study,
the same with the LSTM at its validated budget, plus the matched baselines on the very MELayer
embeddings MSSTNet reads (:func:`build_claims`).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from .config import ME_VARIANTS

UNIT_FOLD = 1  # a build's one fixed split: DFEW layout fold 1 is its test set
REPLICATE_TAG = "seed-spread"  # a row that repeats a table row with another seed (not a change to it)


@dataclass(frozen=True)
class Config:
    """One configuration of the study: what a table cell and a side of a claim are."""

    frames: int
    depths: tuple[int, int, int] = (1, 1, 1)
    variant: str = "msstnet"
    tag: str = ""  # what the configuration changes beyond Table 1 ("no-pos-embed", "budget", ...)

    def __post_init__(self) -> None:
        if not (isinstance(self.depths, tuple) and len(self.depths) == 3 and all(isinstance(d, int) for d in self.depths)):
            raise TypeError(f"Config.depths: expected a tuple of three ints such as (1, 1, 1), got {self.depths!r}")

    @property
    def depths_text(self) -> str:
        """The depths as the tables' ``depths`` column writes them ("1-1-1")."""
        return "-".join(map(str, self.depths))

    def select(self, df):
        """This configuration's runs in a :func:`msstlib.results.load_results` frame (with the
        replicate seeds of an untagged configuration)."""
        tags = df["tag"].isin(["", REPLICATE_TAG]) if self.tag == "" else df["tag"] == self.tag
        return df[(df["frames"] == self.frames) & (df["depths"] == self.depths_text) & (df["variant"] == self.variant)
                  & tags]

    def label(self) -> str:
        if self.variant != "msstnet":
            return f"T{self.frames} {self.variant}" + (f" {self.tag}" if self.tag else "")
        return f"T{self.frames} d{''.join(map(str, self.depths))}" + (f" {self.tag}" if self.tag else "")


@dataclass(frozen=True)
class Row:
    """One run of ``train_eval.ipynb``: a configuration on one fold (or split), with one seed."""

    dataset: str
    fold: int | None
    split: str | None
    frames: int
    depths: tuple[int, int, int]
    variant: str
    seed: int = 0
    tag: str = ""  # what the row tests beyond Table 1 ("no-pos-embed", REPLICATE_TAG, ...)
    probe: bool = False  # an optimiser probe: a divergence is its outcome, not a failure
    overrides: dict = field(default_factory=dict, hash=False, compare=False)
    build: str = ""  # the build the row belongs to ("b01", "val": msstlib.builds); "" in the five-fold study

    @classmethod
    def of(cls, config: Config, dataset: str, fold: int | None, split: str | None = None, **kw) -> Row:
        return cls(dataset, fold, split, config.frames, config.depths, config.variant, tag=config.tag, **kw)

    @property
    def config(self) -> Config:
        """The configuration the row runs (a replicate seed runs its table row's)."""
        return Config(self.frames, self.depths, self.variant, "" if self.tag == REPLICATE_TAG else self.tag)

    @property
    def name(self) -> str:
        """The readable prefix of the row's folder (the run id follows it)."""
        where = f"fold{self.fold}" if self.fold is not None else self.split
        depth = "".join(map(str, self.depths))
        kind = self.variant.split("-", 1)[-1]
        base = ("r18" + kind if self.variant.startswith("resnet18-") else "me" + kind if self.variant.startswith("me-")
                else f"d{depth}")
        extra = f"_{self.tag}" if self.tag and self.tag != REPLICATE_TAG else ""
        return f"{self.build + '_' if self.build else ''}T{self.frames:02d}_{base}{extra}_s{self.seed}_{where}"

    @property
    def cost(self) -> float:
        """A row's relative training cost (frames x (1 + blocks)): the local executor starts the
        longest rows first, so the last minutes of a study are not one long row running alone."""
        return self.frames * (1 + sum(self.depths))


def table1(frames: tuple[int, ...] = (4, 8, 12, 16)) -> list[Config]:
    """The paper's Table 1: the ResNet-18 + temporal-mean baseline, every T-Former subset at T=4
    (depth 1), and frames x depth 1..3."""
    rows = [Config(4, (0, 0, 0), "resnet18-mean")]
    for mask in range(8):
        rows.append(Config(4, tuple((mask >> i) & 1 for i in range(3))))
    for t in frames:
        rows += [c for c in (Config(t, (d, d, d)) for d in (1, 2, 3)) if c not in rows]
    return rows


# ------------------------------------------------------------------------------------ comparisons


@dataclass(frozen=True)
class Comparison:
    """``better`` is claimed to beat ``worse`` (or, with ``kind="non-inferior"``, not to lose to it
    by more than :data:`msstlib.claims.MARGIN`)."""

    claim: str
    better: Config
    worse: Config
    kind: str = "superior"

    @property
    def text(self) -> str:
        return f"{self.better.label()} - {self.worse.label()}"


# The LSTM baseline rerun at higher learning rates with the shared budget (the cpu preset's lr is
# 1e-3): the five-fold study runs these rows and claim (e) compares MSSTNet with each of them.
LSTM_LEARNING_RATES = (("lr-3e-3", 3e-3), ("lr-1e-2", 1e-2))
BUDGET_TAG = "budget"  # an LSTM row at the budget chosen for it on the validation draw (LSTM_BUDGET)
# The LSTMs' training budget, chosen on the validation draw (build ``val``, never a claim's data):
# results/calibration/README.md "LSTM budget" gives the sweep and the rule. Every other row keeps
# the cpu preset's shared budget (AdamW, lr 1e-3, 5 epochs).
# The validation draw's WAR at the shared budget (lr 1e-3, 5 epochs): resnet18-lstm 30.8 % (majority class
# 22.8 %), me-lstm 55.7 %; at the chosen budgets 67.7 % and 64.3 % (MSSTNet depth 1, 5 epochs: 58.3 %).
LSTM_BUDGET = {"resnet18-lstm": {"lr": 3e-4, "epochs": 15}, "me-lstm": {"lr": 3e-3, "epochs": 15}}
MATCHED_CLAIM = "the T-Former beats other temporal models on the same MELayer embeddings"
POOLED_CLAIM = "the T-Former beats Table 3's baselines (they read pooled layer-4 features)"
MSST = Config(4, (1, 1, 1))  # the T=4 depth-1 MSSTNet: most claims' better side


def paper_claims() -> list[Comparison]:
    """The claims of DESIGN.md §9 (a)-(g) as comparisons on the five-fold study's grid."""
    out = []
    for i, name in enumerate(("T-Former1", "T-Former2", "T-Former3")):  # (a) each stage helps on its own
        alone = tuple(int(j == i) for j in range(3))
        out.append(Comparison(f"{name} helps (added to no T-Former)", Config(4, alone), Config(4, (0, 0, 0))))
    for other in ((1, 1, 0), (1, 0, 1), (0, 1, 1)):  # (b) all three together is best
        out.append(Comparison("all three T-Formers together is best", MSST, Config(4, other)))
    for t in (4, 8, 12, 16):  # (c) two blocks per T-Former is best, at every T
        for other in ((1, 1, 1), (3, 3, 3)):
            out.append(Comparison(f"depth 2 is best (T={t})", Config(t, (2, 2, 2)), Config(t, other)))
    for lo, hi in ((4, 8), (8, 12), (12, 16), (4, 16)):  # (d) more frames help (depth 2)
        out.append(Comparison("more frames help (depth 2)", Config(hi, (2, 2, 2)), Config(lo, (2, 2, 2))))
    for v in ("resnet18-mean", "resnet18-lstm", "resnet18-gru", "resnet18-tcn"):  # (e) Table 3's ordering
        out.append(Comparison("the T-Former beats the same backbone's temporal models", MSST,
                              Config(4, (0, 0, 0), v)))
    for tag, _ in LSTM_LEARNING_RATES:  # (e) again, against the LSTM at higher learning rates (same budget)
        out.append(Comparison("the T-Former beats the same backbone's temporal models", MSST,
                              Config(4, (0, 0, 0), "resnet18-lstm", tag)))
    out.append(Comparison("temporal-only attention matches joint attention", MSST,  # (f)
                          Config(4, (1, 1, 1), tag="joint-attention"), kind="non-inferior"))
    out.append(Comparison("the temporal position embedding matters", MSST,  # (g)
                          Config(4, (1, 1, 1), tag="no-pos-embed")))
    return out


def build_claims() -> list[Comparison]:
    """The comparisons of the build study: the paper's claims (a)-(g) as :func:`paper_claims`,
    with the LSTM at its validated budget instead of the shared one and the upward learning-rate
    sweep, plus the matched baselines (MSSTNet against LSTM / GRU / TCN / the mean over the very
    MELayer embeddings it reads, ``me-*``)."""
    out = []
    for c in paper_claims():
        if c.worse.variant.startswith("resnet18-"):  # Table 3's style: the baselines read pooled layer-4 features
            c = Comparison(POOLED_CLAIM, c.better, c.worse, c.kind)
        if c.worse.variant == "resnet18-lstm":
            if not c.worse.tag:  # Table 3's LSTM, at the budget where it trains
                out.append(Comparison(c.claim, c.better, Config(4, (0, 0, 0), "resnet18-lstm", BUDGET_TAG)))
            continue
        out.append(c)
        if c.worse.variant == "resnet18-tcn":  # the matched ones after the pooled-layer-4 ones
            out += [Comparison(MATCHED_CLAIM, MSST, Config(4, (1, 1, 1), v, BUDGET_TAG if v == "me-lstm" else ""))
                    for v in ME_VARIANTS]
    return out


def compared_configs(comparisons: list[Comparison]) -> list[Config]:
    """Every configuration the comparisons read, once each, in order of first use."""
    return list(dict.fromkeys(cfg for c in comparisons for cfg in (c.better, c.worse)))


# ----------------------------------------------------------------------------------------- grids

# What a tag changes in a row's configuration (the five-fold grid and the builds' grid share them).
TAG_OVERRIDES = {"no-pos-embed": {"temporal_pos_embed": False}, "joint-attention": {"attention": "joint"}}
# The validation draw's sweep of the LSTMs' budget (learning rate, epochs); the shared budget is (1e-3, 5).
LSTM_SWEEP = tuple((lr, epochs) for lr in (3e-4, 1e-3, 3e-3) for epochs in (5, 15))
# The paper's optimiser on the CPU preset's frozen-backbone set-up: does SGD train the new layers?
SGD_ROWS = (
    ("sgd", {"optimizer": "sgd", "lr": 0.1, "momentum": 0.9, "weight_decay": 1e-4, "schedule": "step"}),
    ("sgd-warmup", {"optimizer": "sgd", "lr": 0.1, "momentum": 0.9, "weight_decay": 1e-4, "schedule": "step",
                    "warmup_epochs": 1}),
    ("sgd-lr0.01", {"optimizer": "sgd", "lr": 0.01, "momentum": 0.9, "weight_decay": 1e-4, "schedule": "step"}),
)


def grid(dataset: str, folds: list[int] | None = None, split: str | None = None, quick: bool = False,
         spread_seeds: tuple[int, ...] = (1, 2), sgd_rows: bool = False, seeds: tuple[int, ...] = (),
         frames: tuple[int, ...] | None = None, claims_only: bool = False) -> list[Row]:
    """All rows of the five-fold study for one dataset (``quick``: a handful of rows for a smoke run).

    ``sgd_rows`` adds the paper's optimiser (and with a warm-up) on the T=4 depth-1 row: only
    meaningful for presets that switch to AdamW (the ``cpu`` preset). ``seeds`` adds, for each
    seed, every row that a claim compares (:func:`paper_claims`), so that each claim has fold x
    seed units (DESIGN.md §9); seed 0 is always in the grid. ``frames`` keeps only the rows with
    those clip lengths (e.g. ``(4,)``: the cheap rows first); ``claims_only`` keeps only the rows a
    claim compares.
    """
    rows = _five_fold(dataset, folds, split, quick, spread_seeds, sgd_rows)
    compared = set(compared_configs(paper_claims()))
    if seeds and not quick:
        names = {r.name for r in rows}
        for s in sorted(set(seeds) - {0}):
            for r in list(rows):
                extra = replace(r, seed=s, tag=r.config.tag)
                if r.seed == 0 and r.config in compared and extra.name not in names:
                    rows.append(extra)
                    names.add(extra.name)
    if claims_only:
        rows = [r for r in rows if r.config in compared]
    if frames:
        rows = [r for r in rows if r.frames in frames]
    return rows


def _five_fold(dataset: str, folds: list[int] | None, split: str | None, quick: bool, spread_seeds: tuple[int, ...],
               sgd_rows: bool) -> list[Row]:
    places = [(f, None) for f in (folds or [1])] if dataset != "ferv39k" else [(None, split or "train")]
    base = table1()
    if quick:  # the temporal-mean baseline, MSSTNet at T=4 and 8, and the Grad-CAM control (the GRU)
        base = [c for c in base if c.frames == 4 and (c.variant == "resnet18-mean" or c.depths == (1, 1, 1))]
        base += [Config(4, (0, 0, 0), "resnet18-gru"), Config(8, (1, 1, 1))]
    rows = []
    for fold, sp in places:
        rows += [Row.of(c, dataset, fold, sp) for c in base]
        if quick:
            continue
        rows.append(Row(dataset, fold, sp, 4, (1, 1, 1), "msstnet", tag="no-pos-embed",
                        overrides=TAG_OVERRIDES["no-pos-embed"]))
        # Table 3's same-backbone temporal baselines, and joint space-time attention (§2.2)
        rows += [Row(dataset, fold, sp, 4, (0, 0, 0), v) for v in ("resnet18-lstm", "resnet18-gru", "resnet18-tcn")]
        # the LSTM barely leaves the prior at the shared lr (fold 1: train accuracy 0.20 -> 0.29 in 5 epochs):
        # the same budget at higher learning rates, so the claim does not rest on an undertrained baseline
        rows += [Row(dataset, fold, sp, 4, (0, 0, 0), "resnet18-lstm", tag=tag, overrides={"lr": lr})
                 for tag, lr in LSTM_LEARNING_RATES]
        rows.append(Row(dataset, fold, sp, 4, (1, 1, 1), "msstnet", tag="joint-attention",
                        overrides=TAG_OVERRIDES["joint-attention"]))
        rows += [Row(dataset, fold, sp, 4, (1, 1, 1), "msstnet", seed=s, tag=REPLICATE_TAG) for s in spread_seeds]
        if sgd_rows:
            rows += [Row(dataset, fold, sp, 4, (1, 1, 1), "msstnet", tag=tag, overrides=o, probe=True)
                     for tag, o in SGD_ROWS]
    return rows


def build_grid(dataset: str, build: str, fold: int = UNIT_FOLD) -> list[Row]:
    """The rows of one claim build (:mod:`msstlib.builds`): every configuration a build claim
    compares (:func:`build_claims`), once, on the build's fixed split, seed 0. The LSTMs run at
    their validated budget (:data:`LSTM_BUDGET`). The T=4 rows evaluate the test set after every
    epoch (``test_every=1``, for :func:`msstlib.claims.best_epoch_inflation`; the result is the
    last epoch's, as always)."""
    rows = []
    for cfg in compared_configs(build_claims()):
        over = dict(LSTM_BUDGET[cfg.variant] if cfg.tag == BUDGET_TAG else TAG_OVERRIDES.get(cfg.tag, {}))
        if cfg.frames == 4:
            over["test_every"] = 1
        rows.append(Row.of(cfg, dataset, fold, overrides=over, build=build))
    return rows


def validation_grid(dataset: str, fold: int = UNIT_FOLD) -> list[Row]:
    """The rows of the validation draw (build ``val``; no claim reads them): the LSTMs' budget
    sweep (:data:`LSTM_SWEEP`, ``resnet18-lstm`` and ``me-lstm``) beside MSSTNet and the GRUs at
    the shared budget, every row evaluating the test split (the validation draw's) after every
    epoch."""
    rows = [Row(dataset, fold, None, 4, depths, variant, tag=f"lr{lr:g}-ep{epochs}",
                overrides={"lr": lr, "epochs": epochs, "test_every": 1}, build="val")
            for variant, depths in (("resnet18-lstm", (0, 0, 0)), ("me-lstm", (1, 1, 1))) for lr, epochs in LSTM_SWEEP]
    rows += [Row(dataset, fold, None, 4, depths, variant, overrides={"test_every": 1}, build="val")
             for variant, depths in (("msstnet", (1, 1, 1)), ("resnet18-gru", (0, 0, 0)), ("me-gru", (1, 1, 1)))]
    return rows
