"""The OpenOOD-v1.5 post-hoc scores (vim, ash, scale, gen, fdbd, nnguide, klm, dice, rmds, she,
nci, temp_scaling), each against an independent numpy computation written from the paper's
formula and the official code, with ties, dead units, a head with a bias, fewer training
samples than feature dimensions and tiny inputs."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.optimize
import scipy.stats
import torch
from scipy.special import logsumexp, softmax
from sklearn.covariance import EmpiricalCovariance
from torch import nn

from oodlab.errors import ConfigError
from oodlab.scores import SCORES, Outputs, create_score

NEW_SCORES = (
    "vim",
    "ash",
    "scale",
    "gen",
    "fdbd",
    "nnguide",
    "klm",
    "dice",
    "rmds",
    "she",
    "nci",
    "temp_scaling",
)


class Net(nn.Module):
    """Just a head, as evaluation's ScoringModel exposes it."""

    head: nn.Module

    def __init__(self, head: nn.Module):
        super().__init__()
        self.head = head


class DistanceHead(nn.Module):
    """A head that is not one linear map: minus the distances to prototypes (IsoMax-like)."""

    def __init__(self, d: int, k: int):
        super().__init__()
        self.prototypes = nn.Parameter(torch.randn(k, d))

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return -torch.cdist(h, self.prototypes)


def make_data(
    d: int = 8,
    k: int = 4,
    n_train: int = 200,
    n_test: int = 30,
    seed: int = 0,
    dead: tuple[int, ...] = (),
):
    """A linear head with a bias, non-negative (ReLU) features, labels, and logits = head(h)."""
    rng = np.random.default_rng(seed)
    torch.manual_seed(seed)
    head = nn.Linear(d, k)
    with torch.no_grad():
        head.weight.copy_(torch.from_numpy(rng.normal(size=(k, d))))
        head.bias.copy_(torch.from_numpy(rng.normal(size=k) * 0.5))
    model = Net(head).eval()

    def outputs(n: int, shift: float) -> Outputs:
        h = np.maximum(rng.normal(size=(n, d)) + shift, 0.0).astype(np.float32)
        h[:, list(dead)] = 0.0
        features = torch.from_numpy(h)
        with torch.no_grad():
            logits = head(features)
        return Outputs(logits, features, torch.from_numpy(rng.integers(0, k, n)))

    return model, outputs(n_train, 0.5), outputs(n_test, 0.2)


def weights(model: Net) -> tuple[np.ndarray, np.ndarray]:
    fc = model.head
    return fc.weight.detach().double().numpy(), fc.bias.detach().double().numpy()


def np64(t: torch.Tensor) -> np.ndarray:
    return t.double().numpy()


def fitted(name: str, model, train: Outputs | None = None, val: Outputs | None = None, **hp):
    score = create_score(name, **hp)
    extra = {"val": val} if score.needs_val else {}
    score.fit(train if score.needs_train else None, model, **extra)
    return score


def close(got: torch.Tensor, want: np.ndarray, rtol: float = 1e-5, atol: float = 1e-6) -> None:
    np.testing.assert_allclose(got.double().numpy(), want, rtol=rtol, atol=atol)


# -- what each score declares --------------------------------------------------------------
def test_every_new_score_is_registered_with_its_needs():
    assert set(NEW_SCORES) <= set(SCORES.names())
    needs = {
        name: (
            SCORES[name].needs_train,
            SCORES[name].needs_val,
            SCORES[name].needs_features,
            SCORES[name].needs_head,
            SCORES[name].needs_model,
        )
        for name in NEW_SCORES
    }
    #            train  val    feats  head   model
    assert needs == {
        "vim": (True, False, True, True, False),
        "ash": (False, False, True, True, False),
        "scale": (False, False, True, True, False),
        "gen": (False, False, False, False, False),
        "fdbd": (True, False, True, True, False),
        "nnguide": (True, False, True, False, False),
        "klm": (False, True, False, False, False),
        "dice": (True, False, True, True, False),
        "rmds": (True, False, True, False, False),
        "she": (True, False, True, False, False),
        "nci": (True, False, True, True, False),
        "temp_scaling": (False, True, False, False, False),
    }


