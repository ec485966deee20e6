"""Interventions: projection math against numpy float64, registry errors, expansion of
TOML tables into conditions, and hooks on the tiny model."""

from __future__ import annotations

import logging

import numpy as np
import pytest
import torch

from ablate.errors import AblateError
from ablate.interventions import (
    UNABLATED,
    Intervention,
    Param,
    arm_kind,
    available_interventions,
    check_sites_fire,
    control_of,
    expand_conditions,
    get_intervention,
    make_condition,
    register_intervention,
    unregister_intervention,
    validate_conditions,
)

D = 4


def batch(seed: int = 0, shape: tuple[int, ...] = (3, 5)) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return torch.randn(*shape, D, D, generator=generator)


def numpy_rank(matrix: np.ndarray, tol: float = 1e-5) -> int:
    s = np.linalg.svd(matrix, compute_uv=False)
    return int((s > tol * max(s[0], 1e-30)).sum())


@pytest.mark.parametrize("k", [1, 2, 3])
def test_svd_rank_k_is_the_numpy_truncated_svd(k):
    # Eckart-Young: the best rank-k approximation is U_k S_k V_k^T (golden from numpy float64).
    X = batch()
    out = Intervention("svd_rank_k", k=k).apply(X, eval_seed=0)
    for x, y in zip(X.reshape(-1, D, D).double().numpy(), out.reshape(-1, D, D).double().numpy(),
                    strict=True):
        U, s, Vt = np.linalg.svd(x)
        best = (U[:, :k] * s[:k]) @ Vt[:k]
        np.testing.assert_allclose(y, best, atol=1e-5)
        assert numpy_rank(y) <= k


