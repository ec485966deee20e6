"""Simulated seeds x problems data with known truth, and the coverage studies built on it.

Binary outcomes follow logit p = mu + u_problem + w_seed,problem + c (beta + b_seed +
g_problem), plus c v_seed,eval when several eval seeds redraw a random subspace; the E1
truth (these seeds, new problems) and the E3 truth (new seeds and new problems) of any
linear contrast over conditions c come from Gauss-Hermite quadrature.
Effective rank is Gaussian with a per-seed and per-sequence slope and AR(1) noise over
iterations; the depth scenario makes erank depend on length, with depth correlated with
length. Studies return hit rates (coverage, rejections) with their Monte-Carlo SE.

    >>> cell = BinaryCell(n_seeds=3, n_items=200, sd_seed=0.3, sd_problem_effect=1.5)
    >>> summary = paired_binary_study(cell, n_replicates=100, n_boot=500,
    ...                               rng=np.random.default_rng(0))  # doctest: +SKIP
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np
from numpy.polynomial.hermite import hermgauss
from scipy import stats
from scipy.special import expit

from ablate.stats.depth import depth_association
from ablate.stats.intervals import TwoWayResult, paired_difference
from ablate.stats.iterations import erank_trend

GAUSS_HERMITE_NODES = 80
# Computing the nodes is an eigenproblem; the simulation loops call this thousands of times.
_NODES, _WEIGHTS = hermgauss(GAUSS_HERMITE_NODES)


@dataclass(frozen=True)
class BinaryCell:
    """One grid cell of the binary design (SDs on the logit scale)."""

    n_seeds: int
    n_items: int
    sd_seed: float  # b_seed: seed-to-seed spread of the effect
    sd_problem_effect: float  # g_problem: problem-by-condition spread shared by seeds
    mu: float = 0.0  # baseline logit (0 with beta 0 makes the E3 truth exactly 0)
    beta: float = 0.0  # mean effect per unit of c
    sd_problem: float = 1.0  # u_problem: difficulty
    sd_seed_problem: float = 0.5  # w_seed,problem: seed-specific difficulty


def gaussian_expit_mean(location: np.ndarray, variance: np.ndarray) -> np.ndarray:
    """E[expit(location + Z)] for Z ~ N(0, variance), elementwise, by Gauss-Hermite."""
    nodes, weights = _NODES, _WEIGHTS
    location = np.asarray(location, dtype=np.float64)[..., None]
    scale = np.sqrt(2.0 * np.asarray(variance, dtype=np.float64))[..., None]
    return (weights * expit(location + scale * nodes)).sum(axis=-1) / math.sqrt(math.pi)


def simulate_binary(cell: BinaryCell, conditions: np.ndarray, *,
                    rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """(y (n_seeds, n_conditions, n_items) of 0/1, seed effects b (n_seeds,))."""
    c = np.asarray(conditions, dtype=np.float64)
    s, n = cell.n_seeds, cell.n_items
    u = rng.normal(0, cell.sd_problem, n)
    g = rng.normal(0, cell.sd_problem_effect, n)
    b = rng.normal(0, cell.sd_seed, s)
    w = rng.normal(0, cell.sd_seed_problem, (s, n))
    logit = (cell.mu + u + w)[:, None, :] + c[None, :, None] * (cell.beta + b[:, None, None]
                                                              + g[None, None, :])
    return (rng.random(logit.shape) < expit(logit)).astype(np.float64), b


def binary_truths(cell: BinaryCell, conditions: np.ndarray, contrast: np.ndarray,
                  seed_effects: np.ndarray) -> tuple[float, float]:
    """(E1 truth, E3 truth) of sum_k contrast_k P(y = 1 | condition c_k): E1 averages over
    new problems for the realised seed effects, E3 also over new seeds."""
    c = np.asarray(conditions, dtype=np.float64)
    weights = np.asarray(contrast, dtype=np.float64)
    base_variance = cell.sd_problem**2 + cell.sd_seed_problem**2 + c**2 * cell.sd_problem_effect**2
    per_seed = gaussian_expit_mean(cell.mu + c[None, :] * (cell.beta + seed_effects[:, None]),
                                   np.broadcast_to(base_variance, (seed_effects.size, c.size)))
    e1 = float(np.mean(per_seed @ weights))
    e3 = float(gaussian_expit_mean(cell.mu + c * cell.beta,
                                   base_variance + c**2 * cell.sd_seed**2) @ weights)
    return e1, e3


@dataclass
class HitCounter:
    """Counts of interval hits and rejections over replicates, per method."""

    replicates: int = 0
    hits: dict[str, int] | None = None

    def add(self, name: str, hit: bool) -> None:
        self.hits = self.hits or {}
        self.hits[name] = self.hits.get(name, 0) + int(hit)

    def rates(self) -> dict[str, float]:
        """Rate per counter and its Monte-Carlo SE (``<name>_se``)."""
        out: dict[str, float] = {"replicates": float(self.replicates)}
        for name, count in sorted((self.hits or {}).items()):
            rate = count / self.replicates
            out[name] = rate
            out[f"{name}_se"] = math.sqrt(max(rate * (1 - rate), 1e-12) / self.replicates)
        return out


def _covers(interval: tuple[float, float], truth: float) -> bool:
    return interval[0] <= truth <= interval[1]


def _score(counter: HitCounter, result: TwoWayResult, truth_e1: float, truth_e3: float,
           alpha: float, *, prefix: str = "", count: bool = True) -> None:
    """E1 against its own truth, E3 and the naive seed t test against the E3 truth; the
    rejections count declarations of an effect (false positives when the E3 truth is 0).
    ``prefix`` names a second method scored on the same replicate (``count=False``)."""
    counter.replicates += int(count)
    counter.add(f"{prefix}coverage_e1", _covers(result.e1, truth_e1))
    counter.add(f"{prefix}coverage_e1_of_e3_truth", _covers(result.e1, truth_e3))
    counter.add(f"{prefix}coverage_e3", _covers(result.e3, truth_e3))
    counter.add(f"{prefix}reject_e1", result.p_e1 < alpha)
    counter.add(f"{prefix}reject_e3", result.p_e3 < alpha)
    seeds = np.asarray(result.per_seed)
    standard_error = seeds.std(ddof=1) / math.sqrt(seeds.size)
    half = stats.t.ppf(1 - alpha / 2, seeds.size - 1) * standard_error
    counter.add(f"{prefix}coverage_seed_t",
                _covers((seeds.mean() - half, seeds.mean() + half), truth_e3))
    # |mean| > half is the two-sided t test at alpha (and handles a zero spread).
    counter.add(f"{prefix}reject_seed_t", bool(abs(seeds.mean()) > half))


def paired_binary_study(cell: BinaryCell, *, n_replicates: int, n_boot: int,
                        rng: np.random.Generator, level: float = 0.95) -> dict[str, float]:
    """Coverage and rejection rates of paired_difference (condition c = 1 minus c = 0)."""
    conditions, contrast = np.array([1.0, 0.0]), np.array([1.0, -1.0])
    counter = HitCounter()
    for _ in range(n_replicates):
        y, seed_effects = simulate_binary(cell, conditions, rng=rng)
        result = paired_difference(y[:, 0], y[:, 1], rng=rng, level=level, n_boot=n_boot)
        truth_e1, truth_e3 = binary_truths(cell, conditions, contrast, seed_effects)
        _score(counter, result, truth_e1, truth_e3, 1 - level)
    return {**asdict(cell), **counter.rates()}


@dataclass(frozen=True)
class EvalSeedCell:
    """The binary design evaluated under several eval seeds. Each eval seed redraws what
    it seeds, e.g. the random subspace of a control, shifting a seed's effect by
    v_seed,eval for all its problems at once (SD ``sd_eval``), and every evaluation draws
    its own 0/1 outcome."""

    n_seeds: int
    n_items: int
    n_eval_seeds: int
    sd_seed: float
    sd_problem_effect: float
    sd_eval: float = 0.3
    mu: float = 0.0
    beta: float = 0.0
    sd_problem: float = 1.0
    sd_seed_problem: float = 0.5


def simulate_eval_seeds(cell: EvalSeedCell, conditions: np.ndarray, *,
                        rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(y (n_seeds, n_conditions, n_eval_seeds, n_items) of 0/1, seed effects b
    (n_seeds,), eval-seed effects v (n_seeds, n_eval_seeds))."""
    c = np.asarray(conditions, dtype=np.float64)
    s, e, n = cell.n_seeds, cell.n_eval_seeds, cell.n_items
    u = rng.normal(0, cell.sd_problem, n)
    g = rng.normal(0, cell.sd_problem_effect, n)
    b = rng.normal(0, cell.sd_seed, s)
    v = rng.normal(0, cell.sd_eval, (s, e))
    w = rng.normal(0, cell.sd_seed_problem, (s, n))
    effect = cell.beta + b[:, None, None] + v[:, :, None] + g[None, None, :]  # (S, E, n)
    logit = (cell.mu + u + w)[:, None, None, :] + c[None, :, None, None] * effect[:, None]
    return (rng.random(logit.shape) < expit(logit)).astype(np.float64), b, v


