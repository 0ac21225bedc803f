"""Loss heads: formulas against independent references, numerics, configs, DisMax FPR."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from omegaconf import OmegaConf
from torch.autograd import gradcheck

from oodlab.errors import ConfigError, UnknownNameError
from oodlab.losses import (
    LOSSES,
    CrossEntropyHead,
    DisMaxHead,
    IsoMaxHead,
    IsoMaxPlusHead,
    LogitNormHead,
    LogitPenaltyHead,
    LossHead,
    build_loss_head,
)

CONF_DIR = Path(__file__).resolve().parents[1] / "conf" / "loss"
#: every registered head, and every loss config: the generic tests cover a new loss unedited
NAMES = LOSSES.names()
CONFIGS = sorted(path.stem for path in CONF_DIR.glob("*.yaml"))
#: the heads whose objective is a function of their evaluation logits (they implement ``loss``)
LOGIT_LOSSES = [name for name, cls in LOSSES.items() if cls.loss is not LossHead.loss]
N, D, K = 6, 5, 4


# ----------------------------------------------------------------------------------------
# independent references: plain numpy, one sample and one class at a time
# ----------------------------------------------------------------------------------------


def ref_cross_entropy(z: np.ndarray, targets: np.ndarray) -> float:
    """Mean CE of logits z (N, K); targets are class indices (N,) or probabilities (N, K)."""
    total = 0.0
    for i in range(z.shape[0]):
        m = max(z[i])
        lse = m + math.log(sum(math.exp(v - m) for v in z[i]))
        if targets.ndim == 1:
            total += lse - z[i][int(targets[i])]
        else:
            total += sum(targets[i][k] * (lse - z[i][k]) for k in range(z.shape[1]))
    return total / z.shape[0]


def ref_dist(a: np.ndarray, b: np.ndarray) -> float:
    return math.sqrt(sum((float(u) - float(v)) ** 2 for u, v in zip(a, b)))


def ref_unit(a: np.ndarray) -> np.ndarray:
    return a / math.sqrt(sum(float(v) ** 2 for v in a))


def ref_linear(x: np.ndarray, w: np.ndarray, b: np.ndarray) -> np.ndarray:
    out = np.zeros((x.shape[0], w.shape[0]))
    for i in range(x.shape[0]):
        for j in range(w.shape[0]):
            out[i, j] = sum(float(x[i, d]) * float(w[j, d]) for d in range(x.shape[1])) + b[j]
    return out


def ref_logits(head: LossHead, x: np.ndarray) -> np.ndarray:
    if isinstance(head, (CrossEntropyHead, LogitNormHead, LogitPenaltyHead)):
        return ref_linear(x, _np(head.fc.weight), _np(head.fc.bias))
    p = _np(head.prototypes)
    out = np.zeros((x.shape[0], p.shape[0]))
    for i in range(x.shape[0]):
        for j in range(p.shape[0]):
            if isinstance(head, IsoMaxHead):
                out[i, j] = -ref_dist(x[i], p[j])
            else:
                out[i, j] = abs(head.distance_scale.item()) * ref_dist(
                    ref_unit(x[i]), ref_unit(p[j])
                )
        if isinstance(head, IsoMaxPlusHead):
            out[i] = -out[i]
        elif isinstance(head, DisMaxHead):
            d = out[i] / math.sqrt(2.0)
            out[i] = -(d + sum(d) / len(d)) / head.temperature
    return out


def ref_loss(head: LossHead, z: np.ndarray, targets: np.ndarray) -> float:
    if isinstance(head, CrossEntropyHead):
        return ref_cross_entropy(z, targets)
    if isinstance(head, LogitNormHead):
        zn = np.array([row / (head.tau * (math.sqrt(sum(v * v for v in row)) + 1e-7)) for row in z])
        return ref_cross_entropy(zn, targets)
    if isinstance(head, LogitPenaltyHead):
        penalty = sum(sum(v * v for v in row) for row in z) / z.shape[0]
        return ref_cross_entropy(z, targets) + head.weight * penalty
    return ref_cross_entropy(head.entropic_scale * z, targets)


def _np(t: torch.Tensor) -> np.ndarray:
    return t.detach().double().cpu().numpy()


# ----------------------------------------------------------------------------------------
# helpers
# ----------------------------------------------------------------------------------------


def make_head(name: str, in_features: int = D, num_classes: int = K, **kwargs) -> LossHead:
    """A head with every parameter random (IsoMax's zero prototypes would hide the formula)."""
    head = LOSSES[name](in_features, num_classes, **kwargs)
    with torch.no_grad():
        if hasattr(head, "prototypes"):
            head.prototypes.normal_()
        if hasattr(head, "distance_scale"):
            head.distance_scale.fill_(-1.7)  # negative: the formula uses |s|
    return head


def batch(n: int = N, d: int = D, k: int = K, seed: int = 0, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, d, generator=g, dtype=dtype) * 2
    y = torch.randint(0, k, (n,), generator=g)
    soft = torch.rand(n, k, generator=g, dtype=dtype)
    return x, y, soft / soft.sum(dim=1, keepdim=True)


def assert_finite_backward(head: LossHead, x: torch.Tensor, y: torch.Tensor) -> None:
    x = x.clone().requires_grad_(True)
    head.zero_grad()
    loss = head.loss(head(x), y)
    assert torch.isfinite(loss), loss
    loss.backward()
    assert torch.isfinite(x.grad).all()
    for name, p in head.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), name


