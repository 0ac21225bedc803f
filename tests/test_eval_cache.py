"""The evaluation cache (one inference pass per dataset, read back by later evaluations),
``oodlab.evaluate_outputs`` (no model), and the chunked score fits against float64 references
with chunk sizes that split the data unevenly."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import compose_config
from hydra.core.global_hydra import GlobalHydra
from torch import nn

import oodlab
from oodlab.data.preprocessing import Preprocessing
from oodlab.errors import ConfigError
from oodlab.evaluation import cache as cache_module
from oodlab.evaluation.cache import CacheKey, CacheSettings, OutputCache, read_entry
from oodlab.evaluation.engine import Inference, infer
from oodlab.evaluation.inputs import as_eval_set
from oodlab.evaluation.model import ScoringModel
from oodlab.outputs.record import RunRecord
from oodlab.run.evaluate import evaluate_checkpoint
from oodlab.run.train import train
from oodlab.scores import Outputs, _posthoc, create_score
from oodlab.scores.feature import KNN, Mahalanobis

REPO = Path(__file__).resolve().parents[1]


# -- a tiny model and data for the API ----------------------------------------------------------
def tiny_net(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Flatten(), nn.Linear(3 * 8 * 8, 12), nn.ReLU(), nn.Linear(12, 4))


def images(n: int, seed: int, labelled: bool = True):
    g = torch.Generator().manual_seed(seed)
    x = torch.randint(0, 256, (n, 3, 8, 8), dtype=torch.uint8, generator=g)
    return (x, torch.randint(0, 4, (n,), generator=g)) if labelled else x


SETS = {
    "id": images(37, 1),
    "val": images(29, 2),
    "train": images(83, 3),
    "val_ood": images(21, 4, False),
    "ood": {"noise": images(26, 5, False), "other": images(19, 6, False)},
}
SCORES = ["msp", "energy", "knn", "mahalanobis", "react", "vim", "rmds"]
GRIDS = {
    "knn": {"k": [1, 5]},
    "react": {"percentile": [80, 90]},
    "vim": {"dim": [4, 8]},
    "nnguide": {"K": [5]},
}


class Counter:
    """Counts forward calls of a module through a hook."""

    def __init__(self, module: nn.Module):
        self.calls = 0
        module.register_forward_hook(self._count)

    def _count(self, *_: object) -> None:
        self.calls += 1


def run_api(model: nn.Module, cache=None, normalize=((0.5,) * 3, (0.25,) * 3), **kw):
    return oodlab.evaluate(
        model,
        SETS["id"],
        SETS["ood"],
        scores=kw.pop("scores", SCORES),
        id_val=SETS["val"],
        val_ood=SETS["val_ood"],
        id_train=SETS["train"],
        grids=GRIDS,
        normalize=normalize,
        batch_size=16,
        cache=cache,
        **kw,
    )


def tables(record: RunRecord) -> tuple:
    return (
        record.id,
        record.ood,
        {n: c.to_json() for n, c in record.scores.items()},
        record.calibration,
    )


def test_cached_and_uncached_evaluations_agree_and_the_second_runs_no_forward_pass(tmp_path):
    model = tiny_net()
    counter = Counter(model)
    plain = run_api(model)
    assert plain.cache is None and "cache" not in plain.to_json()
    first = run_api(model, cache=tmp_path)
    assert counter.calls > 0 and set(first.cache["sets"].values()) == {"miss"}
    assert set(first.cache["sets"]) == {
        "id_test",
        "noise",
        "other",
        "id_val",
        "val_ood",
        "id_train",
    }
    counter.calls = 0
    second = run_api(model, cache=tmp_path, scores=["msp", "knn", "vim", "nnguide"])
    assert counter.calls == 0, "a cache hit runs no forward pass"
    assert set(second.cache["sets"].values()) == {"hit"}
    third = run_api(model, cache=tmp_path)
    assert tables(plain) == tables(first) == tables(third)
    assert second.ood["knn"] == first.ood["knn"]
    # results.json records it, and reads it back
    written = json.loads(json.dumps(third.to_json()))
    assert written["cache"]["sets"]["noise"] == "hit" and written["cache"]["dtype"] == "float32"
    assert RunRecord.from_json(written).cache == third.cache
    # a float16 cache keys apart, and its miss scores exactly what its hit reads
    half = {"dir": tmp_path, "dtype": "float16"}
    miss, hit = run_api(model, cache=half), run_api(model, cache=half)
    assert set(miss.cache["sets"].values()) == {"miss"} and tables(miss) == tables(hit)


def test_changed_weights_normalisation_or_preprocessing_miss_the_cache(tmp_path):
    model = tiny_net()
    run_api(model, cache=tmp_path, scores=["msp"])
    assert set(run_api(model, cache=tmp_path, scores=["msp"]).cache["sets"].values()) == {"hit"}
    other_norm = run_api(model, cache=tmp_path, scores=["msp"], normalize=((0.4,) * 3, (0.25,) * 3))
    assert set(other_norm.cache["sets"].values()) == {"miss"}
    crop = Preprocessing(resize=8, crop=8)
    with_pre = run_api(model, cache=tmp_path, scores=["msp"], preprocessing=crop)
    assert set(with_pre.cache["sets"].values()) == {"miss"}
    bicubic = Preprocessing(resize=8, crop=8, interpolation="bicubic")
    assert set(
        run_api(model, cache=tmp_path, scores=["msp"], preprocessing=bicubic).cache["sets"].values()
    ) == {"miss"}
    with torch.no_grad():
        model[1].weight[0, 0] += 1e-3
    assert set(run_api(model, cache=tmp_path, scores=["msp"]).cache["sets"].values()) == {"miss"}
    # a changed image misses too (its set's content hash), the others still hit
    changed = dict(SETS["ood"])
    x = changed["noise"].clone()
    x[0, 0, 0, 0] ^= 1
    changed["noise"] = x
    record = oodlab.evaluate(
        model,
        SETS["id"],
        changed,
        scores=["msp"],
        normalize=((0.5,) * 3, (0.25,) * 3),
        cache=tmp_path,
    )
    assert record.cache["sets"] == {"id_test": "hit", "noise": "miss", "other": "hit"}


def test_a_head_setting_that_changes_its_logits_misses_the_cache(tmp_path):
    """Equal weights, another forward: T2FNorm's eval_scale changes head(features) and no
    weight, so the cache must not hand back the other setting's logits."""
    from oodlab.losses.t2fnorm import T2FNormHead
    from oodlab.models import OODClassifier

    torch.manual_seed(0)
    backbone = nn.Sequential(nn.Flatten(), nn.Linear(3 * 8 * 8, 12), nn.ReLU())
    backbone.num_features = 12  # type: ignore[assignment]
    raw = OODClassifier(backbone, T2FNormHead(12, 4)).eval()
    scaled = OODClassifier(backbone, T2FNormHead(12, 4, eval_scale=True)).eval()
    scaled.head.load_state_dict(raw.head.state_dict())
    first = run_api(raw, cache=tmp_path, scores=["msp"])
    second = run_api(scaled, cache=tmp_path, scores=["msp"])
    assert set(second.cache["sets"].values()) == {"miss"}
    assert first.ood["msp"]["noise"]["auroc"] != second.ood["msp"]["noise"]["auroc"]
    assert set(run_api(scaled, cache=tmp_path, scores=["msp"]).cache["sets"].values()) == {"hit"}


