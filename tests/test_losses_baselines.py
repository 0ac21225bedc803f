"""The baseline heads (T2FNorm, ELogitNorm, label smoothing, focal, mixup, RegMixup, OE,
Energy-OE, MixOE) against independent references: plain numpy, one sample at a time, written
from the papers and their official code, never from the heads' helpers."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from oodlab.errors import ConfigError
from oodlab.losses import LOSSES, LossHead

N, D, K = 6, 5, 4


def _np(t: torch.Tensor) -> np.ndarray:
    return t.detach().double().cpu().numpy()


def data(n: int = N, d: int = D, k: int = K, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, d, generator=g, dtype=torch.float64) * 2
    y = torch.randint(0, k, (n,), generator=g)
    return x, y


def head(name: str, **kwargs) -> LossHead:
    torch.manual_seed(0)
    return LOSSES[name](D, K, **kwargs).double()


def linear(h: LossHead, x: np.ndarray) -> np.ndarray:
    w, b = _np(h.fc.weight), _np(h.fc.bias)
    return np.array([[sum(x[i, d] * w[j, d] for d in range(x.shape[1])) + b[j]
                      for j in range(w.shape[0])] for i in range(x.shape[0])])  # fmt: skip


def log_softmax_row(z: np.ndarray) -> np.ndarray:
    m = max(z)
    lse = m + math.log(sum(math.exp(v - m) for v in z))
    return np.array([v - lse for v in z])


def ce(z: np.ndarray, t: np.ndarray) -> float:
    """Mean CE; t: class indices or probabilities."""
    total = 0.0
    for i in range(z.shape[0]):
        lp = log_softmax_row(z[i])
        total += -lp[int(t[i])] if t.ndim == 1 else -sum(t[i] * lp)
    return total / z.shape[0]


def lse(z: np.ndarray) -> float:
    m = max(z)
    return m + math.log(sum(math.exp(v - m) for v in z))


# ----------------------------------------------------------------------------------------


def test_t2fnorm_trains_on_normalised_features_and_evaluates_raw():
    h = head("t2fnorm")
    assert h.tau == 0.1
    x, y = data()
    xs = _np(x)
    unit = np.array([row / math.sqrt(sum(v * v for v in row)) for row in xs])
    expected = ce(linear(h, unit / 0.1), y.numpy())
    assert h.training_loss(x, y).item() == pytest.approx(expected, rel=1e-9)
    np.testing.assert_allclose(_np(h(x)), linear(h, xs), rtol=1e-10)
    assert h.linear_layer is h.fc
    # OpenOOD's inference: the raw features over tau
    hs = head("t2fnorm", eval_scale=True)
    np.testing.assert_allclose(_np(hs(x)), linear(hs, xs / 0.1), rtol=1e-10)
    assert hs.linear_layer is None


def test_elogitnorm_matches_the_official_formula():
    """elogitnorm_loss.py: scale_i = mean over all K classes of |f_ic - f_ij| / ||w_c - w_j||
    (the diagonal distance replaced by 1), c = argmax f_i; loss = CE(f / scale)."""
    h = head("elogitnorm")
    x, y = data(seed=3)
    f = linear(h, _np(x))
    w = _np(h.fc.weight)
    scaled = np.zeros_like(f)
    for i in range(N):
        c = int(np.argmax(f[i]))
        terms = []
        for j in range(K):
            dist = 1.0 if j == c else math.sqrt(sum((w[c, d] - w[j, d]) ** 2 for d in range(D)))
            terms.append(abs(f[i, c] - f[i, j]) / dist)
        scaled[i] = f[i] / (sum(terms) / K)
    assert h.loss(h(x), y).item() == pytest.approx(ce(scaled, y.numpy()), rel=1e-9)
    np.testing.assert_allclose(_np(h(x)), f, rtol=1e-10)
    # gradients reach the weights through the scale too (the official code does not detach)
    h.zero_grad()
    h.loss(h(x), y).backward()
    assert torch.isfinite(h.fc.weight.grad).all()
    assert h.hparams() == {}


@pytest.mark.parametrize("eps", [0.1, 0.3])
def test_label_smoothing(eps):
    h = head("label_smoothing", epsilon=eps)
    x, y = data()
    z = linear(h, _np(x))
    t = np.full((N, K), eps / K)
    for i in range(N):
        t[i, int(y[i])] += 1 - eps
    assert h.loss(h(x), y).item() == pytest.approx(ce(z, t), rel=1e-9)
    reference = torch.nn.functional.cross_entropy(h(x), y, label_smoothing=eps)
    assert h.loss(h(x), y).item() == pytest.approx(reference.item(), rel=1e-9)
    with pytest.raises(ConfigError, match=r"loss\.epsilon"):
        LOSSES["label_smoothing"](D, K, epsilon=1.0)


@pytest.mark.parametrize("adaptive", [True, False])
def test_focal(adaptive):
    """FocalLossAdaptive(gamma=3): gamma 5 where p_y < 0.2, 3 in [0.2, 0.5), gamma above;
    mean instead of the official sum."""
    h = head("focal", adaptive=adaptive)
    x, y = data(seed=5)
    z = linear(h, _np(x)) * 3  # spread the probabilities over both sides of 0.2
    total = 0.0
    seen = set()
    for i in range(N):
        lp = log_softmax_row(z[i])[int(y[i])]
        p = math.exp(lp)
        gamma = (5.0 if p < 0.2 else 3.0) if adaptive else 3.0
        seen.add(gamma)
        total += -((1 - p) ** gamma) * lp
    got = h.loss(torch.from_numpy(z), y).item()
    assert got == pytest.approx(total / N, rel=1e-9)
    if adaptive:
        assert seen == {3.0, 5.0}


def test_focal_gamma_zero_is_cross_entropy():
    h = head("focal", gamma=0.0, adaptive=False)
    x, y = data()
    assert h.loss(h(x), y).item() == pytest.approx(ce(linear(h, _np(x)), y.numpy()), rel=1e-9)


@pytest.mark.parametrize("name", ["mixup", "regmixup"])
def test_mixup_batches(name):
    torch.manual_seed(1)
    h = LOSSES[name](D, K)
    n = 8
    values = torch.arange(1, n + 1, dtype=torch.float32) * 10  # image i is constant v_i
    images = values.view(n, 1, 1, 1).expand(n, 1, 4, 4).clone()
    y = torch.arange(n) % K
    out, targets = h.prepare_batch(images, y)
    mixed = out if name == "mixup" else out[n:]
    if name == "regmixup":
        assert out.shape[0] == 2 * n and torch.equal(out[:n], images)
        assert torch.equal(targets[:n], torch.nn.functional.one_hot(y, K).float())
        mixed_t = targets[n:]
    else:
        assert out.shape == images.shape
        mixed_t = targets
    # every mixed image is lam v_i + (1 - lam) v_perm(i) with one lam and a permutation
    m = mixed[:, 0, 0, 0].double().numpy()
    v = values.double().numpy()
    # solve lam from image pairs: m_i = lam v_i + (1 - lam) v_j for some j
    candidates = []
    for j in range(n):
        if v[j] != v[0]:
            candidates.append((m[0] - v[j]) / (v[0] - v[j]))
    ok = False
    for lam in [*candidates, 1.0]:
        if not -1e-6 <= lam <= 1 + 1e-6:
            continue
        pairs = []
        for i in range(n):
            j = [j for j in range(n) if abs(lam * v[i] + (1 - lam) * v[j] - m[i]) < 1e-3]
            if not j:
                break
            pairs.append(j[0])
        if len(pairs) == n and sorted(pairs) == list(range(n)):
            ok = True
            break
    assert ok, "the mixed batch is not lam x + (1 - lam) x[perm]"
    expected_t = np.zeros((n, K))
    for i in range(n):
        expected_t[i, int(y[i])] += lam
        expected_t[i, int(y[pairs[i]])] += 1 - lam
    np.testing.assert_allclose(mixed_t.double().numpy(), expected_t, atol=1e-5)
    # the loss is the mean soft CE over every row (official: the mean over the 2N batch)
    logits = torch.randn(out.shape[0], K)
    assert h.loss(logits, targets).item() == pytest.approx(
        ce(_np(logits), targets.double().numpy()), rel=1e-5
    )


def test_mixup_defaults():
    assert LOSSES["mixup"](D, K).hparams() == {"alpha": 1.0}
    assert LOSSES["regmixup"](D, K).hparams() == {"alpha": 20.0}


def test_outlier_exposure():
    """oe_scratch.py: CE + 0.5 * -(x_out.mean(1) - logsumexp(x_out)).mean()."""
    h = head("oe")
    assert h.uses_outliers and h.outlier_ratio == 2.0 and h.weight == 0.5
    x, y = data()
    xo, _ = data(n=12, seed=7)
    z, zo = linear(h, _np(x)), linear(h, _np(xo))
    to_uniform = sum(lse(r) - sum(r) / K for r in zo) / len(zo)
    expected = ce(z, y.numpy()) + 0.5 * to_uniform
    assert h.training_loss(x, y, xo).item() == pytest.approx(expected, rel=1e-9)
    assert h.training_loss(x, y).item() == pytest.approx(ce(z, y.numpy()), rel=1e-9)


def test_energy_oe():
    """energy_ood CIFAR/train.py: CE + 0.1 * (relu(E_in - m_in)^2.mean() + relu(m_out -
    E_out)^2.mean()), E = -logsumexp."""
    h = head("energy_oe")
    assert (h.weight, h.m_in, h.m_out) == (0.1, -25.0, -7.0)
    assert h.default_score == "energy" and h.uses_outliers
    x, y = data()
    xo, _ = data(n=12, seed=8)
    # margins near the data's energies, so that both hinges are active for some rows
    h2 = head("energy_oe", m_in=-2.0, m_out=-1.5)
    for hh in (h, h2):
        z, zo = linear(hh, _np(x)), linear(hh, _np(xo))
        e_in = [-lse(r) for r in z]
        e_out = [-lse(r) for r in zo]
        reg_in = sum(max(0.0, e - hh.m_in) ** 2 for e in e_in) / len(e_in)
        reg_out = sum(max(0.0, hh.m_out - e) ** 2 for e in e_out) / len(e_out)
        expected = ce(z, y.numpy()) + hh.weight * (reg_in + reg_out)
        assert hh.training_loss(x, y, xo).item() == pytest.approx(expected, rel=1e-9)
        no_out = ce(z, y.numpy()) + hh.weight * reg_in
        assert hh.training_loss(x, y).item() == pytest.approx(no_out, rel=1e-9)


@pytest.mark.parametrize("mix_op", ["cutmix", "mixup"])
def test_mixoe(mix_op):
    """mixoe_trainer.py: CE(x) + lambda_oe * softCE(mixed, lam onehot + (1 - lam) / K); cutmix
    pastes one outlier box per batch and recomputes lam from its area."""
    torch.manual_seed(2)
    h = LOSSES["mixoe"](D, K, mix_op=mix_op, alpha=2.0, beta=2.0, weight=0.7)
    n, size = 5, 8
    images = torch.zeros(n, 1, size, size)
    outliers = torch.ones(3, 1, size, size) * torch.arange(1, 4).view(3, 1, 1, 1)
    y = torch.arange(n) % K
    out, targets, feats = h.mix_outliers(images, y, outliers)
    assert feats is None and out.shape == (2 * n, 1, size, size)
    assert torch.equal(out[:n], images)
    onehot = torch.nn.functional.one_hot(y, K).double()
    assert torch.equal(targets[:n].double(), onehot)
    mixed = out[n:].double().numpy()
    for i in range(n):
        o = float(i % 3 + 1)  # ID image i is mixed with outlier i mod M
        if mix_op == "cutmix":
            inside = mixed[i, 0] == o
            assert np.all((mixed[i, 0] == 0) | inside)
            rows, cols = np.nonzero(inside)
            area = inside.sum()
            if area:  # one axis-aligned box
                assert area == (rows.max() - rows.min() + 1) * (cols.max() - cols.min() + 1)
            lam = 1 - area / (size * size)
        else:
            lam = 1 - mixed[i, 0, 0, 0] / o
            assert np.allclose(mixed[i, 0], (1 - lam) * o)
        expected = lam * onehot[i].numpy() + (1 - lam) / K
        np.testing.assert_allclose(targets[n + i].double().numpy(), expected, atol=1e-6)
    feats = torch.randn(2 * n, D, dtype=torch.float64)
    hd = h.double()
    z = linear(hd, _np(feats))
    t = targets.double().numpy()
    expected = ce(z[:n], y.numpy()) + 0.7 * ce(z[n:], t[n:])
    assert hd.training_loss(feats, targets.double()).item() == pytest.approx(expected, rel=1e-9)
    assert hd.training_loss(feats[:n], y).item() == pytest.approx(ce(z[:n], y.numpy()), rel=1e-9)


def test_mixoe_defaults_are_openood():
    assert LOSSES["mixoe"](D, K).hparams() == {
        "alpha": 0.1,
        "beta": 1.0,
        "weight": 1.0,
        "mix_op": "cutmix",
    }
    assert LOSSES["mixoe"].outlier_ratio == 1.0
    with pytest.raises(ConfigError, match=r"loss\.mix_op"):
        LOSSES["mixoe"](D, K, mix_op="blend")


@pytest.mark.parametrize("name", [n for n, c in LOSSES.items() if c.uses_outliers])
def test_outlier_heads_refuse_to_train_without_outliers(name):
    from oodlab.task import OODClassificationTask

    with pytest.raises(ConfigError, match=r"outliers="):
        OODClassificationTask(
            backbone="small_cnn",
            backbone_kwargs={"widths": [4, 8]},
            loss={"name": name},
            num_classes=3,
            in_chans=1,
            mean=[0.5],
            std=[0.25],
            outliers={"set": None},
        )