# ----------------------------------------------------------------------------------------
# registry
# ----------------------------------------------------------------------------------------


def test_registry_names_and_scores():
    # every registered head has its config, and every config names a registered head
    assert CONFIGS == NAMES
    for name, cls in LOSSES.items():
        assert issubclass(cls, LossHead) and cls.name == name
    scores = {name: cls.default_score for name, cls in LOSSES.items()}
    assert {
        "ce": "msp",
        "logitnorm": "msp",
        "logit_penalty": "msp",
        "isomax": "es",
        "isomaxplus": "mds",
        "dismax": "mmles",
    }.items() <= scores.items()


@pytest.mark.parametrize("name", NAMES)
def test_every_head_names_a_registered_score(name):
    from oodlab.scores import SCORES

    assert LOSSES[name].default_score in SCORES


# ----------------------------------------------------------------------------------------
# formulas
# ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name,kwargs",
    [
        ("ce", {}),
        ("logitnorm", {"tau": 0.04}),
        ("logitnorm", {"tau": 0.7}),
        ("logit_penalty", {"weight": 0.3}),
        ("isomax", {}),
        ("isomax", {"entropic_scale": 3.0}),
        ("isomaxplus", {}),
        ("dismax", {}),
        ("dismax", {"temperature": 2.5, "entropic_scale": 4.0}),
    ],
)
@pytest.mark.parametrize("seed", [0, 1])
def test_formula_matches_reference(name, kwargs, seed):
    torch.manual_seed(seed)
    head = make_head(name, **kwargs).double()
    x, y, soft = batch(seed=seed)
    logits = head(x)
    assert logits.shape == (N, K) and logits.dtype == torch.float64
    expected = ref_logits(head, _np(x))
    np.testing.assert_allclose(_np(logits), expected, rtol=1e-9, atol=1e-9)
    for targets in (y, soft):
        got = head.loss(logits, targets).item()
        assert got == pytest.approx(ref_loss(head, expected, targets.numpy()), rel=1e-9, abs=1e-9)


@pytest.mark.parametrize("name", LOGIT_LOSSES)
def test_one_hot_probabilities_equal_class_indices(name):
    head = make_head(name).double()
    x, y, _ = batch()
    logits = head(x)
    one_hot = F.one_hot(y, K).double()
    assert head.loss(logits, one_hot).item() == pytest.approx(
        head.loss(logits, y).item(), rel=1e-12
    )


