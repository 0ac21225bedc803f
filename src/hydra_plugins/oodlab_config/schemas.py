"""The schema of every config group: a dataclass per group, or per option where the options of
a group have different keys (a loss head's hyperparameters, an OOD set builder's arguments).

Each field has a type (OmegaConf refuses a wrong one while Hydra composes, before torch loads),
one line of meaning and, where the key has one, a range or a set of choices (its ``check``,
applied by the validation pass, oodlab.config.validate). Every field defaults to MISSING: the
yaml files set the values, and a schema never adds a key that its yaml lacks.

A yaml file names its schema first in its defaults list, e.g. ``- /schema/loss/logitnorm@_here_``
(:data:`GROUP_SCHEMAS` maps each ConfigStore name to its dataclass). ``OPEN`` schemas accept
keys they do not declare (the Lightning Trainer's and the LR schedulers' other arguments); their
known extra keys are typed in :data:`EXTRAS`, and every other key must be an argument of the
node's ``_target_`` (checked before the run starts).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Optional

from hydra_plugins.oodlab_config.checks import (
    CHANNEL_STATS,
    COUNT_OR_FRACTION,
    FRACTION,
    NAMES,
    NON_NEGATIVE,
    NON_NEGATIVE_INT,
    POSITIVE,
    POSITIVE_INT,
    SEED,
    AnyOf,
    ListOf,
    OneOf,
    Range,
    Text,
    key,
)

# Optional[...] rather than X | None: OmegaConf reads the annotations at runtime on Python 3.10;
# key() returns a dataclasses.field, as field() does
# ruff: noqa: UP045, RUF009

TARGET = "the class or function built from this node (Hydra's instantiate)"
PARTIAL = "built later with the data's shape (Hydra's partial instantiation)"
N_IMAGES = "how many images to draw with `seed`; null = every image"
SEED_HELP = "the seed of the random draw"
ROOT = "the folder datasets are downloaded into"
CACHE_DIR = "the folder of the uint8 tensor caches"
DOWNLOAD = "download the data when it is missing"
FIT = OneOf(("resize_crop", "resize", "center_crop"))
INTERPOLATIONS = OneOf(("nearest", "bilinear", "bicubic"))
DECODE = OneOf(("auto", "cpu", "gpu"))
VAL_FROM = OneOf(("held_out", "train"))
BENCHMARK_CIFAR = OneOf(("cifar10", "cifar100"))
BENCHMARK_IMAGENET = OneOf(("imagenet1k", "imagenet200"))
PRECISIONS = (
    "64-true", "64", 64, "32-true", "32", 32, "16-mixed", "16", 16, "bf16-mixed", "bf16",
    "16-true", "bf16-true", "transformer-engine", "transformer-engine-float16",
)  # fmt: skip


# -- the primary configs ------------------------------------------------------------------------


@dataclass
class TrainRoot:
    """conf/train.yaml's own keys (the groups have their own schemas)."""

    seed: int = key("the seed of every random draw (weights, batches, OOD subsets)", SEED)
    experiment_name: str = key("the run's name in results.json and the loggers", Text())
    plots: bool = key("write PNG plots next to results.json")
    ckpt_path: Optional[str] = key("resume from this checkpoint, or `last`; null = start anew")
    resume: bool = key("skip finished jobs and resume unfinished ones of an existing run dir")
    channels_last: Any = key(
        "channels_last memory format; auto = on for GPU training", OneOf((True, False, "auto"))
    )
    compile: bool = key("torch.compile the network for training")
    verbose_third_party: bool = key("print third-party libraries' known noise")


@dataclass
class EvalRoot:
    """conf/eval.yaml's own keys."""

    ckpt_path: Optional[str] = key("the checkpoint to evaluate (written by src/train.py)")
    arch: Optional[str] = key("a timm name or torchvision:<name>, for a plain state dict")
    weights: Optional[str] = key("a state dict file, `pretrained`, or a torchvision weights name")
    weights_prefix: Optional[str] = key("a key prefix stripped from the state dict")
    preprocessing: Any = key(
        "a torchvision weights name or {resize, crop, interpolation, mean, std}; null = the "
        "data's or the weights' own"
    )
    seed: int = key("the seed of every random draw", SEED)
    experiment_name: str = key("the run's name in results.json and the loggers", Text())
    plots: bool = key("write PNG plots next to results.json")
    verbose_third_party: bool = key("print third-party libraries' known noise")