def eval_seed_truths(cell: EvalSeedCell, conditions: np.ndarray, contrast: np.ndarray,
                     seed_effects: np.ndarray, eval_effects: np.ndarray) -> tuple[float, float]:
    """(E1 truth: these seeds under these eval seeds, new problems; E3 truth: new seeds and
    new eval seeds too) of sum_k contrast_k P(y = 1 | c_k), averaged over eval seeds."""
    c = np.asarray(conditions, dtype=np.float64)
    weights = np.asarray(contrast, dtype=np.float64)
    base_variance = cell.sd_problem**2 + cell.sd_seed_problem**2 + c**2 * cell.sd_problem_effect**2
    shift = (seed_effects[:, None] + eval_effects)[..., None]  # (S, E, 1)
    per_cell = gaussian_expit_mean(cell.mu + c * (cell.beta + shift),
                                   np.broadcast_to(base_variance, shift.shape[:2] + c.shape))
    e1 = float(np.mean(per_cell @ weights))
    spread = c**2 * (cell.sd_seed**2 + cell.sd_eval**2)
    e3 = float(gaussian_expit_mean(cell.mu + c * cell.beta, base_variance + spread) @ weights)
    return e1, e3


def eval_seed_study(cell: EvalSeedCell, *, n_replicates: int, n_boot: int,
                    rng: np.random.Generator, level: float = 0.95) -> dict[str, float]:
    """Coverage and rejections of paired_difference on each problem's outcome averaged over
    the eval seeds (what ``ablate`` does), and, prefixed ``pooled_``, on (eval seed,
    problem) pairs counted as separate problems (what it must not do)."""
    conditions, contrast = np.array([1.0, 0.0]), np.array([1.0, -1.0])
    counter = HitCounter()
    for _ in range(n_replicates):
        y, seed_effects, eval_effects = simulate_eval_seeds(cell, conditions, rng=rng)
        truth_e1, truth_e3 = eval_seed_truths(cell, conditions, contrast, seed_effects,
                                              eval_effects)
        averaged = y.mean(axis=2)  # (S, C, n)
        result = paired_difference(averaged[:, 0], averaged[:, 1], rng=rng, level=level,
                                   n_boot=n_boot)
        _score(counter, result, truth_e1, truth_e3, 1 - level)
        pooled = y.reshape(cell.n_seeds, conditions.size, -1)  # (S, C, E * n)
        result = paired_difference(pooled[:, 0], pooled[:, 1], rng=rng, level=level,
                                   n_boot=n_boot)
        _score(counter, result, truth_e1, truth_e3, 1 - level, prefix="pooled_", count=False)
    return {**asdict(cell), **counter.rates()}


