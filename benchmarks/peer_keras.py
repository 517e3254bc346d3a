"""Peer benchmark: dicelab's Trainer against a minimal Keras ``model.fit`` of the same network.

Both sides train the paper's VGG (``--model vgg``; Keras mirrors dicelab's network layer for
layer, checked by equal parameter counts and equal logits from the same starting weights,
which Keras copies from dicelab) on the same training images, in the same shuffled order
every epoch (the orders dicelab's shuffle technique draws; Keras's batches are gathered in
that order by a ``tf.data`` pipeline, or ``--keras-arrays``), with batch 128, the summed
cross-entropy (dicelab's ``train.reduction=sum``), plain SGD at dicelab's learning rate and
the same number of threads, in one process. Epochs alternate between the contestants so that
the shared machine's noise hits them alike: one untimed warm-up epoch each, then ``--epochs``
timed epochs each; the script prints the medians in s/epoch and img/s and the ratio of
dicelab's throughput to Keras's (above 1: dicelab is faster), against ``fit``'s wall time and
against its epoch alone (from a callback). It also prints both sides' accuracies at the end,
to show they learn alike; their weights do not stay equal, since TensorFlow's BatchNorm
computes the batch variance less exactly (see BENCHMARKS.md).

TensorFlow is not a dicelab dependency, and this script installs nothing. Without it, it
prints one line saying how to make a venv for it and exits 0. The venv (outside the repo):

    python3 -m venv /work/kerasvenv
    /work/kerasvenv/bin/pip install torch==2.13.0     # the local CPU build, first
    /work/kerasvenv/bin/pip install tensorflow-cpu
    V=$(/work/kerasvenv/bin/pip show tensorflow-cpu | sed -n 's/^Version: //p')
    /work/kerasvenv/bin/pip install --no-deps "tf-keras==$V"     # Keras 2, same version
    /work/kerasvenv/bin/pip install -e /work/main
    /work/kerasvenv/bin/pip list | grep -E '^(torch|tensorflow_cpu|tf_keras) '   # torch 2.13.0+cpu

``tf-keras`` needs ``--no-deps``: it depends on ``tensorflow``, and without the flag pip
installs that second TensorFlow (572 MB) over ``tensorflow-cpu``. Keras 2 (``tf-keras``) is
used, with ``TF_USE_LEGACY_KERAS=1`` set before TensorFlow is imported, rather than the Keras 3
that ``tensorflow-cpu`` brings along. Then:

    TF_USE_LEGACY_KERAS=1 /work/kerasvenv/bin/python benchmarks/peer_keras.py --threads 2

``--set KEY=VALUE`` (repeatable) changes dicelab's side only (its configuration keys);
``--variants`` adds dicelab trainer variants (``train.channels_last=false``,
``train.precision=bf16``, ``train.compile=true``, bf16 with compile) as further contestants.
A key or value dicelab does not know skips that contestant with one line saying why; the
others still run.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import statistics
import sys
import time
from dataclasses import dataclass, field
from typing import Any

SKIP_LINE = (
    "peer_keras: skipped, TensorFlow with tf-keras is not importable here ({why}); make a "
    "separate venv: python3 -m venv /work/kerasvenv && /work/kerasvenv/bin/pip install "
    "torch==2.13.0 && /work/kerasvenv/bin/pip install tensorflow-cpu && /work/kerasvenv/bin/"
    "pip install --no-deps tf-keras==<tensorflow-cpu's version> && /work/kerasvenv/bin/pip "
    "install -e /work/main; then run TF_USE_LEGACY_KERAS=1 /work/kerasvenv/bin/python "
    "benchmarks/peer_keras.py (see this file's docstring)"
)

#: dicelab trainer variants measured with ``--variants``: (label, overrides). Keys that this
#: dicelab does not have skip their variant with a line. ``train.channels_last`` is ``auto``
#: (on for convolutional models) by default, so the NCHW variant is the one that differs.
VARIANTS: list[tuple[str, list[str]]] = [
    ("NCHW", ["train.channels_last=false"]),
    ("bf16", ["train.precision=bf16"]),
    ("compile", ["train.compile=true"]),
    ("bf16+compile", ["train.precision=bf16", "train.compile=true"]),
]


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default="mnist5k")
    parser.add_argument("--model", default="vgg")
    parser.add_argument("--epochs", type=int, default=5, help="timed epochs per contestant")
    parser.add_argument("--threads", type=int, default=2, help="intra-op threads, both sides")
    parser.add_argument(
        "--tf-inter-op",
        type=int,
        default=1,
        help="TensorFlow inter-op threads (1: ops one at a time, as torch's eager mode)",
    )
    parser.add_argument(
        "--limit", type=int, default=None, help="training images per epoch (default: all)"
    )
    parser.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="dicelab configuration override for dicelab's side (repeatable)",
    )
    parser.add_argument(
        "--keras-arrays",
        action="store_true",
        help="give Keras's fit the permuted arrays (shuffle=False) instead of a tf.data "
        "pipeline without autotuning (see KerasSide)",
    )
    parser.add_argument(
        "--variants",
        action="store_true",
        help="also time dicelab's trainer variants: " + ", ".join(v[0] for v in VARIANTS),
    )
    return parser.parse_args(argv)


def tensorflow_missing() -> str | None:
    """Why TensorFlow with tf-keras cannot be used here, or None when it can (not imported)."""
    for name in ("tensorflow", "tf_keras"):
        try:
            if importlib.util.find_spec(name) is None:
                return f"no module named {name!r}"
        except (ImportError, ValueError) as err:
            return f"{name}: {err}"
    return None


# -- the Keras twin of dicelab's network -----------------------------------------------------


def keras_layers(torch_model: Any, keras: Any) -> list[Any]:
    """Keras layers doing what ``torch_model``'s leaf modules do, in module order.

    Supports the sequential networks built of Conv2d (stride 1, "same" padding), ReLU (folded
    into the preceding conv or dense layer as its activation, as a Keras user writes it),
    BatchNorm2d, MaxPool2d, Flatten and Linear: the paper's VGG. Anything else raises
    TypeError naming the module.
    """
    from torch import nn

    layers: list[Any] = []
    for name, module in torch_model.named_modules():
        if any(True for _ in module.children()):
            continue
        if isinstance(module, nn.Conv2d):
            k = module.kernel_size
            plain = module.stride == (1, 1) and module.dilation == (1, 1) and module.groups == 1
            if not plain or k[0] % 2 == 0 or module.padding != (k[0] // 2, k[1] // 2):
                raise TypeError(f"{name}: only stride-1 'same'-padded odd convolutions mirror")
            layers.append(
                keras.layers.Conv2D(
                    module.out_channels, k, padding="same", use_bias=module.bias is not None
                )
            )
        elif isinstance(module, nn.ReLU):
            last = layers[-1] if layers else None
            if isinstance(last, (keras.layers.Conv2D, keras.layers.Dense)) and (
                last.activation is keras.activations.linear
            ):
                last.activation = keras.activations.relu
            else:
                layers.append(keras.layers.ReLU())
        elif isinstance(module, nn.BatchNorm2d):
            if module.momentum is None or not module.affine:
                raise TypeError(f"{name}: only affine BatchNorm with a momentum mirrors")
            # PyTorch: running = (1 - m)·running + m·batch;
            # Keras: moving = k·moving + (1 - k)·batch, so k = 1 - m (0.1 -> 0.9).
            layers.append(
                keras.layers.BatchNormalization(momentum=1.0 - module.momentum, epsilon=module.eps)
            )
        elif isinstance(module, nn.MaxPool2d):
            size = module.kernel_size
            stride = module.stride or size
            if stride != size or module.padding != 0 or module.dilation != 1:
                raise TypeError(f"{name}: only non-overlapping unpadded max-pooling mirrors")
            layers.append(keras.layers.MaxPooling2D(size))
        elif isinstance(module, nn.Flatten):
            layers.append(keras.layers.Flatten())
        elif isinstance(module, nn.Linear):
            layers.append(
                keras.layers.Dense(module.out_features, use_bias=module.bias is not None)
            )
        else:
            raise TypeError(f"{name}: {type(module).__name__} has no Keras mirror here")
    return layers


def keras_weights(torch_model: Any, keras_model: Any) -> list[tuple[Any, list[Any]]]:
    """``torch_model``'s weights in the layouts of ``keras_model``'s layers (NHWC): one
    ``(keras layer, arrays)`` pair for each Keras layer that has weights.

    A dense layer right after a Flatten of a (H, W, C) feature map has its input columns
    reordered from PyTorch's C·H·W flattening to Keras's H·W·C one.
    """
    from torch import nn

    modules = iter(
        m for m in torch_model.modules() if isinstance(m, (nn.Conv2d, nn.BatchNorm2d, nn.Linear))
    )
    pairs: list[tuple[Any, list[Any]]] = []
    flattened: tuple[int, ...] | None = None
    for layer in keras_model.layers:
        if type(layer).__name__ == "Flatten":
            flattened = tuple(layer.input_shape[1:])
            continue
        if not layer.weights:
            continue
        module = next(modules)
        # Conv2d/Linear: weight, bias; BatchNorm2d: weight, bias, running_mean, running_var
        # (= Keras's gamma, beta, moving mean and variance; the 0-d num_batches_tracked is out).
        arrays = [t.detach().cpu().numpy() for t in module.state_dict().values() if t.ndim]
        if isinstance(module, nn.Conv2d):
            arrays[0] = arrays[0].transpose(2, 3, 1, 0)  # (O, I, kh, kw) -> (kh, kw, I, O)
        elif isinstance(module, nn.Linear):
            w = arrays[0]
            if flattened is not None and len(flattened) == 3:
                h, wd, c = flattened
                w = w.reshape(w.shape[0], c, h, wd).transpose(0, 2, 3, 1).reshape(w.shape[0], -1)
            flattened = None
            arrays[0] = w.T
        pairs.append((layer, arrays))
    return pairs


def build_keras_twin(torch_model: Any, input_shape: tuple[int, ...], keras: Any) -> Any:
    """A Keras Sequential mirroring ``torch_model`` with its current weights copied in."""
    channels, height, width = input_shape
    model = keras.Sequential(
        [keras.Input(shape=(height, width, channels)), *keras_layers(torch_model, keras)]
    )
    for layer, arrays in keras_weights(torch_model, model):
        layer.set_weights(arrays)
    return model


def parameter_counts(torch_model: Any, keras_model: Any) -> tuple[int, int, int, int]:
    """(trainable, BatchNorm running statistics) for PyTorch, then the same for Keras."""
    import numpy as np

    torch_trainable = sum(p.numel() for p in torch_model.parameters() if p.requires_grad)
    torch_stats = sum(
        b.numel() for n, b in torch_model.named_buffers() if n.endswith(("mean", "var"))
    )
    keras_trainable = sum(int(np.prod(w.shape)) for w in keras_model.trainable_weights)
    keras_stats = sum(int(np.prod(w.shape)) for w in keras_model.non_trainable_weights)
    return torch_trainable, torch_stats, keras_trainable, keras_stats


def largest_weight_gap(torch_model: Any, keras_model: Any) -> float:
    """The largest |dicelab − Keras| over all weights, relative to that tensor's largest |w|."""
    import numpy as np

    gap = 0.0
    for layer, arrays in keras_weights(torch_model, keras_model):
        for ours, theirs in zip(arrays, layer.get_weights(), strict=True):
            scale = max(float(np.abs(ours).max()), 1e-12)
            gap = max(gap, float(np.abs(ours - theirs).max()) / scale)
    return gap