# -- paths --------------------------------------------------------------------------------------


@dataclass
class Paths:
    root_dir: str = key("the base of the other paths (OODLAB_ROOT)")
    data_dir: str = key("downloaded datasets and caches (OODLAB_DATA_DIR)")
    cache_dir: str = key("the uint8 tensor caches of datasets and OOD sets")
    log_dir: str = key("run directories, the MLflow store, Optuna studies")
    output_dir: str = key("this run's directory (set by Hydra)")


# -- data ---------------------------------------------------------------------------------------


@dataclass
class Augment:
    crop_padding: int = key("random-crop padding in pixels; 0 = no crop", NON_NEGATIVE_INT)
    hflip: bool = key("random horizontal flips")


@dataclass
class Preprocessing:
    resize: int = key("shorter side resized to this many pixels", POSITIVE_INT)
    crop: int = key("centre crop of this size", POSITIVE_INT)
    interpolation: str = key("the resize interpolation", INTERPOLATIONS)
    mean: list[float] = key("per-channel mean", CHANNEL_STATS)
    std: list[float] = key("per-channel standard deviation", CHANNEL_STATS)


@dataclass
class Mnist5kDataset:
    _target_: str = key(TARGET)
    root: str = key(ROOT)
    val_size: Any = key("validation images: a count or a fraction", COUNT_OR_FRACTION)
    test_size: Any = key("test images: a count or a fraction", COUNT_OR_FRACTION)
    split_seed: int = key("the seed of the stratified split", SEED)


@dataclass
class TorchvisionDataset:
    _target_: str = key(TARGET)
    name: str = key("the torchvision dataset", OneOf(("cifar10", "cifar100", "svhn")))
    root: str = key(ROOT)
    cache_dir: str = key(CACHE_DIR)
    download: bool = key(DOWNLOAD)
    val_size: Any = key("validation images: a count or a fraction", COUNT_OR_FRACTION)
    val_from: str = key("held_out: val images not trained on; train: drawn from them", VAL_FROM)
    split_seed: int = key("the seed of the stratified split", SEED)
    train_subset: Any = key("keep this many (or this share of) training images; null = all",
                            COUNT_OR_FRACTION)  # fmt: skip
    mean: Optional[list[float]] = key("per-channel mean", CHANNEL_STATS)
    std: Optional[list[float]] = key("per-channel standard deviation", CHANNEL_STATS)


@dataclass
class FolderDataset:
    _target_: str = key(TARGET)
    path: Optional[str] = key("the image folder or archive (one sub-folder per class)")
    image_size: int = key("images fitted to this size", POSITIVE_INT)
    channels: int = key("3 = RGB, 1 = greyscale", OneOf((1, 3)))
    val_size: Any = key("validation images: a count or a fraction", COUNT_OR_FRACTION)
    test_size: Any = key("test images when there is no test/ split", COUNT_OR_FRACTION)
    split_seed: int = key("the seed of the stratified split", SEED)
    train_subset: Any = key("keep this many (or this share of) training images; null = all",
                            COUNT_OR_FRACTION)  # fmt: skip
    mean: Optional[list[float]] = key("per-channel mean; null = computed", CHANNEL_STATS)
    std: Optional[list[float]] = key("per-channel std; null = computed", CHANNEL_STATS)
    name: Optional[str] = key("the name in results.json; null = the folder's name")
    fit: str = key("how images are fitted to image_size", FIT)
    root: str = key(ROOT)
    cache_dir: str = key(CACHE_DIR)


@dataclass
class ImageListDataset:
    _target_: str = key(TARGET)
    root: str = key("the folder the lists' paths are relative to")
    train: Optional[str] = key("the training list file")
    val: Optional[str] = key("the validation list; null = carved from train")
    test: Optional[str] = key("the test list file")
    name: Optional[str] = key("the name in results.json; null = the train list's folder")
    channels: int = key("3 = RGB, 1 = greyscale", OneOf((1, 3)))
    val_size: Any = key("validation images carved from train", COUNT_OR_FRACTION)
    split_seed: int = key("the seed of the stratified split", SEED)
    train_subset: Any = key("keep this many (or this share of) training images; null = all",
                            COUNT_OR_FRACTION)  # fmt: skip
    check_train: bool = key("check the training images exist before the run")
    preprocessing: Preprocessing = field(default_factory=Preprocessing)
    num_workers: Optional[int] = key("decoding processes; null = min(8, CPUs)", NON_NEGATIVE_INT)
    decode: str = key("where JPEGs are decoded", DECODE)