def test_published_defaults_and_openood_grids():
    defaults = {name: create_score(name).hparams() for name in NEW_SCORES}
    assert defaults == {
        "vim": {"dim": None},
        "ash": {"percentile": 90.0, "variant": "b"},
        "scale": {"percentile": 85.0},
        "gen": {"gamma": 0.1, "M": 100},
        "fdbd": {"distance_as_normalizer": True},
        "nnguide": {"K": 10, "alpha": 0.01},
        "klm": {},
        "dice": {"p": 90.0},
        "rmds": {},
        "she": {"metric": "inner_product"},
        "nci": {"alpha": 0.0001},
        "temp_scaling": {},
    }
    grids = {name: {k: hp.grid for k, hp in SCORES[name].spec.items()} for name in NEW_SCORES}
    assert grids["vim"] == {"dim": (256, 1000)}
    assert grids["ash"] == {"percentile": (65, 70, 75, 80, 85, 90, 95), "variant": ("b",)}
    assert grids["scale"] == {"percentile": (65, 70, 75, 80, 85, 90, 95)}
    assert grids["gen"] == {
        "gamma": (0.01, 0.1, 0.5, 1, 2, 5, 10),
        "M": (10, 50, 100, 200, 500, 1000),
    }
    assert grids["fdbd"] == {"distance_as_normalizer": (True, False)}
    assert grids["nnguide"] == {"K": (100,), "alpha": (0.01,)}
    assert grids["dice"] == {"p": (90,)}
    assert grids["she"] == {"metric": ("inner_product",)}
    assert grids["nci"] == {"alpha": (0.0001, 0.001, 0.01, 0.1)}


@pytest.mark.parametrize(
    ("name", "params", "key"),
    [
        ("ash", {"variant": "x"}, "eval.params.ash.variant"),
        ("ash", {"percentile": 0}, "eval.params.ash.percentile"),
        ("vim", {"dim": 0}, "eval.params.vim.dim"),
        ("gen", {"gamma": -1}, "eval.params.gen.gamma"),
        ("gen", {"M": 2.5}, "eval.params.gen.M"),
        ("fdbd", {"distance_as_normalizer": 1}, "eval.params.fdbd.distance_as_normalizer"),
        ("nnguide", {"alpha": 0}, "eval.params.nnguide.alpha"),
        ("nnguide", {"alpha": 1.5}, "eval.params.nnguide.alpha"),
        ("she", {"metric": "l1"}, "eval.params.she.metric"),
        ("nci", {"alpha": -0.1}, "eval.params.nci.alpha"),
        ("dice", {"p": 101}, "eval.params.dice.p"),
    ],
)
def test_bad_hyperparameters_name_the_key(name, params, key):
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        create_score(name, **params)


# -- ViM -----------------------------------------------------------------------------------
def vim_reference(train: Outputs, test: Outputs, w, b, dim: int) -> np.ndarray:
    """haoqiwang/vim benchmark.py, written out in numpy."""
    x = np64(train.features)
    u = -np.linalg.pinv(w) @ b
    cov = EmpiricalCovariance(assume_centered=True).fit(x - u).covariance_
    values, vectors = np.linalg.eigh(cov)
    residual = vectors[:, np.argsort(-values)[dim:]]
    alpha = np64(train.logits).max(1).mean() / np.linalg.norm((x - u) @ residual, axis=1).mean()
    v = np.linalg.norm((np64(test.features) - u) @ residual, axis=1) * alpha
    return logsumexp(np64(test.logits), axis=1) - v


@pytest.mark.parametrize(
    ("dim", "n_train", "dead"), [(3, 200, ()), (4, 200, (1, 6)), (3, 5, ()), (None, 200, (2,))]
)
def test_vim_matches_the_official_computation(dim, n_train, dead):
    # (3, 5): fewer training samples than dimensions, a singular covariance; dead units give
    # zero eigenvalues, all inside the residual space (so its basis does not matter)
    model, train, test = make_data(n_train=n_train, dead=dead)
    w, b = weights(model)
    score = fitted("vim", model, train, dim=dim)
    close(score.score(test), vim_reference(train, test, w, b, 4 if dim is None else dim), 1e-4)


