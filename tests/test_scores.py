"""Every post-hoc score against an independent computation on a tiny model: values, sign
(higher = more in-distribution) and the exact hyperparameters."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from omegaconf import OmegaConf
from scipy.special import logsumexp, softmax
from sklearn.covariance import EmpiricalCovariance
from sklearn.neighbors import NearestNeighbors
from torch import nn

from oodlab.errors import ConfigError, UnknownNameError
from oodlab.losses import CrossEntropyHead, DisMaxHead, IsoMaxHead, IsoMaxPlusHead, LogitNormHead
from oodlab.models.classifier import OODClassifier
from oodlab.scores import SCORES, Outputs, create_score

#: the scores of the published contract; the registry may hold more (a new score module is
#: covered by the generic tests below without an edit here)
PUBLISHED_SCORE_NAMES = {
    "msp",
    "maxlogit",
    "energy",
    "entropy",
    "odin",
    "gradnorm",
    "react",
    "mahalanobis",
    "knn",
    "es",
    "mds",
}
NAMES = SCORES.names()


class TinyBackbone(nn.Module):
    """Conv -> ReLU -> global average pool: (N, 1, 6, 6) images to (N, 5) features."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(1, 5, 3)
        self.num_features = 5

    def forward(self, x):
        return F.relu(self.conv(x)).mean(dim=(2, 3))


def tiny_model(head_cls=CrossEntropyHead, seed: int = 0, **head_kwargs) -> OODClassifier:
    torch.manual_seed(seed)
    return OODClassifier(TinyBackbone(), head_cls(5, 4, **head_kwargs)).eval()


def outputs_of(
    model: OODClassifier, x: torch.Tensor, labels: torch.Tensor | None = None
) -> Outputs:
    with torch.no_grad():
        logits, feats = model.forward_with_features(x)
    return Outputs(logits, feats, labels if labels is not None else torch.full((len(x),), -1))


def random_outputs(n: int = 40, k: int = 4, d: int = 6, seed: int = 0) -> Outputs:
    g = torch.Generator().manual_seed(seed)
    return Outputs(
        torch.randn(n, k, generator=g) * 3,
        torch.rand(n, d, generator=g),
        torch.randint(0, k, (n,), generator=g),
    )


def test_registry_has_the_contract_names_and_every_head_default():
    from oodlab.losses import LOSSES

    assert PUBLISHED_SCORE_NAMES | {"mmles"} <= set(SCORES.names())
    for head in LOSSES.values():
        assert head.default_score in SCORES
    with pytest.raises(UnknownNameError, match=r"Choices: .*odin"):
        create_score("odn")


# -- logit scores ----------------------------------------------------------------------------
def test_logit_scores_match_scipy():
    out = random_outputs()
    f = out.logits.double().numpy()
    p = softmax(f, axis=1)
    entropy = -(p * np.log(p)).sum(1)
    expected = {
        "msp": p.max(1),
        "maxlogit": f.max(1),
        "entropy": -entropy,
        "es": -entropy,
        "mds": f.max(1),
        "mmles": f.max(1) + f.mean(1) - entropy,
    }
    for name, want in expected.items():
        np.testing.assert_allclose(
            create_score(name).score(out).numpy(), want, rtol=1e-5, atol=1e-6, err_msg=name
        )
    for t in (1.0, 2.5):
        got = create_score("energy", temperature=t).score(out).numpy()
        np.testing.assert_allclose(
            got, t * logsumexp(f / t, axis=1), rtol=1e-5, err_msg=f"energy T={t}"
        )


@pytest.mark.parametrize("name", ["msp", "maxlogit", "energy", "entropy", "es", "mds", "mmles"])
def test_logit_scores_rank_a_confident_sample_above_a_flat_one(name):
    logits = torch.tensor([[8.0, 0.0, 0.0, 0.0], [0.5, 0.4, 0.5, 0.4]])
    scores = create_score(name).score(Outputs(logits, torch.zeros(2, 1), torch.zeros(2)))
    assert scores[0] > scores[1]


def test_entropic_scores_never_nan():
    # the official IsoMax/DisMax formula sum(p * log p) gives NaN once a probability underflows
    logits = torch.tensor([[1000.0, -1000.0, 0.0], [0.0, float("-inf"), 1.0], [-5e4, 5e4, 0.0]])
    p = logits.softmax(1)
    assert torch.isnan((p * p.log()).sum(1)).any()
    out = Outputs(logits, torch.zeros(3, 1), torch.zeros(3))
    for name in ("es", "entropy", "mmles"):
        values = create_score(name).score(out)
        assert torch.isfinite(values[[0, 2]]).all(), name
        assert not torch.isnan(values).any(), name
    np.testing.assert_allclose(create_score("es").score(out)[[0, 2]].numpy(), [0.0, 0.0], atol=1e-6)