# -- contestants -----------------------------------------------------------------------------


@dataclass
class Contestant:
    """One side of the race: its label and its timed epochs."""

    label: str
    times: list[float] = field(default_factory=list)
    train_acc: float = float("nan")  # the last epoch's

    def epoch(self, order: Any) -> float:
        raise NotImplementedError


@dataclass
class DicelabSide(Contestant):
    """dicelab's ``Trainer.train_epoch``. Its shuffle technique draws ``order`` itself, from
    the stream the Keras side's orders come from (checked after the race)."""

    trainer: Any = None

    def epoch(self, order: Any) -> float:
        start = time.perf_counter()
        metrics = self.trainer.train_epoch()
        seconds = time.perf_counter() - start
        self.train_acc = metrics["train_acc"] if metrics else float("nan")
        return seconds


@dataclass
class KerasSide(Contestant):
    """``model.fit`` for one epoch, its batches in ``order``.

    By default the batches come from a ``tf.data`` pipeline: the epoch's order in batches,
    each gathered from the whole training set (what Keras's own adapter for arrays does, and
    what dicelab does), with one batch prefetched and tf.data's autotuning off. With
    ``arrays``, ``fit`` gets the permuted arrays and ``shuffle=False``; it then sometimes
    returns seconds after the epoch has ended, about 2.6, 5.1 or 10.3 s after it started (the
    ends of the sleeps of tf.data's autotuning thread, 10 ms doubling, match). A single
    ``fit(epochs=N)`` would pay that at most once; a ``fit`` per epoch, as here, pays it often.
    """

    model: Any = None
    tf: Any = None
    x: Any = None  # float32 NHWC in [0, 1], the whole training set (NumPy and tf.Tensor)
    y: Any = None
    x_tensor: Any = None
    y_tensor: Any = None
    batch_size: int = 128
    arrays: bool = False
    clock: Any = None
    in_epoch: list[float] = field(default_factory=list)

    def epoch(self, order: Any) -> float:
        start = time.perf_counter()
        idx = order.numpy()
        if self.arrays:
            history = self.model.fit(
                self.x[idx],
                self.y[idx],
                batch_size=self.batch_size,
                epochs=1,
                shuffle=False,
                verbose=0,
                callbacks=[self.clock],
            )
        else:
            tf = self.tf
            options = tf.data.Options()
            options.autotune.enabled = False
            batches = (
                tf.data.Dataset.from_tensor_slices(idx)
                .batch(self.batch_size)
                .map(lambda i: (tf.gather(self.x_tensor, i), tf.gather(self.y_tensor, i)))
                .prefetch(1)
                .with_options(options)
            )
            history = self.model.fit(batches, epochs=1, verbose=0, callbacks=[self.clock])
        seconds = time.perf_counter() - start
        self.train_acc = history.history["accuracy"][-1]
        return seconds