def test_a_crash_while_writing_leaves_no_readable_entry(tmp_path, monkeypatch):
    model = tiny_net()
    settings = CacheSettings(tmp_path, shard_rows=5)
    net = ScoringModel(model)
    from oodlab.api import as_normalize

    normalize = as_normalize(((0.5,) * 3, (0.25,) * 3))
    output_cache = OutputCache(settings, CacheKey.of(net, normalize, "float32"))
    data = as_eval_set(SETS["train"], "train")
    run = Inference(net, normalize, 16, torch.device("cpu"))
    writer = output_cache.writer("id_train", "k", len(data))
    calls = {"n": 0}
    append = writer.append

    def failing(*args):
        calls["n"] += 1
        if calls["n"] == 3:
            raise RuntimeError("killed")
        append(*args)

    monkeypatch.setattr(writer, "append", failing)
    with pytest.raises(RuntimeError):
        infer(run, data, writer)
    assert output_cache.load("id_train", "k") is None
    assert not any((p / "manifest.json").exists() for p in tmp_path.rglob("*") if p.is_dir())
    # written whole, in shards of 5 rows (83 rows: the last shard is short), then read back
    out = infer(run, data, output_cache.writer("id_train", "k", len(data)))
    ref = infer(run, data)
    assert torch.equal(out.features, ref.features) and torch.equal(out.labels, ref.labels)
    assert output_cache.load("id_train", "k") is not None