# -- ODIN ----------------------------------------------------------------------------------
def odin_reference(model, x, std, temperature, epsilon):
    """The official ODIN loop (facebookresearch/odin, LogitNorm repo), one sample at a time."""
    scores = []
    for i in range(len(x)):
        inputs = x[i : i + 1].clone().requires_grad_(True)
        outputs = model(inputs)
        labels = outputs.detach().argmax(1)
        loss = nn.CrossEntropyLoss()(outputs / temperature, labels)
        loss.backward()
        gradient = (torch.ge(inputs.grad, 0).float() - 0.5) * 2
        gradient = gradient / std
        perturbed = inputs.detach() - epsilon * gradient
        with torch.no_grad():
            scores.append(F.softmax(model(perturbed) / temperature, dim=1).max(1).values)
    return torch.cat(scores)


@pytest.mark.parametrize(("temperature", "epsilon"), [(1.0, 0.0), (10.0, 0.01), (1000.0, 0.05)])
def test_odin_matches_the_official_loop(temperature, epsilon):
    model = tiny_model()
    x = torch.randn(12, 1, 6, 6)
    std = torch.tensor([0.5]).view(1, 1, 1, 1)
    score = create_score("odin", temperature=temperature, epsilon=epsilon)
    got = score.score_inputs(model, x, std)
    want = odin_reference(model, x, std, temperature, epsilon)
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-7)


def test_odin_perturbation_raises_the_softmax_score_and_divides_by_std():
    model = tiny_model()
    x = torch.randn(30, 1, 6, 6)
    std = torch.tensor([0.25]).view(1, 1, 1, 1)
    clean = create_score("odin", temperature=10.0, epsilon=0.0).score_inputs(model, x, std)
    nudged = create_score("odin", temperature=10.0, epsilon=1e-4).score_inputs(model, x, std)
    assert (nudged > clean).all()
    # epsilon is in pixel units: the same step on a model whose inputs have std 1 is 4x smaller
    wide = create_score("odin", temperature=10.0, epsilon=4e-4).score_inputs(
        model, x, torch.ones(1, 1, 1, 1)
    )
    torch.testing.assert_close(wide, nudged, rtol=1e-5, atol=1e-7)


def test_odin_grid_shares_passes_but_equals_single_settings():
    model = tiny_model()
    x = torch.randn(10, 1, 6, 6)
    std = torch.ones(1, 1, 1, 1)
    settings = [{"temperature": t, "epsilon": e} for t in (1.0, 100.0) for e in (0.0, 0.002, 0.05)]
    grid = SCORES.get("odin").score_inputs_grid(model, x, std, settings)
    for setting, values in zip(settings, grid):
        torch.testing.assert_close(
            values, create_score("odin", **setting).score_inputs(model, x, std)
        )
    assert create_score("odin").hparams() == {"temperature": 1000.0, "epsilon": 0.0014}


# -- GradNorm ------------------------------------------------------------------------------
def gradnorm_reference(head: nn.Module, features: torch.Tensor, temperature: float) -> torch.Tensor:
    """KL(u || softmax(head(h)/T)) backpropagated one sample at a time; L1 norm of the head's
    non-bias parameter gradients."""
    values = []
    for h in features:
        head.zero_grad()
        logits = head(h[None]) / temperature
        k = logits.shape[1]
        uniform = torch.full_like(logits, 1.0 / k)
        F.kl_div(logits.log_softmax(1), uniform, reduction="sum").backward()
        values.append(
            sum(p.grad.abs().sum() for n, p in head.named_parameters() if "bias" not in n)
        )
    head.zero_grad()
    return torch.stack(values).detach()


@pytest.mark.parametrize("temperature", [1.0, 3.0])
def test_gradnorm_linear_closed_form_equals_per_sample_autograd(temperature):
    model = tiny_model(LogitNormHead)
    x = torch.randn(16, 1, 6, 6)
    out = outputs_of(model, x)
    score = create_score("gradnorm", temperature=temperature)
    score.fit(None, model)
    got = score.score(out)
    torch.testing.assert_close(
        got, gradnorm_reference(model.head, out.features, temperature), rtol=1e-5, atol=1e-6
    )
    # and the generic torch.func path agrees with the closed form
    from oodlab.scores.gradient import per_sample_gradnorm

    torch.testing.assert_close(
        per_sample_gradnorm(model.head, out.features, temperature), got, rtol=1e-5, atol=1e-6
    )
    # per sample, not the official whole-batch sum, which gives every sample the same value
    assert got.unique().numel() == len(got)