def dicelab_trainer(base: list[str], extra: list[str]) -> tuple[Any, str]:
    """A Trainer for ``base + extra`` overrides, or (None, why) when dicelab refuses them."""
    from dicelab.config import load_config
    from dicelab.exceptions import DicelabError
    from dicelab.train import Trainer

    try:
        return Trainer(load_config(overrides=[*base, *extra])), ""
    except DicelabError as err:
        return None, str(err)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    why = tensorflow_missing()
    if why is not None:
        print(SKIP_LINE.format(why=why))
        return 0
    os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")  # tf.keras is tf-keras (Keras 2)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "1")
    import tensorflow as tf

    # Before any TensorFlow op runs, or the thread pools are already made.
    tf.config.threading.set_intra_op_parallelism_threads(args.threads)
    tf.config.threading.set_inter_op_parallelism_threads(args.tf_inter_op)
    import numpy as np
    import tf_keras as keras
    import torch

    from dicelab.exceptions import DicelabError
    from dicelab.techniques import Injector

    torch.set_num_threads(args.threads)
    keras.utils.disable_interactive_logging()

    base = [
        f"data.name={args.dataset}",
        f"model.name={args.model}",
        "data.split=final",
        "device=cpu",
        f"train.epochs={args.epochs + 1}",
        "techniques.shuffle.enabled=true",  # a fresh full permutation every epoch
    ]
    if args.limit is not None:
        base.append(f"data.train_limit={args.limit}")
    base += args.overrides
    contestants: list[Contestant] = []
    skipped: list[str] = []
    trainer, problem = dicelab_trainer(base, [])
    if trainer is None:
        print(f"peer_keras: dicelab refuses --set {' '.join(args.overrides)}: {problem}")
        return 2
    contestants.append(DicelabSide("dicelab Trainer", trainer=trainer))
    if args.variants:
        for label, extra in VARIANTS:
            variant, problem = dicelab_trainer(base, extra)
            if variant is None:
                skipped.append(f"dicelab {label} ({' '.join(extra)}): skipped, {problem}")
            else:
                contestants.append(DicelabSide(f"dicelab {label}", trainer=variant))

    config = trainer.config
    opt = config.optimizer
    if opt.name != "sgd" or opt.perturbation != "none" or opt.weight_decay or opt.clip_grad_norm:
        print("peer_keras: the Keras side mirrors plain SGD only (optimizer.name=sgd, no extras)")
        return 2
    train, test = trainer.data.train, trainer.data.test
    input_shape = tuple(trainer.data.input_shape)
    batch_size = config.train.batch_size

    # Keras gets the same starting weights, and must compute the same function.
    keras_model = build_keras_twin(trainer.model, input_shape, keras)
    counts = parameter_counts(trainer.model, keras_model)
    print(
        f"parameters: dicelab {counts[0]:,} trainable + {counts[1]:,} BatchNorm statistics; "
        f"Keras {counts[2]:,} trainable + {counts[3]:,} non-trainable"
    )
    assert counts[:2] == counts[2:], f"the networks differ: {counts}"

    def to_nhwc(x: Any) -> Any:
        """uint8 (B, C, H, W) images as Keras takes them: float32 (B, H, W, C) in [0, 1]."""
        return x.float().div(255.0).permute(0, 2, 3, 1).contiguous().numpy()

    x_train, y_train = to_nhwc(train.x), train.y.numpy()
    probe = train.x[:batch_size]
    trainer.model.eval()
    with torch.no_grad():
        ours = trainer.model(probe.float().div(255.0)).numpy()
    trainer.model.train()
    theirs = keras_model(to_nhwc(probe), training=False).numpy()
    logit_gap = float(np.abs(ours - theirs).max())
    print(f"same starting weights, inference logits differ by at most {logit_gap:.2e}")
    assert logit_gap < 1e-3 * max(1.0, float(np.abs(ours).max())), "the networks differ"

    reduction = "sum" if config.train.reduction == "sum" else "sum_over_batch_size"
    keras_model.compile(
        optimizer=keras.optimizers.SGD(learning_rate=opt.lr),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True, reduction=reduction),
        metrics=["accuracy"],  # dicelab's train_epoch reports loss and accuracy too
    )

    class EpochClock(keras.callbacks.Callback):
        """The epoch's own time inside fit (without fit's set-up and tear-down)."""

        def __init__(self, sink: list[float]) -> None:
            super().__init__()
            self.sink = sink

        def on_epoch_begin(self, epoch: int, logs: Any = None) -> None:
            self.start = time.perf_counter()

        def on_epoch_end(self, epoch: int, logs: Any = None) -> None:
            self.sink.append(time.perf_counter() - self.start)

    in_epoch: list[float] = []
    keras_side = KerasSide(
        "Keras model.fit",
        model=keras_model,
        tf=tf,
        x=x_train,
        y=y_train,
        x_tensor=tf.constant(x_train),
        y_tensor=tf.constant(y_train),
        batch_size=batch_size,
        arrays=args.keras_arrays,
        clock=EpochClock(in_epoch),
        in_epoch=in_epoch,
    )
    contestants.insert(0, keras_side)

    # The orders dicelab's shuffle technique draws: the same stream as every trainer's own.
    orders = Injector.from_config({"shuffle": {"enabled": True}}, seed=config.seed)
    n = len(train)

    # One untimed warm-up epoch each (graph tracing, allocator, kernels).
    order = orders.data_order(n)
    for contestant in list(contestants):
        try:
            contestant.epoch(order)
        except (DicelabError, RuntimeError, NotImplementedError) as err:
            if not isinstance(contestant, DicelabSide) or contestant.trainer is trainer:
                raise
            skipped.append(f"{contestant.label}: skipped, its warm-up epoch failed: {err}")
            contestants.remove(contestant)
    keras_side.in_epoch.clear()
    print(
        "after the warm-up epoch (same order, lr and batches), dicelab's and Keras's weights "
        f"differ by at most {largest_weight_gap(trainer.model, keras_model):.2e} (relative)"
    )
    load_before = os.getloadavg()[0]
    for r in range(args.epochs):
        order = orders.data_order(n)
        shift = r % len(contestants)  # rotate who goes first
        for contestant in contestants[shift:] + contestants[:shift]:
            contestant.times.append(contestant.epoch(order))
    for contestant in contestants:
        if isinstance(contestant, DicelabSide):
            same = all(
                torch.equal(a, b)
                for a, b in zip(
                    contestant.trainer.injector.streams.state_dict().values(),
                    orders.streams.state_dict().values(),
                    strict=True,
                )
            )
            assert same, f"{contestant.label} drew other orders than Keras was fed"

    load_after = os.getloadavg()[0]
    # The trained models (a check that both learn alike, not a race): the last epoch's
    # training accuracy, and the test accuracy in inference mode (BatchNorm running statistics).
    accuracies = []
    for contestant in contestants:
        if isinstance(contestant, DicelabSide):
            model = contestant.trainer.model
            model.eval()
            with torch.no_grad():
                pred = model(test.x.float().div(255.0)).argmax(1)
            model.train()
            test_acc = (pred == test.y).float().mean().item()
        else:
            pred = keras_model(to_nhwc(test.x), training=False).numpy().argmax(1)
            test_acc = float((pred == test.y.numpy()).mean())
        accuracies.append(f"{contestant.label} {contestant.train_acc:.4f} / {test_acc:.4f}")
    print(f"after {args.epochs + 1} epochs, train / test accuracy: " + ", ".join(accuracies))

    print(
        f"{args.model} on {args.dataset} ({n} images/epoch, batch {batch_size}, {args.threads} "
        f"threads, TF inter-op {args.tf_inter_op}, Keras input "
        f"{'arrays' if args.keras_arrays else 'tf.data'}; torch {torch.__version__}, TensorFlow "
        f"{tf.__version__}, tf-keras {keras.__version__}; median of {args.epochs} alternating "
        "epochs)"
    )
    keras_time = statistics.median(keras_side.times)
    keras_inner = statistics.median(keras_side.in_epoch)
    width = max(len(c.label) for c in contestants)
    for contestant in contestants:
        t = statistics.median(contestant.times)
        line = f"{contestant.label:<{width}} : {t:7.3f} s/epoch  {n / t:8.0f} img/s"
        if contestant is keras_side:
            line += f"  (fit's epoch alone: {keras_inner:.3f} s, {n / keras_inner:.0f} img/s)"
        else:
            line += (
                f"  throughput dicelab/Keras {keras_time / t:.3f} "
                f"(vs fit's epoch alone: {keras_inner / t:.3f})"
            )
        print(line)
    for contestant in contestants:
        if isinstance(contestant, DicelabSide):
            train_cfg = contestant.trainer.config.train
            keys = ("channels_last", "precision", "compile")
            shown = [f"{k}={getattr(train_cfg, k)}" for k in keys if hasattr(train_cfg, k)]
            if getattr(contestant.trainer, "channels_last", False):
                shown.append("(NHWC memory)")
            print(f"  {contestant.label:<{width}} settings: {' '.join(shown) or 'fp32 NCHW'}")
    for contestant in contestants:
        times = " ".join(f"{t:.3f}" for t in contestant.times)
        print(f"  {contestant.label:<{width}} epochs (s): {times}")
    print(
        f"load average (1 min) before and after the timed epochs: {load_before:.2f}, "
        f"{load_after:.2f} on {os.cpu_count()} CPUs"
    )
    for line in skipped:
        print(line)
    return 0


if __name__ == "__main__":
    sys.exit(main())