@dataclass(frozen=True)
class ErankCell:
    """Effective-rank trajectories: slope per iteration with seed and sequence spread."""

    n_seeds: int
    n_items: int
    n_iters: int = 9  # M(0)..M(8)
    slope: float = 0.0
    sd_seed_slope: float = 0.05
    sd_item_slope: float = 0.05
    sd_item: float = 1.0
    sd_seed_item: float = 0.3
    noise_sd: float = 0.3
    ar: float = 0.7


def simulate_erank(cell: ErankCell, *, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """(erank (n_seeds, n_items, n_iters), seed slope effects (n_seeds,))."""
    s, n, t = cell.n_seeds, cell.n_items, cell.n_iters
    iterations = np.arange(t, dtype=np.float64)
    b = rng.normal(0, cell.sd_seed_slope, s)
    g = rng.normal(0, cell.sd_item_slope, n)
    level = 5.0 + rng.normal(0, cell.sd_item, n)[None, :] + rng.normal(0, cell.sd_seed_item, (s, n))
    slopes = cell.slope + b[:, None] + g[None, :]  # (S, n)
    noise = np.empty((s, n, t))
    noise[:, :, 0] = rng.normal(0, cell.noise_sd, (s, n))
    innovation_sd = cell.noise_sd * math.sqrt(1 - cell.ar**2)  # keeps the AR(1) stationary
    for step in range(1, t):
        noise[:, :, step] = cell.ar * noise[:, :, step - 1] + rng.normal(0, innovation_sd, (s, n))
    return level[:, :, None] + slopes[:, :, None] * iterations + noise, b


def erank_slope_study(cell: ErankCell, *, n_replicates: int, n_boot: int,
                      rng: np.random.Generator, level: float = 0.95) -> dict[str, float]:
    """Coverage and rejections of the per-seed slope over iterations (erank_trend)."""
    counter = HitCounter()
    for _ in range(n_replicates):
        erank, seed_effects = simulate_erank(cell, rng=rng)
        result = erank_trend(erank, rng=rng, level=level, n_boot=n_boot).slope
        _score(counter, result, cell.slope + float(seed_effects.mean()), cell.slope, 1 - level)
    return {**asdict(cell), **counter.rates()}


@dataclass(frozen=True)
class DepthCell:
    """erank = a + length_effect log(n_tokens) + (depth_effect + b_seed) depth + noise, with
    depth drawn to rise with length (the confound)."""

    n_seeds: int
    n_items: int
    depth_effect: float = 0.0
    sd_seed_effect: float = 0.02
    length_effect: float = 1.0
    sd_item: float = 0.3
    sd_seed_item: float = 0.2


def simulate_depth(cell: DepthCell, *, rng: np.random.Generator
                   ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(erank (n_seeds, n_items), depth (n_items,), n_tokens (n_items,), seed effects)."""
    s, n = cell.n_seeds, cell.n_items
    log_tokens = rng.normal(5.0, 0.4, n)
    depth = rng.poisson(np.exp(1.0 + 1.5 * (log_tokens - 5.0))).astype(np.float64)
    b = rng.normal(0, cell.sd_seed_effect, s)
    erank = (2.0 + cell.length_effect * log_tokens[None, :]
             + (cell.depth_effect + b[:, None]) * depth[None, :]
             + rng.normal(0, cell.sd_item, n)[None, :] + rng.normal(0, cell.sd_seed_item, (s, n)))
    return erank, depth, np.exp(log_tokens), b


def depth_study(cell: DepthCell, *, n_replicates: int, n_boot: int, rng: np.random.Generator,
                level: float = 0.95, with_ols: bool = True) -> dict[str, float]:
    """Coverage and rejections of the length-adjusted depth slope (E1 bootstrap, E1
    clustered OLS and E3), plus how often raw Spearman of depth with erank rejects
    (confounded by length)."""
    counter = HitCounter()
    for _ in range(n_replicates):
        erank, depth, n_tokens, seed_effects = simulate_depth(cell, rng=rng)
        association = depth_association(erank, depth, n_tokens, rng=rng, level=level,
                                        n_boot=n_boot, rank_statistics=False,
                                        model_e1=with_ols)
        truth_e1 = cell.depth_effect + float(seed_effects.mean())
        _score(counter, association.adjusted_slope, truth_e1, cell.depth_effect, 1 - level)
        ols = association.adjusted_slope_ols
        if ols is not None:
            counter.add("coverage_ols", _covers(ols.interval, truth_e1))
            counter.add("coverage_ols_of_e3_truth", _covers(ols.interval, cell.depth_effect))
            counter.add("reject_ols", ols.p < 1 - level)
        raw = stats.spearmanr(depth, erank.mean(axis=0))
        counter.add("reject_raw_spearman", bool(raw.pvalue < 1 - level))
    return {**asdict(cell), **counter.rates()}