@pytest.mark.parametrize("head_cls", [IsoMaxHead, IsoMaxPlusHead, DisMaxHead])
def test_gradnorm_on_distance_heads_uses_per_sample_autograd(head_cls):
    model = tiny_model(head_cls)
    with torch.no_grad():
        for p in model.head.parameters():
            p.add_(torch.randn_like(p) * 0.3)
    out = outputs_of(model, torch.randn(9, 1, 6, 6))
    score = create_score("gradnorm", temperature=2.0)
    score.fit(None, model)
    torch.testing.assert_close(
        score.score(out), gradnorm_reference(model.head, out.features, 2.0), rtol=1e-4, atol=1e-6
    )


# -- feature scores ------------------------------------------------------------------------
def feature_data(seed: int = 0, dead_unit: bool = False):
    model = tiny_model(seed=seed)
    train = outputs_of(model, torch.randn(200, 1, 6, 6), torch.randint(0, 4, (200,)))
    test = outputs_of(model, torch.randn(30, 1, 6, 6) * 2)
    if dead_unit:  # a ReLU unit that never fires: singular covariance
        train = Outputs(
            train.logits, train.features * torch.tensor([1, 1, 0, 1, 1.0]), train.labels
        )
        test = Outputs(test.logits, test.features * torch.tensor([1, 1, 0, 1, 1.0]), test.labels)
    return model, train, test


@pytest.mark.parametrize("pct", [50.0, 90.0])
def test_react_clips_at_the_training_percentile_then_takes_energy(pct):
    model, train, test = feature_data()
    score = create_score("react", percentile=pct)
    score.fit(train, model)
    threshold = np.percentile(train.features.numpy().ravel(), pct)
    assert score.threshold == pytest.approx(threshold)
    clipped = np.minimum(test.features.numpy(), threshold)
    w, b = model.head.fc.weight.detach().numpy(), model.head.fc.bias.detach().numpy()
    np.testing.assert_allclose(
        score.score(test).numpy(), logsumexp(clipped @ w.T + b, axis=1), rtol=1e-5
    )
    assert create_score("react").hparams() == {"percentile": 90.0}


@pytest.mark.parametrize("dead_unit", [False, True])
def test_mahalanobis_matches_sklearn_tied_covariance(dead_unit):
    model, train, test = feature_data(dead_unit=dead_unit)
    score = create_score("mahalanobis")
    score.fit(train, model)
    feats, labels = train.features.double().numpy(), train.labels.numpy()
    means = np.stack([feats[labels == c].mean(0) for c in range(4)])
    precision = EmpiricalCovariance(assume_centered=False).fit(feats - means[labels]).precision_
    x = test.features.double().numpy()
    d2 = np.stack([np.einsum("nd,de,ne->n", x - m, precision, x - m) for m in means], axis=1)
    np.testing.assert_allclose(score.score(test).numpy(), -d2.min(1), rtol=1e-4, atol=1e-6)
    # training points of a class score higher than points far away
    far = Outputs(test.logits, test.features + 10.0, test.labels)
    assert score.score(far).max() < score.score(train).min()


@pytest.mark.parametrize("k", [1, 7])
def test_knn_matches_sklearn_on_normalised_features(k):
    model, train, test = feature_data()
    score = create_score("knn", k=k)
    score.fit(train, model)
    unit = lambda a: a / np.linalg.norm(a, axis=1, keepdims=True)  # noqa: E731
    nn_index = NearestNeighbors(n_neighbors=k).fit(unit(train.features.double().numpy()))
    distances, _ = nn_index.kneighbors(unit(test.features.double().numpy()))
    np.testing.assert_allclose(score.score(test).numpy(), -distances[:, -1], rtol=1e-6, atol=1e-6)
    with pytest.raises(ConfigError, match=r"eval.params.knn.k"):
        create_score("knn", k=201).fit(train, model)


def test_feature_scores_refuse_to_run_without_training_statistics():
    model, _, _ = feature_data()
    for name in ("react", "mahalanobis", "knn"):
        with pytest.raises(ValueError, match="training split"):
            create_score(name).fit(None, model)