def test_vim_official_dimension_rule_and_no_residual_space():
    from oodlab.scores.vim import official_dim

    assert [official_dim(d) for d in (4096, 2048, 2047, 768, 767, 512, 8)] == [
        1000,
        1000,
        512,
        512,
        383,
        256,
        4,
    ]
    model, train, test = make_data()
    # OpenOOD's dim=1000 on 8-dimensional features: no residual, the score is the energy
    score = fitted("vim", model, train, dim=1000)
    close(score.score(test), logsumexp(np64(test.logits), axis=1))


# -- ASH and SCALE ---------------------------------------------------------------------------
def kept(row: np.ndarray, percentile: float) -> np.ndarray:
    """The indices of the n - round(n p / 100) largest entries; ties by lower index."""
    k = len(row) - int(np.round(len(row) * percentile / 100))
    return np.argsort(-row, kind="stable")[:k]


def ash_reference(features: np.ndarray, percentile: float, variant: str) -> np.ndarray:
    out = np.zeros_like(features)
    for i, row in enumerate(features):
        idx = kept(row, percentile)
        if variant == "p":
            out[i, idx] = row[idx]
        elif variant == "b":
            out[i, idx] = row.sum() / len(idx)
        else:
            s1, s2 = row.sum(), row[idx].sum()
            out[i, idx] = row[idx] * np.exp(s1 / s2)
    return out


def scale_reference(features: np.ndarray, percentile: float) -> np.ndarray:
    out = np.zeros_like(features)
    for i, row in enumerate(features):
        out[i] = row * np.exp(row.sum() / row[kept(row, percentile)].sum())
    return out


@pytest.mark.parametrize("variant", ["s", "b", "p"])
@pytest.mark.parametrize("pct", [65.0, 90.0])
def test_ash_matches_a_loop_over_samples(variant, pct):
    model, _, test = make_data(d=20, dead=(0, 7))
    w, b = weights(model)
    shaped = ash_reference(np64(test.features), pct, variant)
    got = fitted("ash", model, percentile=pct, variant=variant).score(test)
    close(got, logsumexp(shaped @ w.T + b, axis=1), 1e-5)


def test_ash_breaks_ties_by_unit_order():
    # n=10, p=70: k=3. Row 0 keeps units 5, 0 and the first zero, unit 1: ASH-B fills all
    # three with s1 / k = 1
    features = torch.tensor(
        [[1.0, 0, 0, 0, 0, 2.0, 0, 0, 0, 0], [3.0, 3.0, 3.0, 3.0, 1, 1, 1, 1, 1, 1]]
    )
    from oodlab.scores.ash import ash

    shaped = ash(features, 70.0, "b").numpy()
    np.testing.assert_allclose(shaped[0], [1, 1, 0, 0, 0, 1, 0, 0, 0, 0])
    np.testing.assert_allclose(shaped[1], [6, 6, 6, 0, 0, 0, 0, 0, 0, 0])
    np.testing.assert_allclose(shaped, ash_reference(features.double().numpy(), 70.0, "b"))
    # n=10, p=65: round(6.5) = 6 (half to even, as np.round), so 4 units are kept
    assert (ash(features, 65.0, "p")[1] != 0).sum() == 4
    # an all-zero row stays zero under ASH-S (the official code: 0/0 = NaN)
    assert torch.equal(ash(torch.zeros(1, 10), 90.0, "s"), torch.zeros(1, 10, dtype=torch.float64))


@pytest.mark.parametrize("pct", [65.0, 85.0, 95.0])
def test_scale_matches_a_loop_over_samples(pct):
    model, _, test = make_data(d=20, dead=(3,))
    w, b = weights(model)
    shaped = scale_reference(np64(test.features), pct)
    close(fitted("scale", model, percentile=pct).score(test), logsumexp(shaped @ w.T + b, 1))


def test_ash_and_scale_work_on_any_head():
    # they re-run the head on shaped features: a head that is not linear works too
    torch.manual_seed(0)
    head = DistanceHead(8, 4).eval()
    features = torch.rand(5, 8)
    out = Outputs(head(features).detach(), features, torch.zeros(5, dtype=torch.long))
    for name in ("ash", "scale"):
        values = fitted(name, Net(head)).score(out)
        assert values.shape == (5,) and torch.isfinite(values).all()