def test_evaluate_outputs_equals_evaluate_on_the_same_model(tmp_path):
    model = tiny_net()
    record = run_api(model, cache=tmp_path, scores=[*SCORES, "gradnorm", "nnguide", "she"])
    net = ScoringModel(model)
    from oodlab.api import as_normalize

    run = Inference(net, as_normalize(((0.5,) * 3, (0.25,) * 3)), 16, torch.device("cpu"))
    out = {
        name: infer(run, as_eval_set(data, name)) for name, data in SETS.items() if name != "ood"
    }
    ood = {name: infer(run, as_eval_set(data, name)) for name, data in SETS["ood"].items()}
    head = model[3]
    given = oodlab.evaluate_outputs(
        out["id"],
        ood,
        scores=[*SCORES, "gradnorm", "nnguide", "she"],
        id_train=out["train"],
        id_val=out["val"],
        val_ood=out["val_ood"],
        head=(head.weight, head.bias),
        grids=GRIDS,
    )
    assert tables(given) == tables(record)
    assert given.cache is None  # no cache involved: every set was given
    # cache directories as arguments: the entries the evaluation wrote
    entries = {json.loads(p.read_text())["name"]: p.parent for p in tmp_path.rglob("manifest.json")}
    from_dirs = oodlab.evaluate_outputs(
        entries["id_test"],
        {"noise": entries["noise"], "other": entries["other"]},
        scores=["msp", "knn"],
        id_train=entries["id_train"],
        id_val=entries["id_val"],
        val_ood=entries["val_ood"],
        grids=GRIDS,
    )
    assert from_dirs.ood["knn"] == record.ood["knn"]
    assert torch.equal(read_entry(entries["noise"]).logits, ood["noise"].logits)
    with pytest.raises(ConfigError, match=r"odin.*need a model|need.*model"):
        oodlab.evaluate_outputs(out["id"], ood, scores=["msp", "odin"])
    with pytest.raises(ConfigError, match="react"):
        oodlab.evaluate_outputs(out["id"], ood, scores=["react"], id_train=out["train"])
    assert oodlab.Outputs is Outputs


def test_old_results_still_load():
    record = RunRecord.read(REPO / "tests" / "data" / "results_v0.1.json")
    assert record.cache is None and "cache" not in record.to_json()