@dataclass
class OpenoodImagenetDataset:
    _target_: str = key(TARGET)
    benchmark: str = key("OpenOOD's ImageNet benchmark", BENCHMARK_IMAGENET)
    root: str = key("OpenOOD's data folder")
    imagenet_dir: Optional[str] = key("ImageNet's train/ and val/ elsewhere; null = under root")
    train_list: Optional[str] = key("another training list than OpenOOD's")
    val_list: Optional[str] = key("another validation list than OpenOOD's")
    test_list: Optional[str] = key("another test list than OpenOOD's")
    download: bool = key("download OpenOOD's image lists when missing")
    check_train: bool = key("check the training images exist before the run")
    preprocessing: Preprocessing = field(default_factory=Preprocessing)
    num_workers: Optional[int] = key("decoding processes; null = min(8, CPUs)", NON_NEGATIVE_INT)
    decode: str = key("where JPEGs are decoded", DECODE)


@dataclass
class Mnist5kData:
    dataset: Mnist5kDataset = field(default_factory=Mnist5kDataset)
    batch_size: int = key("training batch size", POSITIVE_INT)
    eval_batch_size: int = key("evaluation batch size", POSITIVE_INT)
    on_device: bool = key("keep the uint8 tensors on the training device (no DataLoader)")
    augment: Augment = field(default_factory=Augment)


@dataclass
class TorchvisionData:
    dataset: TorchvisionDataset = field(default_factory=TorchvisionDataset)
    batch_size: int = key("training batch size", POSITIVE_INT)
    eval_batch_size: int = key("evaluation batch size", POSITIVE_INT)
    on_device: bool = key("keep the uint8 tensors on the training device (no DataLoader)")
    augment: Augment = field(default_factory=Augment)


@dataclass
class FolderData:
    dataset: FolderDataset = field(default_factory=FolderDataset)
    batch_size: int = key("training batch size", POSITIVE_INT)
    eval_batch_size: int = key("evaluation batch size", POSITIVE_INT)
    on_device: bool = key("keep the uint8 tensors on the training device (no DataLoader)")
    augment: Augment = field(default_factory=Augment)


@dataclass
class ImageListData:
    num_workers: Optional[int] = key("decoding processes; null = min(8, CPUs)", NON_NEGATIVE_INT)
    decode: str = key("where JPEGs are decoded", DECODE)
    dataset: ImageListDataset = field(default_factory=ImageListDataset)
    batch_size: int = key("training batch size", POSITIVE_INT)
    eval_batch_size: int = key("evaluation batch size", POSITIVE_INT)
    on_device: bool = key("streamed sets are never moved to the device whole")
    augment: Augment = field(default_factory=Augment)


@dataclass
class OpenoodImagenetData:
    root: str = key("OpenOOD's data folder (benchmark_imglist/, images_largescale/)")
    num_workers: Optional[int] = key("decoding processes; null = min(8, CPUs)", NON_NEGATIVE_INT)
    decode: str = key("where JPEGs are decoded", DECODE)
    dataset: OpenoodImagenetDataset = field(default_factory=OpenoodImagenetDataset)
    batch_size: int = key("training batch size", POSITIVE_INT)
    eval_batch_size: int = key("evaluation batch size", POSITIVE_INT)
    on_device: bool = key("streamed sets are never moved to the device whole")
    augment: Augment = field(default_factory=Augment)


# -- OOD sets and suites ------------------------------------------------------------------------


@dataclass
class SyntheticSet:
    _target_: str = key(TARGET)
    _partial_: bool = key(PARTIAL)
    n: Optional[int] = key(N_IMAGES, POSITIVE_INT)
    seed: int = key(SEED_HELP, SEED)