# -- GEN -----------------------------------------------------------------------------------
@pytest.mark.parametrize(("gamma", "m"), [(0.1, 100), (0.5, 2), (2.0, 3), (10.0, 1)])
def test_gen_matches_the_official_formula(gamma, m):
    _, _, test = make_data(k=4)
    p = softmax(np64(test.logits), axis=1)
    top = np.sort(p, axis=1)[:, -m:]
    want = -np.sum(top**gamma * (1 - top) ** gamma, axis=1)
    close(create_score("gen", gamma=gamma, M=m).score(test), want)
    # a confident sample scores above a flat one
    out = Outputs(
        torch.tensor([[9.0, 0, 0, 0], [0.1, 0, 0.1, 0]]), torch.zeros(2, 1), torch.zeros(2)
    )
    values = create_score("gen", gamma=gamma, M=m).score(out)
    assert values[0] > values[1]


# -- fDBD ----------------------------------------------------------------------------------
def fdbd_reference(train: Outputs, test: Outputs, w, by_distance: bool) -> np.ndarray:
    mean = np64(train.features).mean(0)
    f, h = np64(test.logits), np64(test.features)
    scores = []
    for fi, hi in zip(f, h):
        c = int(np.argmax(fi))
        total = sum(
            abs(fi[c] - fi[j]) / np.linalg.norm(w[c] - w[j]) for j in range(len(fi)) if j != c
        )
        scores.append(total / np.linalg.norm(hi - mean if by_distance else hi))
    return np.array(scores)


@pytest.mark.parametrize("by_distance", [True, False])
def test_fdbd_matches_a_loop_over_samples_and_classes(by_distance):
    model, train, test = make_data(dead=(2,))
    w, _ = weights(model)
    score = fitted("fdbd", model, train, distance_as_normalizer=by_distance)
    close(score.score(test), fdbd_reference(train, test, w, by_distance), 1e-5)


def test_fdbd_skips_a_boundary_between_identical_weight_rows():
    model, train, test = make_data()
    with torch.no_grad():
        model.head.weight[3] = model.head.weight[2]
        logits = model.head(test.features)
    test = Outputs(logits, test.features, test.labels)
    w, _ = weights(model)
    values = fitted("fdbd", model, train).score(test)
    assert torch.isfinite(values).all()
    mean = np64(train.features).mean(0)
    f = np64(logits)
    want = []
    for fi in f:
        c = int(np.argmax(fi))
        pairs = [j for j in range(4) if j != c and not np.allclose(w[c], w[j])]
        want.append(sum(abs(fi[c] - fi[j]) / np.linalg.norm(w[c] - w[j]) for j in pairs))
    close(values, np.array(want) / np.linalg.norm(np64(test.features) - mean, axis=1), 1e-5)


# -- NNGuide -------------------------------------------------------------------------------
def unit(a: np.ndarray) -> np.ndarray:
    return a / np.maximum(np.linalg.norm(a, axis=1, keepdims=True), 1e-12)


@pytest.mark.parametrize("k", [1, 5])
def test_nnguide_with_the_whole_training_split_as_bank(k):
    model, train, test = make_data(dead=(0,))
    bank = unit(np64(train.features)) * logsumexp(np64(train.logits), axis=1)[:, None]
    similarity = unit(np64(test.features)) @ bank.T
    guidance = -np.sort(-similarity, axis=1)[:, :k].mean(1)
    want = logsumexp(np64(test.logits), axis=1) * guidance
    close(fitted("nnguide", model, train, K=k, alpha=1.0).score(test), want, 1e-5)