def test_isomax_unit_entropic_scale_is_cross_entropy_on_negative_distances():
    head = make_head("isomax", entropic_scale=1.0).double()
    x, y, _ = batch()
    expected = F.cross_entropy(-torch.cdist(x, head.prototypes.detach()), y)
    assert head.loss(head(x), y).item() == pytest.approx(expected.item(), rel=1e-10)
    # and the default scale is 10, not 1
    head10 = IsoMaxHead(D, K)
    head10.load_state_dict(head.float().state_dict())
    expected10 = F.cross_entropy(-10 * torch.cdist(x.float(), head.prototypes.detach()), y)
    assert head10.loss(head10(x.float()), y).item() == pytest.approx(expected10.item(), rel=1e-5)


def test_default_initialisation_matches_papers():
    torch.manual_seed(0)
    iso = IsoMaxHead(64, 10)
    assert torch.count_nonzero(iso.prototypes) == 0
    for head in (IsoMaxPlusHead(64, 10), DisMaxHead(64, 10)):
        assert head.distance_scale.item() == 1.0 and head.distance_scale.requires_grad
        p = head.prototypes.detach()
        assert abs(p.mean().item()) < 0.1 and abs(p.std().item() - 1.0) < 0.1  # N(0, 1)
    assert DisMaxHead(4, 3).temperature == 1.0


# ----------------------------------------------------------------------------------------
# LogitNorm properties
# ----------------------------------------------------------------------------------------


@st.composite
def logitnorm_cases(draw, min_norm: float = 0.0):
    k = draw(st.integers(2, 12))
    n = draw(st.integers(1, 4))
    values = st.floats(-100.0, 100.0, allow_nan=False, allow_infinity=False)
    f = np.array(draw(st.lists(values, min_size=n * k, max_size=n * k))).reshape(n, k)
    assume(all(np.linalg.norm(row) >= min_norm for row in f))
    y = np.array(draw(st.lists(st.integers(0, k - 1), min_size=n, max_size=n)))
    return torch.from_numpy(f), torch.from_numpy(y)


@settings(max_examples=60, deadline=None)
@given(case=logitnorm_cases(), tau=st.floats(1e-3, 10.0))
def test_logitnorm_lower_bound(case, tau):
    f, y = case
    k = f.shape[1]
    loss = LogitNormHead(3, k, tau=tau).loss(f, y).item()
    bound = math.log1p((k - 1) * math.exp(-2.0 / tau))
    assert loss >= bound - 1e-12 * max(1.0, bound)


@settings(max_examples=60, deadline=None)
@given(case=logitnorm_cases(min_norm=1.0), tau=st.floats(1e-2, 10.0), c=st.floats(0.5, 100.0))
def test_logitnorm_scale_invariance(case, tau, c):
    f, y = case
    head = LogitNormHead(3, f.shape[1], tau=tau)
    # exact up to the 1e-7 added to the norm: |dz| <= 2e-7 / (tau * min ||f||) <= 2e-5
    assert head.loss(c * f, y).item() == pytest.approx(head.loss(f, y).item(), abs=1e-4)


def test_logitnorm_eval_sees_raw_logits():
    head = LogitNormHead(D, K, tau=0.04).double()
    x, _, _ = batch()
    expected = ref_linear(_np(x), _np(head.fc.weight), _np(head.fc.bias))
    np.testing.assert_allclose(_np(head(x)), expected, rtol=1e-10)


# ----------------------------------------------------------------------------------------
# gradients
# ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name,kwargs",
    [
        ("ce", {}),
        ("logitnorm", {"tau": 0.04}),
        ("logit_penalty", {"weight": 0.3}),
        ("isomax", {}),
        ("isomaxplus", {}),
        ("dismax", {"temperature": 1.5}),
    ],
)
def test_gradcheck(name, kwargs):
    torch.manual_seed(0)
    head = make_head(name, 4, 3, **kwargs).double()
    x, y, soft = batch(3, 4, 3, seed=2)
    names = [n for n, _ in head.named_parameters()]
    params = [p.detach().clone().requires_grad_(True) for _, p in head.named_parameters()]
    inputs = (x.clone().requires_grad_(True), *params)

    def logits_fn(x, *ps):
        return torch.func.functional_call(head, dict(zip(names, ps)), (x,))

    def loss_fn(x, *ps):
        return head.loss(logits_fn(x, *ps), y) + head.loss(logits_fn(x, *ps), soft)

    assert gradcheck(logits_fn, inputs)
    assert gradcheck(loss_fn, inputs)