@pytest.mark.parametrize(
    "intervention",
    [Intervention("svd_rank_k", k=2), Intervention("random_rank_k", k=2, draw=0),
     Intervention("random_rank_k", k=2, draw=0, side="rows")],
    ids=lambda i: i.label,
)
def test_projections_are_idempotent(intervention):
    # A projection applied twice equals applying it once.
    once = intervention.apply(batch(), eval_seed=3)
    twice = intervention.apply(once, eval_seed=3)
    torch.testing.assert_close(once, twice, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("side", ["columns", "rows"])
def test_random_rank_k_projects_every_matrix_onto_one_k_dim_subspace(side):
    # All columns (rows) of all projected matrices span the same k-dim subspace, and the
    # residual X - P(X) is orthogonal to it (an orthogonal projection).
    k = 2
    X = batch(1)
    out = Intervention("random_rank_k", k=k, draw=0, side=side).apply(X, eval_seed=5)
    x64, y64 = X.double().numpy(), out.double().numpy()
    if side == "rows":
        x64, y64 = np.swapaxes(x64, -1, -2), np.swapaxes(y64, -1, -2)
    columns = np.concatenate(list(y64.reshape(-1, D, D)), axis=1)  # (D, N*D)
    assert numpy_rank(columns) == k
    basis = np.linalg.svd(columns)[0][:, :k]
    residual = (x64 - y64).reshape(-1, D, D)
    np.testing.assert_allclose(basis.T @ residual, 0.0, atol=1e-5)


def test_random_subspace_depends_on_seed_draw_and_k_only():
    X = batch(2)

    def apply(eval_seed: int, draw: int) -> torch.Tensor:
        return Intervention("random_rank_k", k=2, draw=draw).apply(X, eval_seed=eval_seed)

    assert torch.equal(apply(0, 1), apply(0, 1))
    assert not torch.allclose(apply(0, 1), apply(0, 2))
    assert not torch.allclose(apply(0, 1), apply(1, 1))
    # The same subspace serves every matrix regardless of how the batch is split.
    torch.testing.assert_close(apply(0, 1)[:1], Intervention("random_rank_k", k=2, draw=1)
                               .apply(X[:1], eval_seed=0))


@pytest.mark.parametrize("name", ["svd_rank_k", "random_rank_k"])
def test_norm_matched_keeps_frobenius_norm_and_direction(name):
    X = batch(4)
    extra = {"draw": 0} if name == "random_rank_k" else {}
    plain = Intervention(name, k=1, **extra).apply(X, eval_seed=0).double()
    matched = Intervention(name, k=1, norm_matched=True, **extra).apply(X, eval_seed=0).double()
    norms = torch.linalg.matrix_norm(X.double())
    torch.testing.assert_close(torch.linalg.matrix_norm(matched), norms, rtol=1e-5, atol=1e-6)
    cosine = (plain * matched).sum((-2, -1)) / (
        torch.linalg.matrix_norm(plain) * torch.linalg.matrix_norm(matched))
    torch.testing.assert_close(cosine, torch.ones_like(cosine), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("name", ["svd_rank_k", "random_rank_k"])
def test_k_at_least_d_returns_the_input_itself(name):
    X = batch()
    extra = {"draw": 0} if name == "random_rank_k" else {}
    assert Intervention(name, k=D, **extra).apply(X, eval_seed=0) is X
    assert Intervention(name, k=D + 3, norm_matched=True, **extra).apply(X, eval_seed=0) is X


def test_k_below_one_is_an_error():
    with pytest.raises(AblateError, match="k must be"):
        Intervention("svd_rank_k", k=0)
    with pytest.raises(AblateError, match="k must be"):
        expand_conditions([{"name": "svd_rank_k", "k": [2, 0]}], d=D, n_layers=2)


def test_composition_applies_in_list_order_and_order_matters():
    X = batch(6)
    svd = Intervention("svd_rank_k", k=1)
    rand = Intervention("random_rank_k", k=2, draw=0)
    first = make_condition([svd, rand]).apply_at("head.hook_in", X, eval_seed=0)
    second = make_condition([rand, svd]).apply_at("head.hook_in", X, eval_seed=0)
    torch.testing.assert_close(first, rand.apply(svd.apply(X, 0), 0))
    torch.testing.assert_close(second, svd.apply(rand.apply(X, 0), 0))
    assert not torch.allclose(first, second, atol=1e-4)


def test_expand_conditions_labels_and_schema_fields():
    conditions = expand_conditions(
        [{"name": "svd_rank_k", "site": "head_input", "k": [1, 2]},
         {"name": "random_rank_k", "k": [1], "draws": 2},
         {"name": "svd_rank_k", "site": "head.hook_in", "k": 3, "norm_matched": True},
         {"name": "random_rank_k", "site": "iter.2.layer.1", "k": 2, "draw": [7], "side": "rows"}],
        d=D, n_layers=2)
    assert [c.label for c in conditions] == [
        "none",
        "svd_rank_k@head_input:k=1",
        "svd_rank_k@head_input:k=2",
        "random_rank_k@head_input:k=1:draw=0",
        "random_rank_k@head_input:k=1:draw=1",
        "svd_rank_k@head_input:k=3:norm_matched",
        "random_rank_k@iter.2.layer.1:k=2:draw=7:side=rows",
    ]
    assert conditions[0] is UNABLATED
    assert conditions[0].record_fields() == {"condition": "none", "intervention": "none",
                                             "site": "none", "k": None, "draw": None}
    assert conditions[4].record_fields() == {
        "condition": "random_rank_k@head_input:k=1:draw=1", "intervention": "random_rank_k",
        "site": "head_input", "k": 1, "draw": 1}
    assert conditions[5].intervention == "svd_rank_k:norm_matched"
    assert [c.after_backbone for c in conditions] == [True] * 6 + [False]
    without = expand_conditions([{"name": "svd_rank_k", "k": 1}], d=D, n_layers=2,
                                include_unablated=False)
    assert [c.label for c in without] == ["svd_rank_k@head_input:k=1"]


def test_composed_table_expands_as_a_product_in_order():
    conditions = expand_conditions(
        [{"compose": [{"name": "svd_rank_k", "site": "embed", "k": [1, 2]},
                      {"name": "random_rank_k", "site": "iter.1", "k": 2}]}],
        d=D, n_layers=2, include_unablated=False)
    assert [c.label for c in conditions] == [
        "svd_rank_k@embed:k=1+random_rank_k@iter.1:k=2:draw=0",
        "svd_rank_k@embed:k=2+random_rank_k@iter.1:k=2:draw=0",
    ]
    assert conditions[0].intervention == "svd_rank_k+random_rank_k"
    assert conditions[0].site == "embed+iter.1"
    assert conditions[0].k is None and conditions[1].k == 2


def test_identity_is_flagged_and_logged(caplog):
    with caplog.at_level(logging.INFO, logger="ablate.interventions"):
        conditions = expand_conditions([{"name": "svd_rank_k", "k": [2, D, 2 * D]}], d=D,
                                       n_layers=2)
    assert [c.identity for c in conditions] == [True, False, True, True]
    assert "svd_rank_k@head_input:k=8 is the identity" in caplog.text


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ([{"name": "svd_rank"}], "Unknown intervention 'svd_rank'. Did you mean 'svd_rank_k'"),
        ([{"name": "svd_rank_k", "k": 1, "draws": 2}], "unknown key"),
        ([{"name": "svd_rank_k"}], "needs k"),
        ([{"name": "svd_rank_k", "k": 1, "site": "nowhere"}], "Unknown hook site"),
        ([{"name": "svd_rank_k", "k": 1, "site": "iter.1.layer.5"}], "layer 5"),
        ([{"name": "svd_rank_k", "k": 1}, {"name": "svd_rank_k", "k": 1}], "listed twice"),
        ([{"name": "random_rank_k", "k": 1, "side": "diag"}], "side must be"),
        ([{"name": "random_rank_k", "k": 1, "draws": 2, "draw": 1}], "not both"),
        ([{"name": "svd_rank_k", "k": 1, "norm_matched": "yes"}], "true or false"),
        ({"name": "svd_rank_k"}, "list of tables"),
        ([{"compose": [{"name": "svd_rank_k", "site": "iter.*", "k": 1},
                       {"name": "svd_rank_k", "site": "iter.2", "k": 2}]}], "overlapping"),
    ],
)
def test_bad_specs_are_clear_errors(spec, message):
    with pytest.raises(AblateError, match=message):
        expand_conditions(spec, d=D, n_layers=2)