def test_nnguide_bank_is_a_seeded_subset_of_at_least_k_samples():
    model, train, test = make_data(n_train=500)
    full = unit(np64(train.features)) * logsumexp(np64(train.logits), axis=1)[:, None]
    a = fitted("nnguide", model, train, K=10, alpha=0.1)
    assert len(a.bank) == 50
    b = fitted("nnguide", model, train, K=10, alpha=0.1)
    assert torch.equal(a.bank, b.bank) and torch.equal(a.score(test), b.score(test))
    # every bank row is a training row
    distances = np.abs(a.bank.numpy()[:, None, :] - full[None]).max(axis=2).min(axis=1)
    assert distances.max() < 1e-9
    # int(0.01 * 500) = 5 < K = 10: the bank holds K samples
    assert len(fitted("nnguide", model, train, K=10, alpha=0.01).bank) == 10
    with pytest.raises(ConfigError, match=r"eval\.params\.nnguide\.K"):
        fitted("nnguide", model, train, K=501)


# -- KL matching ---------------------------------------------------------------------------
def test_klm_matches_scipy_with_openood_templates():
    model, _, val = make_data(n_test=60, seed=1)
    _, _, test = make_data(seed=2)
    # class 3 is never predicted on val: no template (OpenOOD: one-hot, an infinite KL)
    val = Outputs(val.logits - torch.tensor([0, 0, 0, 50.0]), val.features, val.labels)
    p_val = softmax(np64(val.logits), axis=1)
    predicted = p_val.argmax(1)
    assert 3 not in predicted
    templates = [
        p_val[predicted == c].mean(0) if (predicted == c).any() else np.eye(4)[c] for c in range(4)
    ]
    p = softmax(np64(test.logits), axis=1)
    want = -np.array([min(scipy.stats.entropy(pi, d) for d in templates) for pi in p])
    close(fitted("klm", model, val=val).score(test), want, 1e-6, 1e-9)


def test_klm_and_temp_scaling_need_the_validation_split():
    model, _, _ = make_data()
    for name in ("klm", "temp_scaling"):
        with pytest.raises(ValueError, match="validation split"):
            create_score(name).fit(None, model, val=None)


# -- DICE ----------------------------------------------------------------------------------
@pytest.mark.parametrize(("p", "dead"), [(90.0, ()), (50.0, (1, 4)), (70.0, (0,))])
def test_dice_matches_the_official_masking(p, dead):
    model, train, test = make_data(dead=dead)
    w, b = weights(model)
    contribution = np64(train.features).mean(0)[None, :] * w
    mask = contribution > np.percentile(contribution, p)
    want = logsumexp(np64(test.features) @ (w * mask).T + b, axis=1)
    close(fitted("dice", model, train, p=p).score(test), want, 1e-5)


def test_linear_scores_refuse_a_head_that_is_not_linear():
    torch.manual_seed(0)
    head = DistanceHead(8, 4)
    _, train, _ = make_data()
    for name in ("vim", "dice", "fdbd", "nci"):
        with pytest.raises(ConfigError, match=r"nn\.Linear"):
            fitted(name, Net(head), train)


# -- RMDS ----------------------------------------------------------------------------------
def rmds_reference(train: Outputs, test: Outputs) -> np.ndarray:
    x, y = np64(train.features), train.labels.numpy()
    classes = np.unique(y)
    means = np.stack([x[y == c].mean(0) for c in classes])
    centred = np.concatenate([x[y == c] - means[i] for i, c in enumerate(classes)])
    precision = EmpiricalCovariance(assume_centered=False).fit(centred).precision_
    mean0 = x.mean(0)
    precision0 = EmpiricalCovariance(assume_centered=False).fit(x - mean0).precision_
    t = np64(test.features)
    background = np.einsum("nd,de,ne->n", t - mean0, precision0, t - mean0)
    per_class = np.stack(
        [-np.einsum("nd,de,ne->n", t - m, precision, t - m) + background for m in means], axis=1
    )
    return per_class.max(1)


@pytest.mark.parametrize(("n_train", "dead"), [(200, ()), (200, (2, 5)), (6, ())])
def test_rmds_matches_sklearn_covariances(n_train, dead):
    # (6, ()): fewer training samples than the 8 dimensions
    model, train, test = make_data(n_train=n_train, dead=dead)
    close(fitted("rmds", model, train).score(test), rmds_reference(train, test), 1e-4, 1e-5)