# -- hyperparameter checks -----------------------------------------------------------------
@pytest.mark.parametrize(
    ("name", "params", "key"),
    [
        ("odin", {"temperature": 0}, "eval.params.odin.temperature"),
        ("odin", {"epsilon": -0.1}, "eval.params.odin.epsilon"),
        ("energy", {"temperature": "hot"}, "eval.params.energy.temperature"),
        ("react", {"percentile": 101}, "eval.params.react.percentile"),
        ("knn", {"k": 2.5}, "eval.params.knn.k"),
        ("msp", {"temperature": 2}, "eval.params.msp"),
    ],
)
def test_bad_hyperparameters_name_the_key(name, params, key):
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        create_score(name, **params)


# -- generic: every registered score -------------------------------------------------------
K_TOY, D_TOY = 4, 64


def toy_model() -> OODClassifier:
    """Features are the inputs (N, 64, 1, 1) flattened; a linear head whose class c sums about
    its block of 16 features, so an input large on that block is a confident class-c sample."""
    head = CrossEntropyHead(D_TOY, K_TOY)
    with torch.no_grad():
        blocks = torch.eye(K_TOY).repeat_interleave(D_TOY // K_TOY, dim=1)
        g = torch.Generator().manual_seed(0)
        head.fc.weight.copy_(blocks + 0.05 * torch.randn(K_TOY, D_TOY, generator=g))
        head.fc.bias.zero_()
    backbone = nn.Flatten()
    backbone.num_features = D_TOY
    return OODClassifier(backbone, head).eval()


def toy_data(n: int, seed: int, ood: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """ID: 2 on the block of 16 features of class y, 0 elsewhere; OOD: 1 on 16 features drawn
    at random among all 64 (as sparse as ID, but weaker and spread over the classes: flat
    logits, far from every class); both plus small positive noise."""
    g = torch.Generator().manual_seed(seed)
    labels = torch.arange(n) % K_TOY  # balanced: equal class means, as DICE assumes
    noise = 0.1 * torch.rand(n, D_TOY, generator=g)
    if ood:
        active = torch.rand(n, D_TOY, generator=g).argsort(dim=1)[:, : D_TOY // K_TOY]
        x = torch.zeros(n, D_TOY).scatter_(1, active, 1.0) + noise
    else:
        blocks = F.one_hot(labels, K_TOY).float().repeat_interleave(D_TOY // K_TOY, dim=1)
        x = 2 * blocks + noise
    return x.view(n, D_TOY, 1, 1), labels


def toy_scores(name: str) -> tuple[torch.Tensor, torch.Tensor]:
    """The default-setting scores of ID test and OOD samples."""
    model = toy_model()
    score = create_score(name)
    train_x, train_y = toy_data(240, 0)
    # a needs_val score also gets the ID validation outputs, as evaluation hands them
    val = {"val": outputs_of(model, *toy_data(40, 3))} if getattr(score, "needs_val", False) else {}
    score.fit(outputs_of(model, train_x, train_y), model, **val)
    id_x, _ = toy_data(50, 1)
    ood_x, _ = toy_data(50, 2, ood=True)
    if score.needs_model:
        std = torch.ones(1, D_TOY, 1, 1)
        return score.score_inputs(model, id_x, std), score.score_inputs(model, ood_x, std)
    return score.score(outputs_of(model, id_x)), score.score(outputs_of(model, ood_x))


@pytest.mark.parametrize("name", NAMES)
def test_every_score_gives_one_finite_value_per_sample(name):
    id_scores, ood_scores = toy_scores(name)
    assert id_scores.shape == (50,) and ood_scores.shape == (50,)
    assert torch.isfinite(id_scores).all() and torch.isfinite(ood_scores).all()


@pytest.mark.parametrize("name", NAMES)
def test_every_score_ranks_in_distribution_higher_on_a_toy_case(name):
    from oodlab.metrics import ood_metrics

    id_scores, ood_scores = toy_scores(name)
    assert ood_metrics(id_scores, ood_scores)["auroc"] > 0.9


@pytest.mark.parametrize("name", NAMES)
def test_every_score_declares_a_valid_default_and_grid(name):
    cls = SCORES[name]
    assert cls.name == name and cls.paper
    assert set(create_score(name).hparams()) == set(cls.spec)
    for key, hp in cls.spec.items():
        assert hp.check(f"eval.params.{name}.{key}", hp.default) == hp.default
        assert hp.grid and all(hp.check(key, v) == v for v in hp.grid)


@pytest.mark.parametrize("name", NAMES)
def test_every_score_works_through_oodlab_evaluate(name):
    import oodlab

    model = toy_model()
    record = oodlab.evaluate(
        model,
        toy_data(50, 1),
        {"flat": toy_data(50, 2, ood=True)[0]},
        scores=[name],
        id_train=toy_data(240, 0),
        id_val=toy_data(40, 3),
        val_ood=toy_data(40, 4, ood=True)[0],
        batch_size=64,
    )
    assert record.ood[name]["flat"]["auroc"] > 0.9
    assert set(record.scores[name].chosen) == set(SCORES[name].spec)


# -- eval.params / eval.grids on the command line ------------------------------------------
def override(value) -> str:
    """``value`` as Hydra's override grammar writes it."""
    if isinstance(value, (list, tuple)):
        return f"[{','.join(map(override, value))}]"
    if value is None or isinstance(value, bool):
        return {None: "null", True: "true", False: "false"}[value]
    return str(value)


def test_every_score_key_composes_without_plus_and_is_checked(compose_cfg):
    """eval.params.<score>.<key>=v and eval.grids.<score>.<key>=[...] for every registered
    score and key, in one command line, then the check the command lines run."""
    from oodlab.evaluation.selection import check_overrides

    params = {n: {k: hp.default for k, hp in SCORES[n].spec.items()} for n in NAMES}
    grids = {n: {k: list(hp.grid[:2]) for k, hp in SCORES[n].spec.items()} for n in NAMES}
    overrides = [
        f"eval.{section}.{n}.{k}={override(v)}"
        for section, given in (("params", params), ("grids", grids))
        for n, keys in given.items()
        for k, v in keys.items()
    ]
    cfg = compose_cfg(["debug=fast", *overrides])
    composed = OmegaConf.to_container(cfg.eval)
    assert composed["params"] == {n: keys for n, keys in params.items() if keys}
    assert composed["grids"] == {n: keys for n, keys in grids.items() if keys}
    check_overrides(composed["params"], composed["grids"])
    # src/eval.py shares the group
    assert compose_cfg(overrides[:1], config_name="eval").eval.params


@pytest.mark.parametrize(
    ("overrides", "error", "message"),
    [
        (["eval.params.odn.temperature=1000"], UnknownNameError, r"Did you mean 'odin'.*Choices"),
        (["eval.grids.knnn.k=[1]"], UnknownNameError, r"eval\.grids.*Choices"),
        (["eval.params.odin.temprature=1000"], ConfigError, r"epsilon, temperature"),
        (["eval.grids.knn.neighbours=[3]"], ConfigError, r"eval\.grids\.knn\.neighbours.*\(k\)"),
        (["eval.params.msp.temperature=2"], ConfigError, r"eval\.params\.msp\.temperature"),
        (["eval.params.odin.epsilon=-1"], ConfigError, r"eval\.params\.odin\.epsilon"),
    ],
)
def test_unknown_scores_and_keys_are_one_line_errors(compose_cfg, overrides, error, message):
    from oodlab.evaluation.selection import check_overrides

    cfg = compose_cfg(overrides)
    with pytest.raises(error, match=message) as info:
        check_overrides(
            OmegaConf.to_container(cfg.eval.params), OmegaConf.to_container(cfg.eval.grids)
        )
    assert "\n" not in str(info.value)


def test_the_config_names_no_default_or_grid_of_its_own():
    """Defaults and grids come from the score classes alone: the eval group holds only what a
    user overrides."""
    cfg = OmegaConf.load(Path(__file__).resolve().parents[1] / "conf" / "eval" / "default.yaml")
    assert cfg.params == {} and cfg.grids == {}


def test_the_command_line_fixes_a_score_key_without_plus(run_cli, tmp_path):
    run_dir = tmp_path / "cli-run"
    proc = run_cli(
        "train.py",
        "debug=fast",
        "logger=none",
        "eval.params.odin.temperature=1000",
        "eval.scores=[msp,odin]",
        f"hydra.run.dir={run_dir}",
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    odin = json.loads((run_dir / "results.json").read_text())["scores"]["odin"]
    assert odin["fixed"] == {"temperature": 1000}
    assert odin["chosen"]["temperature"] == 1000.0
    assert odin["grid"] == {"epsilon": list(SCORES["odin"].spec["epsilon"].grid)}
    # and a typo fails at once, naming the score's keys
    bad = run_cli("train.py", "debug=fast", "logger=none", "eval.params.odin.temprature=1000")
    assert bad.returncode != 0 and "epsilon, temperature" in bad.stderr + bad.stdout