def test_unknown_name_lists_available_names():
    with pytest.raises(AblateError) as error:
        expand_conditions([{"name": "zap"}], d=D, n_layers=2)
    assert "Available: " + ", ".join(available_interventions()) in str(error.value)


def test_validate_checks_sites_fire_without_a_model():
    spec = [{"name": "svd_rank_k", "site": "iter.5", "k": 1}]
    assert [c.label for c in validate_conditions(spec)] == ["none", "svd_rank_k@iter.5:k=1"]
    with pytest.raises(AblateError, match="never fires"):
        validate_conditions(spec, n_layers=2, n_iterations=3)
    # Without n_layers, a named layer is assumed to exist (only iterations are checked).
    layered = [{"name": "svd_rank_k", "site": "iter.2.layer.3", "k": 1}]
    assert len(validate_conditions(layered, n_iterations=2)) == 2
    with pytest.raises(AblateError, match="never fires"):
        validate_conditions(layered, n_iterations=1)


@torch.no_grad()
def test_hook_equals_manual_head_input_projection(model, ids):
    # Hooked logits = head(best rank-2 approximation of the unhooked head input).
    condition = expand_conditions([{"name": "svd_rank_k", "k": 2}], d=D, n_layers=2)[1]
    Y = model(ids, 3, return_states=True, head=False).states[-1]
    with model.hooks(condition.hooks(eval_seed=0)):
        hooked = model(ids, 3).logits
    Y64 = Y.double().numpy()
    U, s, Vt = np.linalg.svd(Y64)
    best = torch.from_numpy((U[..., :2] * s[..., None, :2]) @ Vt[..., :2, :]).float()
    torch.testing.assert_close(hooked, model.head(best), atol=1e-4, rtol=1e-4)


@torch.no_grad()
def test_identity_condition_leaves_logits_bit_identical(model, ids):
    condition = expand_conditions([{"name": "random_rank_k", "k": D, "site": "iter.*"}], d=D,
                                  n_layers=2)[1]
    with model.hooks(condition.hooks(eval_seed=0)):
        hooked = model(ids, 3).logits
    assert torch.equal(hooked, model(ids, 3).logits)


@torch.no_grad()
def test_low_rank_starting_embeddings(model, ids):
    # site embed: every starting matrix M(0) has rank <= k; later states are changed.
    condition = expand_conditions([{"name": "svd_rank_k", "site": "embed", "k": 1},
                                   ], d=D, n_layers=2)[1]
    embedding = model.config.embedding
    assert embedding == "outer"  # M(0) = u v^T + 0.1 p q^T has rank <= 2 before the ablation
    with model.hooks(condition.hooks(eval_seed=0)):
        states = model(ids, 2, return_states=True).states
    for matrix in states[0].reshape(-1, D, D).double().numpy():
        assert numpy_rank(matrix) <= 1
    assert not torch.allclose(states[2], model(ids, 2, return_states=True).states[2])


@pytest.fixture
def registered():
    """Register kinds for one test only; they are removed afterwards."""
    names: list[str] = []

    def register(name: str, params, **options):
        def project(intervention, X, eval_seed, basis):
            scale = intervention.settings.get("scale", 0.0)
            return X * scale
        register_intervention(name, f"test kind {name}", params, **options)(project)
        names.append(name)

    yield register
    for name in names:
        unregister_intervention(name)