@dataclass
class TorchvisionSet:
    _target_: str = key(TARGET)
    _partial_: bool = key(PARTIAL)
    name: str = key("the torchvision dataset", Text())
    split: str = key("the dataset's split", Text())
    n: Optional[int] = key(N_IMAGES, POSITIVE_INT)
    seed: int = key(SEED_HELP, SEED)
    root: str = key(ROOT)
    cache_dir: str = key(CACHE_DIR)
    download: bool = key(DOWNLOAD)


@dataclass
class TorchvisionUncachedSet:
    _target_: str = key(TARGET)
    _partial_: bool = key(PARTIAL)
    name: str = key("the torchvision dataset", Text())
    split: str = key("the dataset's split", Text())
    n: Optional[int] = key(N_IMAGES, POSITIVE_INT)
    seed: int = key(SEED_HELP, SEED)
    root: str = key(ROOT)
    download: bool = key(DOWNLOAD)


@dataclass
class OdinSet:
    _target_: str = key(TARGET)
    _partial_: bool = key(PARTIAL)
    name: str = key(
        "the ODIN archive",
        OneOf(("isun", "lsun_crop", "lsun_resize", "tin_crop", "tin_resize")),
    )
    n: Optional[int] = key(N_IMAGES, POSITIVE_INT)
    seed: int = key(SEED_HELP, SEED)
    root: str = key(ROOT)
    download: bool = key(DOWNLOAD)


@dataclass
class OpenoodArchiveSet:
    _target_: str = key(TARGET)
    _partial_: bool = key(PARTIAL)
    name: str = key("the OpenOOD set", OneOf(("places365", "tin")))
    benchmark: str = key("whose image list: OpenOOD's CIFAR benchmark", BENCHMARK_CIFAR)
    n: Optional[int] = key(N_IMAGES, POSITIVE_INT)
    seed: int = key(SEED_HELP, SEED)
    root: str = key(ROOT)
    download: bool = key(DOWNLOAD)


@dataclass
class Mnist5kRgbSet:
    _target_: str = key(TARGET)
    _partial_: bool = key(PARTIAL)
    n: Optional[int] = key(N_IMAGES, POSITIVE_INT)
    seed: int = key(SEED_HELP, SEED)
    root: str = key(ROOT)


@dataclass
class DigitTransformsSet:
    _target_: str = key(TARGET)
    _partial_: bool = key(PARTIAL)
    kind: str = key("transforms joined by +: mix, rot90, blur, permute, invert", Text())
    n: Optional[int] = key(N_IMAGES, POSITIVE_INT)
    seed: int = key(SEED_HELP, SEED)
    split: str = key("the MNIST-5k split the digits come from", OneOf(("train", "val", "test")))
    root: str = key(ROOT)
    id_loader: str = key("the ID data's loader (its split is reused for MNIST-5k)")
    val_size: Any = key("MNIST-5k's validation size", COUNT_OR_FRACTION)
    test_size: Any = key("MNIST-5k's test size", COUNT_OR_FRACTION)
    split_seed: Any = key("MNIST-5k's split seed", SEED)


@dataclass
class FolderSet:
    _target_: str = key(TARGET)
    _partial_: bool = key(PARTIAL)
    path: Optional[str] = key("the image folder or archive, at any depth")
    n: Optional[int] = key(N_IMAGES, POSITIVE_INT)
    seed: int = key(SEED_HELP, SEED)
    fit: str = key("how images are fitted to the ID shape", FIT)
    root: str = key(ROOT)
    cache_dir: str = key(CACHE_DIR)
    cacheable: bool = key("cache by this config (the folder builder caches by file contents)")


@dataclass
class ImageListSet:
    _target_: str = key(TARGET)
    _partial_: bool = key(PARTIAL)
    list: Optional[str] = key("the list file: absolute, or relative to root")
    root: str = key("the folder the list's paths are relative to")
    n: Optional[int] = key(N_IMAGES, POSITIVE_INT)
    seed: int = key(SEED_HELP, SEED)
    streaming: bool = key("streamed from the files, never cached as tensors")