# -- the real CLI twice on a checkpoint ---------------------------------------------------------
def test_a_second_cli_evaluation_with_other_scores_runs_no_forward_pass(
    data_dir, tmp_path, monkeypatch
):
    out = tmp_path / "trained"
    overrides = ["debug=fast", "+model.backbone_kwargs.widths=[4,8,16]", "eval.scores=[msp]"]
    cfg = compose_config(
        "train",
        [*overrides, "eval.cache.enabled=false"],
        out=out,
        data_dir=data_dir,
        log_dir=tmp_path / "logs",
    )
    train(cfg)
    GlobalHydra.instance().clear()
    ckpt = out / "checkpoints" / "last.ckpt"
    calls = {"n": 0}
    forward = ScoringModel.forward_with_features

    def counted(self, x):
        calls["n"] += 1
        return forward(self, x)

    monkeypatch.setattr(ScoringModel, "forward_with_features", counted)
    cache_dir = tmp_path / "cache"
    results = []
    for i, scores in enumerate(("[msp,knn]", "[maxlogit,energy,mahalanobis]")):
        cfg = compose_config(
            "eval",
            [
                f"ckpt_path={ckpt}",
                "debug=fast",
                f"eval.scores={scores}",
                "eval.grids.knn.k=[1,5]",
                f"eval.cache.dir={cache_dir}",
            ],
            out=tmp_path / f"eval{i}",
            data_dir=data_dir,
            log_dir=tmp_path / "logs",
        )
        before = calls["n"]
        evaluate_checkpoint(cfg)
        GlobalHydra.instance().clear()
        results.append(
            (calls["n"] - before, json.loads((tmp_path / f"eval{i}" / "results.json").read_text()))
        )
    (first_calls, first), (second_calls, second) = results
    assert first_calls > 0 and set(first["cache"]["sets"].values()) == {"miss"}
    assert second_calls == 0, "the second evaluation read every dataset from the cache"
    assert set(second["cache"]["sets"].values()) == {"hit"}
    assert "id_train" in second["cache"]["sets"] and set(second["ood"]) == {
        "maxlogit",
        "energy",
        "mahalanobis",
    }
    assert second["id"] == first["id"]


# -- chunked fits against float64 references ----------------------------------------------------
@pytest.fixture
def uneven_chunks(monkeypatch):
    """Chunk sizes that divide nothing evenly."""
    monkeypatch.setattr(_posthoc, "CHUNK", 7)
    monkeypatch.setattr(KNN, "chunk_rows", 5)
    monkeypatch.setattr(KNN, "bank_rows", 11)
    monkeypatch.setattr(Mahalanobis, "chunk_rows", 6)