def test_a_kind_declares_its_own_parameters_and_their_expansion(registered):
    # A kind without k, with a float grid axis and a string setting, is registered in one
    # place and expanded, labelled and recorded from its declaration alone.
    registered("scaled", (Param("scale", float, grid=True, minimum=0.0),
                          Param("mode", str, default="all", choices=("all", "diag"))))
    registered("zeroed", ())
    conditions = expand_conditions(
        [{"name": "scaled", "scale": [0.0, 0.5]}, {"name": "scaled", "scale": 1, "mode": "diag"},
         {"name": "zeroed", "site": "iter.1"}], d=D, n_layers=2, include_unablated=False)
    assert [c.label for c in conditions] == [
        "scaled@head_input:scale=0.0", "scaled@head_input:scale=0.5",
        "scaled@head_input:scale=1:mode=diag", "zeroed@iter.1"]
    assert conditions[1].record_fields() == {
        "condition": "scaled@head_input:scale=0.5", "intervention": "scaled:scale=0.5",
        "site": "head_input", "k": None, "draw": None}
    assert conditions[2].intervention == "scaled:scale=1:mode=diag"
    assert not any(c.identity for c in conditions)
    X = batch()
    torch.testing.assert_close(conditions[1].apply_at("head.hook_in", X, 0), 0.5 * X)
    with pytest.raises(AblateError, match="'scaled' needs scale"):
        expand_conditions([{"name": "scaled"}], d=D, n_layers=2)
    with pytest.raises(AblateError, match="mode must be one of all, diag"):
        expand_conditions([{"name": "scaled", "scale": 1.0, "mode": "rows"}], d=D, n_layers=2)
    with pytest.raises(AblateError, match="unknown key.*Allowed: name, site$"):
        expand_conditions([{"name": "zeroed", "k": 1}], d=D, n_layers=2)


def test_roles_are_declared_at_registration(registered):
    # The built-in pair: svd_rank_k is an ablation, random_rank_k its control matched on k.
    svd, rand = get_intervention("svd_rank_k"), get_intervention("random_rank_k")
    assert svd.role.name == "ablation" and svd.role.of is None
    assert (rand.role.name, rand.role.of, rand.role.matched_on) == ("control", "svd_rank_k",
                                                                    ("k",))
    assert arm_kind("random_rank_k:side=rows") == (rand, {"side": "rows", "norm_matched": False})
    assert arm_kind("svd_rank_k+random_rank_k") is None and arm_kind("none") is None
    with pytest.raises(ValueError, match="not a registered ablation"):
        registered("orphan", (), role=control_of("no_such_kind", matched_on=()))
    with pytest.raises(ValueError, match="must both take"):
        registered("unmatched", (), role=control_of("svd_rank_k", matched_on=("k",)))


def test_keep_k_leaves_out_the_k_a_checkpoint_of_size_d_does_not_admit():
    # One k ladder for checkpoints of several d: "<= d" keeps k = d (the identity),
    # "< d" leaves it out too; without keep_k every k stays (and check refuses k > d).
    ladder = {"name": "svd_rank_k", "k": [1, 4, 8]}
    labels = lambda spec, d: [c.label for c in expand_conditions(  # noqa: E731
        [spec], d=d, n_layers=2, include_unablated=False)]
    assert labels({**ladder, "keep_k": "<= d"}, 4) == ["svd_rank_k@head_input:k=1",
                                                       "svd_rank_k@head_input:k=4"]
    assert labels({**ladder, "keep_k": "< d"}, 4) == ["svd_rank_k@head_input:k=1"]
    assert len(labels({**ladder, "keep_k": "< d"}, 16)) == 3
    assert len(labels(ladder, 4)) == 3
    with pytest.raises(AblateError, match="keep_k must be one of '<= d', '< d'"):
        expand_conditions([{**ladder, "keep_k": "d"}], d=4, n_layers=2)


def test_latent_sites_have_canonical_labels_and_fire_in_codi_models_only():
    conditions = expand_conditions(
        [{"name": "svd_rank_k", "site": "latent", "k": 1},
         {"name": "svd_rank_k", "site": "latent.2", "k": 1}], d=D, n_layers=2)
    assert [c.label for c in conditions] == ["none", "svd_rank_k@latent:k=1",
                                             "svd_rank_k@latent.2:k=1"]
    assert conditions[1].hooks(0).keys() == {"latent.*"}
    with pytest.raises(AblateError, match="latent thought of a CODI model"):
        check_sites_fire(conditions, n_iterations=2, n_layers=2)