# ----------------------------------------------------------------------------------------
# numerics: zeros, tiny tau, bf16
# ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", LOGIT_LOSSES)
def test_finite_on_zero_features_at_default_init(name):
    # IsoMax's prototypes start at zero, so this is the zero-distance point for it
    torch.manual_seed(0)
    head = LOSSES[name](D, K)
    _, y, _ = batch()
    assert_finite_backward(head, torch.zeros(N, D), y)


@pytest.mark.parametrize("name", ["isomax", "isomaxplus", "dismax"])
def test_finite_with_features_on_prototypes(name):
    head = make_head(name)
    _, y, _ = batch()
    x = head.prototypes.detach()[y].clone()  # distance exactly 0 to the target prototype
    assert_finite_backward(head, x, y)


@pytest.mark.parametrize("name", LOGIT_LOSSES)
def test_finite_on_zero_logits(name):
    head = make_head(name)
    _, y, soft = batch(dtype=torch.float32)
    for targets in (y, soft):
        z = torch.zeros(N, K, requires_grad=True)
        loss = head.loss(z, targets)
        loss.backward()
        assert torch.isfinite(loss) and torch.isfinite(z.grad).all()
        if name in ("ce", "logitnorm", "logit_penalty"):
            assert loss.item() == pytest.approx(math.log(K), rel=1e-6)


@pytest.mark.parametrize("tau", [1e-3, 1e-2])
def test_logitnorm_small_tau(tau):
    head = LogitNormHead(D, K, tau=tau)
    x, y, _ = batch(dtype=torch.float32)
    assert_finite_backward(head, 50 * x, y)
    assert_finite_backward(head, torch.zeros(N, D), y)
    z = head(50 * x).detach()
    assert head.loss(z, y).item() == pytest.approx(ref_loss(head, _np(z), y.numpy()), rel=1e-4)


@pytest.mark.parametrize("name", LOGIT_LOSSES)
def test_bf16_autocast_matches_fp32(name):
    torch.manual_seed(0)
    head = make_head(name, 32, 10)
    x, y, _ = batch(16, 32, 10, dtype=torch.float32)
    x_bf16 = x.bfloat16()  # what a backbone under autocast hands the head
    reference = head.loss(head(x_bf16.float()), y)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        logits = head(x_bf16)
        loss = head.loss(logits, y)
        loss_fp32_in = head.loss(head(x), y)
    assert logits.dtype == torch.float32
    assert loss.item() == pytest.approx(reference.item(), rel=1e-4, abs=1e-5)
    assert loss_fp32_in.item() == pytest.approx(head.loss(head(x), y).item(), rel=1e-4, abs=1e-5)
    # loss() itself is fp32 even when it is handed bf16 logits
    z = head(x_bf16.float()).detach()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        from_bf16 = head.loss(z.bfloat16(), y)
    assert from_bf16.item() == pytest.approx(head.loss(z.bfloat16().float(), y).item(), rel=1e-5)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert_finite_backward(head, x_bf16.float(), y)
        assert_finite_backward(head, torch.zeros(16, 32), y)


# ----------------------------------------------------------------------------------------
# configs
# ----------------------------------------------------------------------------------------


def loss_config(name: str) -> dict:
    """conf/loss/<name>.yaml's keys, without its defaults list (the schema it names)."""
    cfg = OmegaConf.to_container(OmegaConf.load(CONF_DIR / f"{name}.yaml"))
    assert isinstance(cfg, dict)
    cfg.pop("defaults", None)
    return cfg