def feature_sets(n: int = 101, d: int = 9, k: int = 3, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    train = torch.relu(torch.randn(n, d, generator=g) + 0.3)
    labels = torch.arange(n) % k
    test = torch.relu(torch.randn(23, d, generator=g) * 1.5)
    head = nn.Linear(d, k)
    with torch.no_grad():
        head.weight.copy_(torch.randn(k, d, generator=g))
        head.bias.copy_(torch.randn(k, generator=g))
    model = nn.Module()
    model.head = head
    model.anchor = nn.Parameter(torch.empty(0))
    with torch.no_grad():
        out = lambda h, y: Outputs(head(h), h, y)  # noqa: E731
        return model, out(train, labels), out(test, torch.full((23,), -1))


def test_chunked_percentile_is_numpys_with_ties_and_a_missed_bracket():
    g = torch.Generator().manual_seed(1)
    x = torch.relu(torch.randn(257, 13, generator=g)).float()  # about half the values are 0
    x[5:40, :] = 0.75  # many ties away from 0
    for q in (0.0, 10.0, 37.5, 50.0, 66.0, 90.0, 99.9, 100.0):
        want = np.percentile(x.numpy().ravel(), q)
        for rows in (1, 3, 8192):  # one sampled row: the bracket misses and is widened
            assert _posthoc.chunked_percentile(x, q, sample_rows=rows) == pytest.approx(
                want, rel=1e-7, abs=1e-9
            ), (q, rows)


@pytest.mark.usefixtures("uneven_chunks")
def test_chunked_fits_equal_float64_references():
    model, train, test = feature_sets()
    h, y, x = train.features.double().numpy(), train.labels.numpy(), test.features.double().numpy()
    unit = lambda a: a / np.linalg.norm(a, axis=1, keepdims=True)  # noqa: E731
    # KNN: the k-th largest cosine against the whole bank, read in blocks of 11 rows
    knn = create_score("knn", k=4)
    knn.fit(train, model)
    cos = unit(x) @ unit(h).T
    want = -np.sqrt(np.clip(2 - 2 * np.sort(cos, axis=1)[:, -4], 0, None))
    np.testing.assert_allclose(knn.score(test).numpy(), want, rtol=1e-6, atol=1e-6)
    # Mahalanobis: the tied covariance accumulated over chunks of 7 rows
    maha = create_score("mahalanobis")
    maha.fit(train, model)
    means = np.stack([h[y == c].mean(0) for c in range(3)])
    cov = sum(np.outer(r - means[c], r - means[c]) for r, c in zip(h, y)) / len(h)
    prec = np.linalg.pinv(cov)
    d2 = np.stack([np.einsum("nd,de,ne->n", x - m, prec, x - m) for m in means], axis=1)
    np.testing.assert_allclose(maha.score(test).numpy(), -d2.min(1), rtol=1e-5, atol=1e-6)
    # RMDS with unlabelled rows skipped in place (no copy of the labelled ones)
    y_missing = train.labels.clone()
    y_missing[::10] = -1
    rmds = create_score("rmds")
    rmds.fit(Outputs(train.logits, train.features, y_missing), model)
    keep = y_missing.numpy() >= 0
    hk, yk = h[keep], y_missing.numpy()[keep]
    means = np.stack([hk[yk == c].mean(0) for c in range(3)])
    cov = sum(np.outer(r - means[c], r - means[c]) for r, c in zip(hk, yk)) / len(hk)
    mu0 = hk.mean(0)
    cov0 = (hk - mu0).T @ (hk - mu0) / len(hk)
    p, p0 = np.linalg.pinv(cov), np.linalg.pinv(cov0)
    d2 = np.stack([np.einsum("nd,de,ne->n", x - m, p, x - m) for m in means], axis=1)
    d0 = np.einsum("nd,de,ne->n", x - mu0, p0, x - mu0)
    np.testing.assert_allclose(rmds.score(test).numpy(), -d2.min(1) + d0, rtol=1e-4, atol=1e-5)
    # ReAct: the exact percentile of every training activation
    react = create_score("react", percentile=85.0)
    react.fit(train, model)
    assert react.threshold == pytest.approx(np.percentile(h.ravel(), 85.0))


@pytest.mark.usefixtures("uneven_chunks")
def test_fp32_chunks_stay_close_to_float64(monkeypatch):
    model, train, test = feature_sets(n=211, d=17)
    reference = {}
    for name in ("knn", "mahalanobis", "vim", "rmds"):
        score = create_score(name, **({"dim": 8} if name == "vim" else {}))
        score.fit(train, model)
        reference[name] = score.score(test)
    monkeypatch.setitem(_posthoc.PRECISION, "cpu", torch.float32)
    for name, want in reference.items():
        score = create_score(name, **({"dim": 8} if name == "vim" else {}))
        score.fit(train, model)
        got = score.score(test)
        scale = want.abs().max()
        assert float((got - want).abs().max() / scale) < 1e-4, name


def test_memory_mapped_rows_are_read_in_chunks_without_a_copy(tmp_path):
    model, train, test = feature_sets(n=64)
    np.save(tmp_path / "features.npy", train.features.numpy())
    mapped = _posthoc.map_rows(tmp_path / "features.npy")
    assert torch.equal(mapped, train.features)
    assert mapped.untyped_storage().data_ptr() in _posthoc._MAPPED
    knn = create_score("knn", k=3)
    knn.fit(Outputs(train.logits, mapped, train.labels), model)
    assert knn.bank is mapped  # the bank is the mapped file itself on the CPU
    plain = create_score("knn", k=3)
    plain.fit(train, model)
    assert torch.equal(knn.score(test), plain.score(test))
    assert cache_module.FORMAT_VERSION == 1