@dataclass
class OpenoodImagenetSet:
    _target_: str = key(TARGET)
    _partial_: bool = key(PARTIAL)
    name: str = key(
        "the OpenOOD ImageNet OOD set",
        OneOf(("ssb_hard", "ninco", "inaturalist", "textures", "openimage_o")),
    )
    benchmark: str = key("OpenOOD's ImageNet benchmark", BENCHMARK_IMAGENET)
    split: str = key("test, or val (OpenOOD's validation OOD list)", OneOf(("test", "val")))
    root: str = key("OpenOOD's data folder")
    list: Optional[str] = key("another list file than OpenOOD's")
    n: Optional[int] = key(N_IMAGES, POSITIVE_INT)
    seed: int = key(SEED_HELP, SEED)
    download: bool = key("download the set's zip when missing")
    streaming: bool = key("streamed from the files, never cached as tensors")


@dataclass
class Ood:
    sets: dict[str, Any] = key("the test OOD sets: name -> an ood_set config")
    val: Optional[Any] = key("the validation OOD set (an ood_set config); null = none")
    curve: Optional[str] = key("the OOD set whose mean logit norm is tracked every epoch")
    curve_n: Optional[int] = key("images of it tracked (a fixed subset); null = all", POSITIVE_INT)
    mean_exclude: Any = key("sets left out of the `mean` row", NAMES)
    groups: dict[str, list[str]] = key("named groups of sets, each with its own mean row")


# -- model, loss heads, optimisation --------------------------------------------------------------


@dataclass
class Model:
    backbone: str = key("a timm model name (oodlab registers its small-image models)", Text())
    backbone_kwargs: dict[str, Any] = key("keyword arguments of the timm model")
    pretrained: bool = key("start from timm's published weights")
    weights: Optional[str] = key("start from a local .pth/.safetensors state dict")
    weights_prefix: Optional[str] = key("a key prefix stripped from those weights")


LOSS_NAME = "the head registered under this name in oodlab.losses"
HEAD_CHECKS = "range checked by the head"


def _hp(help: str) -> Any:
    return key(f"{help} ({HEAD_CHECKS})")


@dataclass
class CeLoss:
    name: str = key(LOSS_NAME)
    tau: Optional[float] = key("no effect on CE: present so that sweeps over loss and tau compose")


@dataclass
class DismaxLoss:
    name: str = key(LOSS_NAME)
    temperature: float = _hp("post-hoc calibration temperature")
    entropic_scale: float = _hp("the entropic scale")
    fpr: bool = _hp("fractional probability regularisation (DisMax+)")


@dataclass
class NameOnlyLoss:
    name: str = key(LOSS_NAME)


@dataclass
class EnergyOeLoss:
    name: str = key(LOSS_NAME)
    weight: float = _hp("weight of the energy hinge terms")
    m_in: float = _hp("energy margin of ID images")
    m_out: float = _hp("energy margin of outliers")


@dataclass
class FocalLoss:
    name: str = key(LOSS_NAME)
    gamma: float = _hp("the focusing parameter")
    adaptive: bool = _hp("FLSD-53: gamma 5 where p_y < 0.2")


@dataclass
class IsomaxLoss:
    name: str = key(LOSS_NAME)
    entropic_scale: float = _hp("the entropic scale")


@dataclass
class LabelSmoothingLoss:
    name: str = key(LOSS_NAME)
    epsilon: float = _hp("the smoothing share")


@dataclass
class LogitPenaltyLoss:
    name: str = key(LOSS_NAME)
    weight: float = _hp("lambda in CE + lambda * mean ||f||^2")


@dataclass
class LogitNormLoss:
    name: str = key(LOSS_NAME)
    tau: float = _hp("the temperature")


@dataclass
class MixoeLoss:
    name: str = key(LOSS_NAME)
    alpha: float = _hp("lam ~ Beta(alpha, beta)")
    beta: float = _hp("lam ~ Beta(alpha, beta)")
    weight: float = _hp("weight of the mixed soft CE")
    mix_op: str = _hp("cutmix or mixup")


@dataclass
class MixupLoss:
    name: str = key(LOSS_NAME)
    alpha: float = _hp("lam ~ Beta(alpha, alpha)")


@dataclass
class OeLoss:
    name: str = key(LOSS_NAME)
    weight: float = _hp("lambda of CE + lambda * CE(outliers, uniform)")