@pytest.mark.parametrize("name", CONFIGS)
def test_config_builds_its_registered_head(name):
    cfg = loss_config(name)
    assert cfg["name"] == name
    head = build_loss_head(cfg, in_features=8, num_classes=3)
    assert type(head) is LOSSES[name]
    logits = head(torch.randn(5, 8))
    assert logits.shape == (5, 3) and torch.isfinite(logits).all()
    # a null key is one the head accepts without using (CE's tau, for loss=ce,logitnorm grids)
    params = {k: v for k, v in cfg.items() if k != "name" and v is not None}
    assert head.hparams() == params


@pytest.mark.parametrize("name", CONFIGS)
def test_config_trains_one_step(name):
    """The real task, one optimiser step on a tiny batch: the loss is finite, the weights move
    and stay finite, and the head maps features to (N, classes) logits."""
    import lightning as L
    from torch.utils.data import DataLoader, TensorDataset

    from oodlab.task import OODClassificationTask

    torch.manual_seed(0)
    cfg = loss_config(name)
    task = OODClassificationTask(
        backbone="small_cnn",
        backbone_kwargs={"widths": [4, 8]},
        loss=cfg,
        num_classes=3,
        in_chans=1,
        mean=[0.5],
        std=[0.25],
    )
    before = {k: v.clone() for k, v in task.model.state_dict().items()}
    images = torch.rand(8, 1, 28, 28)
    loader = DataLoader(TensorDataset(images, torch.arange(8) % 3), batch_size=8)
    trainer = L.Trainer(
        fast_dev_run=1,
        accelerator="cpu",
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    trainer.fit(task, train_dataloaders=loader)
    assert math.isfinite(float(trainer.callback_metrics["train/loss"]))
    after = task.model.state_dict()
    assert all(torch.isfinite(v).all() for v in after.values() if v.is_floating_point())
    assert any(not torch.equal(before[k], after[k]) for k in before)
    features = task.model.backbone(images[:5])
    assert task.model.head(features).shape == (5, 3)


@pytest.mark.parametrize("name", CONFIGS)
def test_debug_config_composes_and_builds(name, compose_cfg):
    cfg = compose_cfg([f"loss={name}", "debug=fast"])
    loss = OmegaConf.to_container(cfg.loss, resolve=True)
    assert loss["name"] == name
    assert type(build_loss_head(loss, in_features=4, num_classes=2)) is LOSSES[name]


def test_unknown_names_and_keys_are_one_line_errors():
    with pytest.raises(UnknownNameError, match=r"Did you mean 'logitnorm'"):
        build_loss_head({"name": "logitnrom"}, in_features=4, num_classes=2)
    with pytest.raises(ConfigError, match=r"loss\.taux=.*a key of loss logitnorm \(tau\)"):
        build_loss_head({"name": "logitnorm", "taux": 0.1}, in_features=4, num_classes=2)
    with pytest.raises(ConfigError, match=r"loss\.name"):
        build_loss_head({"tau": 0.1}, in_features=4, num_classes=2)
    # the loss config of a checkpoint written before heads were built by name
    old = {"_target_": "oodlab.losses.LogitNormHead", "tau": 0.5}
    assert build_loss_head(old, in_features=4, num_classes=2).hparams() == {"tau": 0.5}


def test_defaults():
    assert LogitNormHead(8, 3).hparams() == {"tau": 0.04}
    assert OmegaConf.load(CONF_DIR / "logitnorm.yaml").tau == 0.04
    assert LogitPenaltyHead(8, 3).hparams() == {"weight": 0.1}
    assert IsoMaxHead(8, 3).hparams() == {"entropic_scale": 10.0}
    assert IsoMaxPlusHead(8, 3).hparams() == {"entropic_scale": 10.0}
    assert DisMaxHead(8, 3).hparams() == {"temperature": 1.0, "entropic_scale": 10.0, "fpr": False}


@pytest.mark.parametrize("tau", [0, 0.0, -0.04, "abc", float("nan")])
def test_bad_tau_raises_config_error(tau):
    with pytest.raises(ConfigError, match=r"loss\.tau"):
        LogitNormHead(8, 3, tau=tau)
    cfg = loss_config("logitnorm")
    cfg["tau"] = tau
    with pytest.raises(ConfigError) as info:
        build_loss_head(cfg, in_features=8, num_classes=3)
    assert "loss.tau" in str(info.value) and "> 0" in str(info.value)


@pytest.mark.parametrize(
    "name,key,value",
    [
        ("logit_penalty", "weight", -0.1),
        ("isomax", "entropic_scale", 0.0),
        ("isomaxplus", "entropic_scale", -1.0),
        ("dismax", "temperature", 0.0),
        ("dismax", "fpr", "yes"),
    ],
)
def test_bad_hyperparameters_raise_config_error(name, key, value):
    with pytest.raises(ConfigError, match=rf"loss\.{key}"):
        LOSSES[name](8, 3, **{key: value})


def test_logit_penalty_zero_weight_is_cross_entropy():
    head = LogitPenaltyHead(D, K, weight=0.0)
    x, y, _ = batch(dtype=torch.float32)
    assert head.loss(head(x), y).item() == pytest.approx(F.cross_entropy(head(x), y).item())


# ----------------------------------------------------------------------------------------
# DisMax fractional probability regularisation
# ----------------------------------------------------------------------------------------


def test_dismax_fpr_off_is_identity():
    head = DisMaxHead(8, 3)
    images, targets = torch.randn(4, 1, 6, 6), torch.tensor([0, 1, 2, 0])
    out_images, out_targets = head.prepare_batch(images, targets)
    assert out_images is images and out_targets is targets


@pytest.mark.parametrize("n,h,w", [(8, 8, 8), (5, 7, 6), (2, 4, 4)])
def test_dismax_fpr_batch(n, h, w):
    torch.manual_seed(n)
    k = 5
    head = DisMaxHead(8, k, fpr=True)
    # image i is filled with the value i, so every pixel names its source image
    images = torch.arange(n, dtype=torch.float32).view(n, 1, 1, 1).expand(n, 3, h, w).clone()
    targets = torch.randint(0, k, (n,))
    out_images, out_targets = head.prepare_batch(images, targets)

    assert out_images.shape == (2 * n, 3, h, w)
    assert out_targets.shape == (2 * n, k) and out_targets.dtype.is_floating_point
    torch.testing.assert_close(out_targets.sum(dim=1), torch.ones(2 * n))
    assert torch.equal(out_images[:n], images)
    assert torch.equal(out_targets[:n], F.one_hot(targets, k).float())

    quadrants = [  # (rows, cols) as in the official code's roll by 0, 1, 2, 3
        (slice(None, h // 2), slice(None, w // 2)),
        (slice(h // 2, None), slice(None, w // 2)),
        (slice(None, h // 2), slice(w // 2, None)),
        (slice(h // 2, None), slice(w // 2, None)),
    ]
    sources_per_quadrant = []
    for m in range(n):
        mixed = out_images[n + m]
        expected = torch.zeros(k)
        sources = []
        for rows, cols in quadrants:
            block = mixed[:, rows, cols]
            src = int(block.flatten()[0].item())
            assert torch.all(block == src)  # a whole quadrant from one image
            sources.append(src)
            expected[targets[src]] += 0.25
        torch.testing.assert_close(out_targets[n + m], expected)
        if n >= 4:
            assert len(set(sources)) == 4  # four different images
        sources_per_quadrant.append(sources)
    # every image of the batch supplies each quadrant position exactly once
    for q in range(4):
        assert sorted(s[q] for s in sources_per_quadrant) == list(range(n))

    logits = head(torch.randn(2 * n, 8))
    loss = head.loss(logits, out_targets)
    expected_loss = ref_cross_entropy(_np(head.entropic_scale * logits), out_targets.numpy())
    assert loss.item() == pytest.approx(expected_loss, rel=1e-5)