# -- SHE -----------------------------------------------------------------------------------
@pytest.mark.parametrize("metric", ["inner_product", "euclidean", "cosine"])
def test_she_matches_a_loop_with_correct_training_patterns(metric):
    model, train, test = make_data(dead=(1,))
    x, y = np64(train.features), train.labels.numpy()
    predicted = np64(train.logits).argmax(1)
    patterns = []
    for c in range(4):
        rows = x[(y == c) & (predicted == c)]
        patterns.append(rows.mean(0) if len(rows) else np.zeros(x.shape[1]))
    want = []
    for h, f in zip(np64(test.features), np64(test.logits)):
        m = patterns[int(np.argmax(f))]
        if metric == "inner_product":
            want.append(h @ m)
        elif metric == "euclidean":
            want.append(-np.linalg.norm(h - m))
        else:
            want.append(h @ m / max(np.linalg.norm(h) * np.linalg.norm(m), 1e-8))
    close(fitted("she", model, train, metric=metric).score(test), np.array(want), 1e-5)


def test_she_class_without_a_correct_training_sample_has_a_zero_pattern():
    model, train, test = make_data()
    wrong = Outputs(train.logits, train.features, (train.logits.argmax(1) + 1) % 4)
    values = fitted("she", model, wrong).score(test)
    assert torch.equal(values, torch.zeros(len(test.features)))


# -- NCI -----------------------------------------------------------------------------------
@pytest.mark.parametrize("alpha", [0.0001, 0.1])
def test_nci_matches_the_official_formula(alpha):
    model, train, test = make_data(dead=(4,))
    w, _ = weights(model)
    mean = np64(train.features).mean(0)
    want = []
    for h, f in zip(np64(test.features), np64(test.logits)):
        c = int(np.argmax(f))
        want.append(w[c] @ (h - mean) / np.linalg.norm(h - mean) + alpha * np.abs(h).sum())
    close(fitted("nci", model, train, alpha=alpha).score(test), np.array(want), 1e-5)


# -- temperature scaling -------------------------------------------------------------------
def test_temp_scaling_is_msp_at_the_nll_minimising_temperature():
    model, _, val = make_data(n_test=300, seed=3)
    _, _, test = make_data(seed=4)
    # labels that agree with the prediction 70% of the time: a finite NLL-optimal T
    rng = np.random.default_rng(0)
    y = np.where(rng.random(300) < 0.7, np64(val.logits).argmax(1), rng.integers(0, 4, 300))
    f = np64(val.logits) * 3
    val = Outputs(val.logits * 3, val.features, torch.from_numpy(y))

    def nll(log_t: float) -> float:
        logp = f / np.exp(log_t) - logsumexp(f / np.exp(log_t), axis=1, keepdims=True)
        return -logp[np.arange(len(y)), y].mean()

    best = scipy.optimize.minimize_scalar(
        nll, bounds=(-5, 5), method="bounded", options={"xatol": 1e-9}
    )
    t = float(np.exp(best.x))
    score = fitted("temp_scaling", model, val=val)
    assert score.temperature == pytest.approx(t, rel=1e-4)
    close(score.score(test), softmax(np64(test.logits) / t, axis=1).max(1), 1e-4)
    unlabelled = Outputs(val.logits, val.features, torch.full((len(y),), -1))
    with pytest.raises(ValueError, match="labels"):
        fitted("temp_scaling", model, val=unlabelled)


# -- every new score on tiny inputs --------------------------------------------------------
@pytest.mark.parametrize("name", NEW_SCORES)
@pytest.mark.parametrize("n", [0, 1, 2])
def test_tiny_inputs(name, n):
    model, train, test = make_data(n_train=12)
    hp = {"K": 3} if name == "nnguide" else {}
    score = fitted(name, model, train, val=train, **hp)
    out = Outputs(test.logits[:n], test.features[:n], test.labels[:n])
    values = score.score(out)
    assert values.shape == (n,) and values.dtype == torch.float32
    assert torch.isfinite(values).all()
    # all-zero features (a dead sample) stay finite
    zeros = Outputs(model.head(torch.zeros(1, 8)).detach(), torch.zeros(1, 8), torch.zeros(1))
    assert torch.isfinite(score.score(zeros)).all()