@dataclass
class RegmixupLoss:
    name: str = key(LOSS_NAME)
    alpha: float = _hp("lam ~ Beta(alpha, alpha)")


@dataclass
class T2fnormLoss:
    name: str = key(LOSS_NAME)
    tau: float = _hp("feature norm in training is 1/tau")
    eval_scale: bool = _hp("evaluate on W f / tau + b")


LEARNING_RATE = Range(0, low_open=True, what="a learning rate")


@dataclass
class AdamW:
    _target_: str = key(TARGET)
    lr: float = key("the learning rate", LEARNING_RATE)
    weight_decay: float = key("the weight decay", NON_NEGATIVE)


@dataclass
class Sgd:
    _target_: str = key(TARGET)
    lr: float = key("the learning rate", LEARNING_RATE)
    momentum: float = key("the momentum", NON_NEGATIVE)
    weight_decay: float = key("the weight decay", NON_NEGATIVE)
    nesterov: bool = key("Nesterov momentum")


INTERVAL = key("when the scheduler steps", OneOf(("step", "epoch")))


@dataclass
class Cosine:
    _target_: str = key(TARGET)
    T_max: Optional[int] = key("steps (or epochs) of the decay; null = the whole run", POSITIVE_INT)
    interval: str = INTERVAL


@dataclass
class CosineExtra:
    eta_min: float = key("the lowest learning rate", NON_NEGATIVE)


@dataclass
class MultiStep:
    _target_: str = key(TARGET)
    milestones: Any = key("epochs (or steps) at which lr is multiplied by gamma",
                          ListOf(Range(1, integer=True), what="integers >= 1"))  # fmt: skip
    gamma: float = key("the factor at each milestone", POSITIVE)
    interval: str = INTERVAL


@dataclass
class Trainer:
    _target_: str = key(TARGET)
    default_root_dir: str = key("Lightning's root directory")
    max_epochs: Optional[int] = key("training epochs", POSITIVE_INT)
    accelerator: str = key("the device kind", OneOf(("auto", "cpu", "gpu", "cuda", "mps", "tpu")))
    devices: Any = key(
        "devices per node: a count, -1 or auto (all), or a list of indices",
        AnyOf((POSITIVE_INT, OneOf((-1, "auto")), ListOf(NON_NEGATIVE_INT, short=False))),
    )
    precision: Any = key("numeric precision", OneOf(PRECISIONS))
    check_val_every_n_epoch: Optional[int] = key("validate every n epochs", POSITIVE_INT)
    num_sanity_val_steps: int = key("validation batches before training; -1 = all",
                                    Range(-1, integer=True))  # fmt: skip
    log_every_n_steps: int = key("log every n training steps", POSITIVE_INT)
    deterministic: Any = key("deterministic algorithms", OneOf((True, False, "warn")))
    gradient_clip_val: Optional[float] = key("clip gradients at this norm; null = never",
                                             NON_NEGATIVE)  # fmt: skip
    enable_model_summary: bool = key("print the model summary")


@dataclass
class DdpTrainer(Trainer):
    strategy: str = key("the distribution strategy", Text())
    sync_batchnorm: bool = key("SyncBatchNorm across processes (GPUs only)")


BATCH_LIMIT = AnyOf((NON_NEGATIVE_INT, FRACTION))


@dataclass
class TrainerExtra:
    limit_train_batches: Any = key("training batches per epoch: a count or a fraction", BATCH_LIMIT)
    limit_val_batches: Any = key("validation batches: a count or a fraction", BATCH_LIMIT)
    limit_test_batches: Any = key("test batches: a count or a fraction", BATCH_LIMIT)
    fast_dev_run: Any = key("run n batches only", AnyOf((OneOf((True, False)), POSITIVE_INT)))
    max_steps: int = key("stop after this many steps; -1 = no limit", Range(-1, integer=True))
    accumulate_grad_batches: int = key("accumulate gradients over n batches", POSITIVE_INT)
    strategy: str = key("the distribution strategy", Text())
    sync_batchnorm: bool = key("SyncBatchNorm across processes (GPUs only)")
    num_nodes: int = key("machines", POSITIVE_INT)
    benchmark: Optional[bool] = key("cudnn.benchmark")


# -- outliers -------------------------------------------------------------------------------------


