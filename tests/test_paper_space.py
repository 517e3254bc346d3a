"""The paper's 22-D search space: bounds, baseline and decoding (authors' conventions)."""

from __future__ import annotations

import pytest

from dicelab.config import apply_overrides, from_dict
from dicelab.paper_space import GENES, OPTIONAL, baseline_vector, bounds, decode
from dicelab.techniques import TECHNIQUES


def test_22_genes_with_the_authors_bounds_and_baseline() -> None:
    low, high = bounds()
    assert len(GENES) == 22
    assert low[15:18] == [1, -1, 128] and high[15:18] == [5, 1, 1024]
    assert baseline_vector() == [
        0,
        1,
        0,
        0,
        0,
        0,
        0,
        0,
        0.05,
        0,
        0,
        0,
        0,
        0,
        1,
        3,
        0,
        128,
        0,
        6,
        0,
        0,
    ]
    assert len(OPTIONAL) == 15


def test_every_gene_targets_a_real_setting() -> None:
    for gene in GENES:
        section, *rest = gene.target.split(".")
        if section == "techniques":
            name, field = rest
            assert name in TECHNIQUES
            assert hasattr(TECHNIQUES.get(name)(), field)


def test_baseline_decodes_to_plain_sgd_with_only_weight_init_on() -> None:
    config = from_dict(decode(baseline_vector()))
    assert config.optimizer.name == "sgd" and config.optimizer.lr == pytest.approx(1e-3)
    assert config.train.batch_size == 128
    assert config.techniques == {"weight_init": {"std": 0.05}}  # all randomness off


@pytest.mark.parametrize(
    ("index", "value", "key", "expected"),
    [
        (0, 0.49, "techniques.shuffle.enabled", False),
        (0, 0.51, "techniques.shuffle.enabled", True),
        (1, 0.0, "techniques.flip.mode", "none"),
        (1, 1.0, "techniques.flip.mode", "none"),
        (1, 1.01, "techniques.flip.mode", "horizontal_and_vertical"),
        (1, 2.5, "techniques.flip.mode", "horizontal"),
        (1, 4.0, "techniques.flip.mode", "vertical"),
        (14, 0.0, "optimizer.name", "sgd"),
        (14, 1.2, "optimizer.name", "momentum"),
        (14, 2.01, "optimizer.name", "adam"),
        (15, 2.0, "optimizer.lr", 1e-2),
        (17, 300.4, "train.batch_size", 300),
        (19, 6.0, "techniques.weight_noise.eta", 0.0),
        (19, 2.0, "techniques.weight_noise.eta", 1e-2),
        (19, 9.0, "techniques.weight_noise.eta", 0.0),  # clipped to the bound 6: off
    ],
)
def test_decoding_rules(index: int, value: float, key: str, expected: object) -> None:
    vector = baseline_vector()
    vector[index] = value
    node = decode(vector)
    for part in key.split("."):
        node = node[part]
    assert node == pytest.approx(expected) if isinstance(expected, float) else node == expected


def test_a_decoded_particle_is_a_valid_configuration() -> None:
    low, high = bounds()
    middle = [(a + b) / 2 for a, b in zip(low, high, strict=True)]
    config = from_dict(apply_overrides(decode(middle), ["data.name=digits"]))
    assert set(config.techniques) >= {"rotation", "dropout", "gradient_dropout", "loss_noise"}


def test_wrong_length_is_rejected() -> None:
    with pytest.raises(ValueError, match="22 genes"):
        decode([0.0] * 21)
