"""Image lists (OpenOOD's format), streamed: parsing, decoding against PIL, the streaming data
module, the OpenOOD ImageNet configs on a generated root, their errors, resumable downloads,
the decoder choice, and a real ``src/eval.py`` run on generated JPEGs. All offline, in seconds."""

from __future__ import annotations

import hashlib
import http.server
import json
import threading
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from oodlab.data.datamodule import OODDataModule
from oodlab.data.downloads import Archive, download_resumable, fetch_file
from oodlab.data.loaders import TrainBatches
from oodlab.data.preprocessing import Preprocessing
from oodlab.data.sources.image_list import (
    ImageListDataset,
    decode_image,
    image_list_ood_set,
    load_image_lists,
    parse_line,
    read_image_list,
)
from oodlab.data.sources.openood_imagenet import load_openood_imagenet
from oodlab.data.streaming import (
    StreamEvalBatches,
    StreamOptions,
    StreamTrainBatches,
    decode_choice,
    decode_on_device,
)
from oodlab.errors import ConfigError, CorruptDataError, MissingDataError

PRE = Preprocessing(resize=20, crop=16)


def write_jpeg(path: Path, seed: int, size: tuple[int, int], mode: str = "RGB") -> None:
    """A smooth random photo-like image (so JPEG keeps it close), quality 90."""
    rng = np.random.default_rng(seed)
    w, h = size
    small = rng.integers(0, 256, (max(2, h // 8), max(2, w // 8), 3), dtype=np.uint8)
    image = Image.fromarray(small).resize((w, h), Image.Resampling.BICUBIC)
    path.parent.mkdir(parents=True, exist_ok=True)
    image.convert(mode).save(path, quality=90)


def make_list_root(root: Path, classes: int = 3, per_class: int = 6) -> dict[str, Path]:
    """train/val/test lists of labelled JPEGs (varied sizes, one folder with a space) and an
    OOD list, in OpenOOD's format."""
    lines: dict[str, list[str]] = {"train": [], "val": [], "test": [], "ood": []}
    k = 0
    for c in range(classes):
        for i in range(per_class):
            split = ("train", "train", "train", "train", "val", "test")[i % 6]
            rel = f"class {c}/img_{i}.jpg" if c == 0 else f"c{c}/img_{i}.jpg"
            write_jpeg(root / rel, k, (24 + 3 * k % 17, 22 + 5 * k % 13))
            lines[split].append(f"{rel} {c}")
            k += 1
    for i in range(7):
        write_jpeg(root / "ood" / f"o{i}.jpg", 100 + i, (30, 25 + i))
        lines["ood"].append(f"ood/o{i}.jpg -1")
    lists = {}
    for split, rows in lines.items():
        lists[split] = root / f"{split}.txt"
        lists[split].write_text("# comment\n\n" + "\n".join(rows) + "\n")
    return lists


# -- parsing --------------------------------------------------------------------------------
def test_list_lines_are_path_then_integer_label():
    assert parse_line("imagenet_1k/val/ILSVRC2012_val_00000001.JPEG 65\n") == (
        "imagenet_1k/val/ILSVRC2012_val_00000001.JPEG",
        65,
    )
    assert parse_line("ssb_hard/n1/a.JPEG -1") == ("ssb_hard/n1/a.JPEG", -1)
    assert parse_line("my dir/a b.jpg 3") == ("my dir/a b.jpg", 3)  # spaces in paths
    assert parse_line("my dir/a b.jpg") == ("my dir/a b.jpg", -1)  # no label: OOD
    assert parse_line("ood/x.png\t-1") == ("ood/x.png", -1)
    assert parse_line("  ") is None and parse_line("# a comment 3") is None


def test_read_image_list_keeps_file_order(tmp_path):
    path = tmp_path / "l.txt"
    path.write_text("b.jpg 1\n\na c.jpg 0\n# x\nd.jpg\n")
    assert read_image_list(path) == [("b.jpg", 1), ("a c.jpg", 0), ("d.jpg", -1)]
    with pytest.raises(MissingDataError, match=r"missing.txt"):
        read_image_list(tmp_path / "missing.txt")


# -- decoding -------------------------------------------------------------------------------
@pytest.mark.parametrize("size", [(40, 30), (30, 41), (20, 20), (57, 23)])
@pytest.mark.parametrize("interpolation", ["bilinear", "bicubic"])
def test_decoding_equals_an_independent_pil_computation(tmp_path, size, interpolation):
    path = tmp_path / "a.jpg"
    write_jpeg(path, 1, size)
    pre = Preprocessing(resize=20, crop=16, interpolation=interpolation)
    got = decode_image(path, pre)
    # by hand: shorter side to 20 (the longer truncated), centre crop 16
    image = Image.open(path).convert("RGB")
    w, h = image.size
    new = (20, int(20 * h / w)) if w <= h else (int(20 * w / h), 20)
    resample = {"bilinear": Image.Resampling.BILINEAR, "bicubic": Image.Resampling.BICUBIC}
    if new != (w, h):
        image = image.resize(new, resample[interpolation])
    left, top = round((new[0] - 16) / 2), round((new[1] - 16) / 2)
    expected = np.asarray(image.crop((left, top, left + 16, top + 16)))
    assert got.dtype == torch.uint8 and got.shape == (3, 16, 16)
    assert np.array_equal(got.permute(1, 2, 0).numpy(), expected)
    # and torchvision's own Resize + CenterCrop on the PIL image
    from torchvision import transforms as T

    mode = T.InterpolationMode(interpolation)
    tv = T.Compose([T.Resize(20, interpolation=mode), T.CenterCrop(16), T.PILToTensor()])
    assert torch.equal(tv(Image.open(path).convert("RGB")), got)


def test_greyscale_and_png_decode(tmp_path):
    write_jpeg(tmp_path / "g.jpg", 2, (30, 22), mode="L")
    Image.new("RGB", (25, 25), (10, 200, 30)).save(tmp_path / "p.png")
    assert decode_image(tmp_path / "g.jpg", PRE).shape == (3, 16, 16)
    assert decode_image(tmp_path / "g.jpg", PRE, channels=1).shape == (1, 16, 16)
    assert decode_image(tmp_path / "p.png", PRE)[:, 0, 0].tolist() == [10, 200, 30]


def test_the_batched_device_decoder_matches_the_cpu_path(tmp_path):
    """The GPU path's code (bytes from the workers, one batched decode_jpeg, tensor resize and
    crop) run on the CPU device: close to PIL's pixels, PNGs passed through decoded."""
    lists = make_list_root(tmp_path)
    data = load_image_lists(
        root=str(tmp_path), train=str(lists["train"]), test=str(lists["test"]), preprocessing=PRE
    ).train
    items = [data.item(i, encoded=True) for i in range(4)]
    assert all(kind == 1 for _, _, kind, _ in items)
    got = decode_on_device(
        [d for d, *_ in items], torch.ones(4, dtype=torch.uint8), PRE, 3, torch.device("cpu")
    )
    expected = torch.stack([data[i][0] for i in range(4)])
    assert got.shape == expected.shape and got.dtype == torch.uint8
    assert (got.float() - expected.float()).abs().mean() < 3.0


# -- the decoder choice ------------------------------------------------------------------------
def test_decoder_choice_falls_back_to_the_cpu_and_says_why(caplog):
    assert decode_choice("cpu").used == "cpu"
    auto = decode_choice("auto", torch.device("cpu"))
    assert auto.used == "cpu" and "not CUDA" in auto.reason
    with caplog.at_level("WARNING"):
        forced = decode_choice("gpu", torch.device("cpu"))
    assert forced.used == "cpu" and "data.decode=gpu is not possible" in caplog.text
    if not torch.cuda.is_available():
        assert decode_choice("auto").to_json()["used"] == "cpu"
    with pytest.raises(ConfigError, match=r"data.decode"):
        StreamOptions(decode="nvjpeg")


# -- the streaming data module -----------------------------------------------------------------
def _datamodule(tmp_path: Path, lists: dict[str, Path], workers: int) -> OODDataModule:
    common = dict(root=str(tmp_path), preprocessing=PRE.to_json(), num_workers=workers)
    dataset = {
        "_target_": "oodlab.data.sources.image_list.load_image_lists",
        "train": str(lists["train"]),
        "val": str(lists["val"]),
        "test": str(lists["test"]),
        **common,
    }
    ood = {"_target_": "oodlab.data.sources.image_list.image_list_ood_set", "_partial_": True}
    ood |= {"list": str(lists["ood"]), "root": str(tmp_path), "streaming": True}
    dm = OODDataModule(dataset, {"mine": ood}, dict(ood), batch_size=4, eval_batch_size=5)
    dm.setup()
    return dm


def test_streaming_batches_are_the_same_with_0_and_2_workers(tmp_path):
    lists = make_list_root(tmp_path)
    batches = {}
    for workers in (0, 2):
        dm = _datamodule(tmp_path, lists, workers)
        assert dm.data is not None and dm.data.streaming and dm.preprocessing == PRE
        assert dm.data.shape == (3, 16, 16) and dm.num_classes == 3
        assert len(dm.ood["mine"]) == 7 and bool((dm.ood["mine"].labels == -1).all())
        train = list(dm.train_dataloader())
        evals = [list(loader) for loader in dm.val_dataloader()]
        batches[workers] = (train, evals)
        assert all(x.dtype == torch.uint8 and x.shape[1:] == (3, 16, 16) for x, _ in train)
    for a, b in zip(batches[0][0], batches[2][0], strict=True):
        assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    for la, lb in zip(batches[0][1], batches[2][1], strict=True):
        assert all(torch.equal(x[0], y[0]) for x, y in zip(la, lb, strict=True))


def test_streaming_training_order_is_the_in_memory_order_and_resumes(tmp_path):
    lists = make_list_root(tmp_path)
    data = load_image_lists(
        root=str(tmp_path),
        train=str(lists["train"]),
        test=str(lists["test"]),
        preprocessing=PRE,
        num_workers=0,
    ).train
    stream = StreamTrainBatches(data, 3, seed=5, epoch=2)
    memory = TrainBatches(
        _tensors(data), 3, seed=5, epoch=2
    )  # the same images, in memory: the same batches
    got, want = list(stream), list(memory)
    assert len(got) == len(want) == len(stream)
    assert all(torch.equal(a[1], b[1]) and torch.equal(a[0], b[0]) for a, b in zip(got, want))
    resumed = StreamTrainBatches(data, 3, seed=5)
    resumed.load_state_dict({"epoch": 2, "batches": 2})
    assert [torch.equal(a[1], b[1]) for a, b in zip(list(resumed), got[2:])] == [True] * (
        len(got) - 2
    )


def _tensors(data: ImageListDataset):
    from oodlab.data.types import ImageTensors

    return ImageTensors(torch.stack([data[i][0] for i in range(len(data))]), data.labels)


def test_evaluation_blocks_cover_every_image_once_across_processes(tmp_path):
    lists = make_list_root(tmp_path)
    data = image_list_ood_set(shape=(3, 16, 16), list=str(lists["ood"]), root=str(tmp_path))
    data = data.with_options(StreamOptions(num_workers=0))
    whole = torch.cat([x for x, _ in StreamEvalBatches(data, 2)])
    parts = [
        torch.cat([x for x, _ in StreamEvalBatches(data, 2, world_size=2, rank=r)]) for r in (0, 1)
    ]
    assert torch.equal(torch.cat(parts), whole) and len(whole) == 7
    # the evaluation cache's key: stable, and it changes with the files and the preprocessing
    key = data.cache_key()
    assert key == data.cache_key() and key != data.subset([0, 1]).cache_key()
    other = image_list_ood_set(
        shape=(3, 8, 8),
        list=str(lists["ood"]),
        root=str(tmp_path),
        preprocessing=PRE.__class__(9, 8),
    )
    assert other.cache_key() != key


def test_oodlab_evaluate_reads_a_streaming_set(tmp_path):
    import oodlab

    lists = make_list_root(tmp_path)
    split = load_image_lists(
        root=str(tmp_path),
        train=str(lists["train"]),
        val=str(lists["val"]),
        test=str(lists["test"]),
        preprocessing=PRE,
        num_workers=0,
    )
    ood = image_list_ood_set(
        shape=(3, 16, 16), list=str(lists["ood"]), root=str(tmp_path), preprocessing=PRE
    ).with_options(StreamOptions(num_workers=0))
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 16 * 16, 3))
    record = oodlab.evaluate(model, split.test, {"ood": ood}, scores=["msp"], batch_size=4)
    assert 0.0 <= record.ood["msp"]["ood"]["auroc"] <= 1.0


def test_a_missing_image_stops_the_loader_with_a_one_line_error(tmp_path):
    lists = make_list_root(tmp_path)
    data = image_list_ood_set(shape=(3, 16, 16), list=str(lists["ood"]), root=str(tmp_path))
    (tmp_path / "ood" / "o3.jpg").unlink()
    with pytest.raises(MissingDataError, match=r"o3.jpg"):
        list(StreamEvalBatches(data.with_options(StreamOptions(num_workers=1)), 2))
    (tmp_path / "ood" / "o4.jpg").write_bytes(b"not a jpeg")
    data = data.subset([4])
    with pytest.raises(CorruptDataError, match=r"Cannot read image file .*o4.jpg"):
        list(StreamEvalBatches(data.with_options(StreamOptions(num_workers=0)), 2))


# -- OpenOOD's ImageNet layout, generated --------------------------------------------------------
def make_openood_root(root: Path, nested_val: bool = False) -> Path:
    """A tiny OpenOOD data folder: benchmark_imglist/imagenet/*.txt, images_largescale/
    {imagenet_1k,ssb_hard,ninco,inaturalist,openimage_o}, images_classic/texture."""
    lists = root / "benchmark_imglist" / "imagenet"
    lists.mkdir(parents=True)
    big, k = root / "images_largescale", 0
    rows: dict[str, list[str]] = {"train": [], "val": [], "test": []}
    for label, wnid in enumerate(("n01440764", "n01443537")):
        for i in range(4):
            rel = f"imagenet_1k/train/{wnid}/{wnid}_{i}.JPEG"
            write_jpeg(big / rel, k, (40, 30))
            rows["train"].append(f"{rel} {label}")
            k += 1
        for split in ("val", "test", "test"):
            name = f"ILSVRC2012_val_{k:08d}.JPEG"
            where = f"imagenet_1k/val/{wnid}/{name}" if nested_val else f"imagenet_1k/val/{name}"
            write_jpeg(big / where, k, (33, 44))
            rows[split].append(f"imagenet_1k/val/{name} {label}")
            k += 1
    for split, lines in rows.items():
        (lists / f"{split}_imagenet.txt").write_text("\n".join(lines) + "\n")
    for name, folder, archive in (
        ("ssb_hard", big, "ssb_hard"),
        ("ninco", big, "ninco"),
        ("inaturalist", big, "inaturalist"),
        ("textures", root / "images_classic", "texture"),
        ("openimage_o", big, "openimage_o"),
    ):
        entries = []
        for i in range(3):
            rel = f"{archive}/x/{name}_{i}.jpg"
            write_jpeg(folder / rel, 500 + i, (50, 40))
            entries.append(f"{rel} -1")
        (lists / f"test_{name}.txt").write_text("\n".join(entries) + "\n")
    (lists / "val_openimage_o.txt").write_text("openimage_o/x/openimage_o_0.jpg -1\n")
    return root


def test_imagenet1k_config_composes_and_loads_a_generated_openood_root(tmp_path, compose_cfg):
    from oodlab.run.build import build_datamodule

    root = make_openood_root(tmp_path / "openood")
    cfg = compose_cfg(
        [
            "data=imagenet1k",
            "ood=openood_imagenet1k",
            f"data.root={root}",
            "data.num_workers=0",
            "data.dataset.preprocessing.resize=36",
            "data.dataset.preprocessing.crop=32",
        ],
        config_name="eval",
    )
    dm = build_datamodule(cfg)
    assert dm.data is not None and dm.data.name == "imagenet1k"
    assert (len(dm.data.train), len(dm.data.val), len(dm.data.test)) == (8, 2, 4)
    assert dm.data.train.classes == ("n01440764", "n01443537") and dm.num_classes == 2
    assert set(dm.ood) == {"ssb_hard", "ninco", "inaturalist", "textures", "openimage_o"}
    assert len(dm.val_ood) == 1 and dm.preprocessing.crop == 32
    images, labels = next(iter(dm.val_dataloader()[0]))
    assert images.shape == (2, 3, 32, 32) and labels.tolist() == [0, 1]
    # the weights' preprocessing replaces the config's
    pre = Preprocessing(resize=24, crop=20, source="weights")
    dm = build_datamodule(cfg, preprocessing=pre)
    assert dm.preprocessing == pre and dm.data.shape == (3, 20, 20)
    assert dm.ood["ninco"].shape == (3, 20, 20) and dm.loading()["decode"]["used"] == "cpu"


def test_imagenet_val_in_class_folders_is_found(tmp_path):
    root = make_openood_root(tmp_path / "openood", nested_val=True)
    data = load_openood_imagenet(root=str(root), preprocessing=PRE, download=False)
    assert Path(data.test.file(0)).parent.name == "n01440764"
    assert data.test[0][0].shape == (3, 16, 16)


def test_missing_imagenet_names_the_folder_the_images_go_in(tmp_path):
    root = make_openood_root(tmp_path / "openood")
    for f in (root / "images_largescale" / "imagenet_1k" / "val").iterdir():
        f.unlink()
    with pytest.raises(MissingDataError) as err:
        load_openood_imagenet(root=str(root), preprocessing=PRE, download=False)
    text = str(err.value)
    assert "\n" not in text and "not redistributable" in text
    assert f"{root}/images_largescale/imagenet_1k/val/" in text


def test_missing_lists_offline_name_the_exact_zip_path(tmp_path):
    with pytest.raises(MissingDataError) as err:
        load_openood_imagenet(root=str(tmp_path), preprocessing=PRE, download=False)
    text = str(err.value)
    assert "\n" not in text
    assert f"{tmp_path}/benchmark_imglist.zip" in text
    assert "1lI1j0_fDDvjIt9JlWAw09X8ks-yrR_H1" in text and "quota" in text


def test_an_ood_zip_put_in_place_by_hand_is_extracted(tmp_path):
    from oodlab.data.sources.openood_imagenet import openood_imagenet_ood_set

    root = make_openood_root(tmp_path / "openood")
    ninco = root / "images_largescale" / "ninco"
    zip_path = root / "images_largescale" / "ninco.zip"
    with zipfile.ZipFile(zip_path, "w") as zf:  # OpenOOD's zips may wrap their folder
        for f in sorted(ninco.rglob("*.jpg")):
            zf.write(f, str(f.relative_to(root / "images_largescale")))
    import shutil

    shutil.rmtree(ninco)
    data = openood_imagenet_ood_set(
        shape=(3, 16, 16), name="ninco", root=str(root), download=False, preprocessing=PRE
    )
    assert len(data) == 3 and data[2][0].shape == (3, 16, 16)


# -- downloads ----------------------------------------------------------------------------------
class _RangeHandler(http.server.SimpleHTTPRequestHandler):
    """Serves files with single-range support (Python's handler has none)."""

    def log_message(self, *args):
        pass

    def do_GET(self):
        path = Path(self.translate_path(self.path))
        data = path.read_bytes()
        start = 0
        if "Range" in self.headers:
            start = int(self.headers["Range"].split("=")[1].split("-")[0])
            self.server.ranges.append(start)  # type: ignore[attr-defined]
            if start >= len(data):
                self.send_response(416)
                self.end_headers()
                return
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        else:
            self.send_response(200)
        self.send_header("Content-Type", "application/zip")
        self.send_header("Content-Length", str(len(data) - start))
        self.end_headers()
        self.wfile.write(data[start:])


@pytest.fixture
def server(tmp_path):
    served = tmp_path / "served"
    served.mkdir()
    handler = lambda *a, **k: _RangeHandler(*a, directory=str(served), **k)  # noqa: E731
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    httpd.ranges = []  # type: ignore[attr-defined]
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield served, f"http://127.0.0.1:{httpd.server_address[1]}", httpd
    httpd.shutdown()


def test_a_download_resumes_from_its_partial_file_and_checks_the_md5(tmp_path, server):
    served, url, httpd = server
    payload = np.random.default_rng(0).bytes(300_000)
    (served / "a.zip").write_bytes(payload)
    md5 = hashlib.md5(payload).hexdigest()
    out = tmp_path / "dl" / "a.zip"
    out.parent.mkdir()
    (out.parent / "a.zip.part").write_bytes(payload[:123_456])
    download_resumable(f"{url}/a.zip", out, md5=md5)
    assert out.read_bytes() == payload and httpd.ranges == [123_456]
    assert not (out.parent / "a.zip.part").exists()
    # a wrong checksum: the partial file is deleted and the error names the URL
    with pytest.raises(CorruptDataError, match=r"Checksum mismatch for .*a.zip"):
        download_resumable(f"{url}/a.zip", tmp_path / "dl" / "b.zip", md5="0" * 32)
    assert (
        not (tmp_path / "dl" / "b.zip.part").exists() and not (tmp_path / "dl" / "b.zip").exists()
    )


def test_file_urls_download_and_offline_errors_name_the_path(tmp_path):
    src = tmp_path / "src.zip"
    with zipfile.ZipFile(src, "w") as zf:
        zf.writestr("x/a.txt", "hello")
    archive = Archive(
        "test set", "src.zip", url=src.as_uri(), md5=hashlib.md5(src.read_bytes()).hexdigest()
    )
    got = fetch_file(archive, tmp_path / "out" / "src.zip", True, "")
    assert got.read_bytes() == src.read_bytes()
    with pytest.raises(MissingDataError) as err:
        fetch_file(archive, tmp_path / "elsewhere" / "src.zip", False, "")
    assert f"to {tmp_path}/elsewhere/src.zip" in str(err.value) and "\n" not in str(err.value)
    bad = Archive("test set", "nope.zip", url=(tmp_path / "nope.zip").as_uri())
    with pytest.raises(MissingDataError, match=r"Downloading .*nope.zip failed"):
        fetch_file(bad, tmp_path / "out" / "nope.zip", True, "")


# -- the real command line ---------------------------------------------------------------------
def test_eval_cli_on_image_lists(run_cli, tmp_path):
    import timm

    root = tmp_path / "imgs"
    rows: dict[str, list[str]] = {"train": [], "test": [], "ood": []}
    for i in range(24):
        label, split = i % 2, ("train", "train", "test")[i % 3]
        write_jpeg(root / f"c{label}" / f"{i}.jpg", i, (64, 64))
        rows[split].append(f"c{label}/{i}.jpg {label}")
    for i in range(6):
        write_jpeg(root / "ood" / f"{i}.jpg", 99 + i, (64, 64))
        rows["ood"].append(f"ood/{i}.jpg")
    for split, lines in rows.items():
        (root / f"{split}.txt").write_text("\n".join(lines) + "\n")
    torch.save(timm.create_model("resnet10t", num_classes=2).state_dict(), tmp_path / "w.pth")
    out = tmp_path / "eval"
    proc = run_cli(
        "eval.py", "arch=resnet10t", f"weights={tmp_path / 'w.pth'}",
        "data=image_list", f"data.dataset.root={root}", "data.dataset.train=train.txt",
        "data.dataset.test=test.txt", "data.dataset.val_size=4", "data.num_workers=1",
        "data.dataset.preprocessing.resize=72", "data.dataset.preprocessing.crop=64",
        "data.eval_batch_size=8", "ood=image_list", f"ood.val.list={root / 'ood.txt'}",
        f"ood.val.root={root}", "+ood_set@ood.sets.mine=image_list",
        f"ood.sets.mine.list={root / 'ood.txt'}", f"ood.sets.mine.root={root}",
        "eval.scores=[msp,energy]", "plots=false", f"hydra.run.dir={out}",
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    record = json.loads((out / "results.json").read_text())
    assert set(record["ood"]["msp"]) >= {"mine"}


def test_train_cli_on_a_streaming_image_list(run_cli, tmp_path):
    """Training reads streamed uint8 batches through the same task hooks (ImageNet-200
    fine-tuning takes this path)."""
    lists = make_list_root(tmp_path / "r", classes=2, per_class=12)
    root = tmp_path / "r"
    out = tmp_path / "train"
    proc = run_cli(
        "train.py", "data=image_list", f"data.dataset.root={root}",
        f"data.dataset.train={lists['train']}", f"data.dataset.val={lists['val']}",
        f"data.dataset.test={lists['test']}", "data.dataset.preprocessing.resize=20",
        "data.dataset.preprocessing.crop=16", "data.num_workers=1", "data.batch_size=4",
        "data.eval_batch_size=4", "ood=image_list", f"ood.val.list={lists['ood']}",
        f"ood.val.root={root}", "trainer.max_epochs=1", "model=small_cnn",
        "eval.scores=[msp]", "plots=false", "logger=none", f"hydra.run.dir={out}",
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert (out / "results.json").is_file()