@dataclass
class OfflineOutlierSet:
    _target_: str = key(TARGET)
    _partial_: bool = key(PARTIAL)
    n: Optional[int] = key(N_IMAGES, POSITIVE_INT)
    seed: int = key(SEED_HELP, SEED)


@dataclass
class OpenoodOutlierSet:
    _target_: str = key(TARGET)
    _partial_: bool = key(PARTIAL)
    benchmark: str = key("OpenOOD's benchmark of the auxiliary set",
                         OneOf(("cifar10", "cifar100", "imagenet200")))  # fmt: skip
    root: str = key(ROOT)
    n: Optional[int] = key(N_IMAGES, POSITIVE_INT)
    seed: int = key(SEED_HELP, SEED)
    download: bool = key(DOWNLOAD)


@dataclass
class TinyImagesOutlierSet:
    _target_: str = key(TARGET)
    _partial_: bool = key(PARTIAL)
    root: str = key(ROOT)
    n: Optional[int] = key(N_IMAGES, POSITIVE_INT)
    seed: int = key(SEED_HELP, SEED)
    download: bool = key(DOWNLOAD)


OUTLIER_RATIO = key("outlier batch = ratio x ID batch; null = the loss's paper value", POSITIVE)


@dataclass
class OfflineOutliers:
    name: str = key("the outlier set's name", Text())
    set: OfflineOutlierSet = field(default_factory=OfflineOutlierSet)
    ratio: Optional[float] = OUTLIER_RATIO
    seed: int = key("the seed of the order outlier batches are drawn in", SEED)
    cache_dir: str = key(CACHE_DIR)


@dataclass
class AutoOutliers(OfflineOutliers):
    auto: bool = key("the offline set for the outlier-exposure losses only")


@dataclass
class OpenoodOutliers(OfflineOutliers):
    set: OpenoodOutlierSet = field(default_factory=OpenoodOutlierSet)  # type: ignore[assignment]


@dataclass
class TinyImagesOutliers(OfflineOutliers):
    set: TinyImagesOutlierSet = field(default_factory=TinyImagesOutlierSet)  # type: ignore[assignment]


@dataclass
class NoOutliers:
    set: Optional[Any] = key("no outlier set")
    ratio: Optional[float] = OUTLIER_RATIO


# -- loggers and callbacks ------------------------------------------------------------------------


@dataclass
class CsvSettings:
    _target_: str = key(TARGET)
    save_dir: str = key("the folder of the CSV files")
    name: str = key("the sub-folder of the CSV files")


@dataclass
class MlflowSettings:
    _target_: str = key(TARGET)
    experiment_name: str = key("the MLflow experiment", Text())
    run_name: Optional[str] = key("the MLflow run's name; null = MLflow's")
    tracking_uri: str = key("the store or server, e.g. sqlite:///... or http://host:5000")
    artifact_location: str = key("where artifacts are written")
    tags: Optional[dict[str, Any]] = key("tags of the run")
    log_model: Any = key("log checkpoints as artifacts", OneOf((True, False, "all")))


@dataclass
class TensorboardSettings:
    _target_: str = key(TARGET)
    save_dir: str = key("the folder of the event files")
    name: str = key("the sub-folder of the event files")
    version: Any = key('the version sub-folder; "" = none')
    default_hp_metric: bool = key("log Lightning's placeholder hp_metric")


@dataclass
class WandbSettings:
    _target_: str = key(TARGET)
    project: str = key("the W&B project", Text())
    name: Optional[str] = key("the run's name; null = W&B's")
    save_dir: str = key("the folder of W&B's files")
    offline: bool = key("log offline (wandb sync uploads later)")
    group: Optional[str] = key("the W&B group; null = the sweep's")
    tags: Any = key("tags of the run", ListOf(Text(), what="strings"))
    job_type: str = key("the W&B job type", Text())
    artifacts: bool = key("log checkpoints and results.json as artifacts (online runs)")


@dataclass
class CsvLogger:
    csv: CsvSettings = field(default_factory=CsvSettings)


@dataclass
class MlflowLogger:
    mlflow: MlflowSettings = field(default_factory=MlflowSettings)


@dataclass
class TensorboardLogger:
    tensorboard: TensorboardSettings = field(default_factory=TensorboardSettings)


@dataclass
class WandbLogger:
    wandb: WandbSettings = field(default_factory=WandbSettings)


@dataclass
class OodMonitor:
    _target_: str = key(TARGET)
    scores: Any = key("logit scores tracked on the validation pair every epoch", NAMES)


@dataclass
class ModelCheckpoint:
    _target_: str = key(TARGET)
    dirpath: str = key("the checkpoints' folder")
    filename: str = key("the checkpoint's file name (without .ckpt)", Text())
    save_top_k: int = key("checkpoints kept; -1 = all", Range(-1, integer=True))
    save_last: Any = key("also write last.ckpt", OneOf((True, False, "link")))
    enable_version_counter: bool = key("append -v1, -v2 to clashing names")
    every_n_epochs: Optional[int] = key("write every n epochs", NON_NEGATIVE_INT)


@dataclass
class ProgressBar:
    _target_: str = key(TARGET)
    refresh_per_second: int = key("redraws a second (on a terminal only)", POSITIVE_INT)


@dataclass
class Callbacks:
    ood_monitor: Optional[OodMonitor] = field(default_factory=OodMonitor)
    model_checkpoint: Optional[ModelCheckpoint] = field(default_factory=ModelCheckpoint)
    progress_bar: Optional[ProgressBar] = field(default_factory=ProgressBar)


#: ConfigStore name (under schema/) -> its dataclass
GROUP_SCHEMAS: dict[str, type] = {
    "train": TrainRoot,
    "eval_root": EvalRoot,
    "paths": Paths,
    "callbacks": Callbacks,
    "model": Model,
    "ood": Ood,
    "data/mnist5k": Mnist5kData,
    "data/torchvision": TorchvisionData,
    "data/folder": FolderData,
    "data/image_list": ImageListData,
    "data/openood_imagenet": OpenoodImagenetData,
    "ood_set/synthetic": SyntheticSet,
    "ood_set/torchvision": TorchvisionSet,
    "ood_set/torchvision_uncached": TorchvisionUncachedSet,
    "ood_set/odin": OdinSet,
    "ood_set/openood_archive": OpenoodArchiveSet,
    "ood_set/mnist5k_rgb": Mnist5kRgbSet,
    "ood_set/digit_transforms": DigitTransformsSet,
    "ood_set/folder": FolderSet,
    "ood_set/image_list": ImageListSet,
    "ood_set/openood_imagenet": OpenoodImagenetSet,
    "loss/ce": CeLoss,
    "loss/dismax": DismaxLoss,
    "loss/name_only": NameOnlyLoss,
    "loss/energy_oe": EnergyOeLoss,
    "loss/focal": FocalLoss,
    "loss/isomax": IsomaxLoss,
    "loss/label_smoothing": LabelSmoothingLoss,
    "loss/logit_penalty": LogitPenaltyLoss,
    "loss/logitnorm": LogitNormLoss,
    "loss/mixoe": MixoeLoss,
    "loss/mixup": MixupLoss,
    "loss/oe": OeLoss,
    "loss/regmixup": RegmixupLoss,
    "loss/t2fnorm": T2fnormLoss,
    "optimizer/adamw": AdamW,
    "optimizer/sgd": Sgd,
    "scheduler/cosine": Cosine,
    "scheduler/multistep": MultiStep,
    "trainer/default": Trainer,
    "trainer/ddp": DdpTrainer,
    "outliers/offline": OfflineOutliers,
    "outliers/auto": AutoOutliers,
    "outliers/openood": OpenoodOutliers,
    "outliers/tiny_images": TinyImagesOutliers,
    "outliers/none": NoOutliers,
    "logger/csv": CsvLogger,
    "logger/mlflow": MlflowLogger,
    "logger/tensorboard": TensorboardLogger,
    "logger/wandb": WandbLogger,
}

#: schemas whose nodes accept keys they do not declare: the target's other arguments
OPEN: tuple[type, ...] = (Trainer, DdpTrainer, Cosine, MultiStep)

#: the typed extra keys of open schemas (not added to the config; checked where present)
EXTRAS: dict[type, type] = {
    Trainer: TrainerExtra,
    DdpTrainer: TrainerExtra,
    Cosine: CosineExtra,
    MultiStep: CosineExtra,
}
