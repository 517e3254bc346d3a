"""A small Vision Transformer (Dosovitskiy et al. 2021) for 28×28 and 32×32 images.

The RWP authors evaluate their optimizers on a ViT besides the CNNs (nblt/mARWP, commit
``580bef3``: ``utils.py`` L11 imports ``ViT`` from ``models/vit.py``, and ``get_model``,
L379–383, builds it for CIFAR as ``ViT(image_size=32, patch_size=4, dim=512, depth=6,
heads=8, mlp_dim=512, dropout=0.1, emb_dropout=0.1)``). Their ``models/vit.py`` is stored
only compiled, but that signature is the one of lucidrains' ``vit_pytorch.ViT``
(``vit_pytorch/vit.py`` in lucidrains/vit-pytorch), whose layout this model follows: patches
flattened and projected by a Linear layer (its current version also LayerNorms the patches
before and after the projection; left out here), a class token
``(1, 1, dim)`` and learned position embeddings ``(1, tokens, dim)`` as parameters,
pre-norm blocks, a query/key/value projection without bias, dropout after the attention
softmax, after the attention output projection and after the MLP, a final LayerNorm, the
class token's output (or the mean over tokens) and a Linear head. From the authors' call it
takes the patch size 4 for 32×32 images (on 28×28 it uses 7 by default, 16 patches: about
three times faster than 4 on mnist5k and more accurate after the same 2-epoch run); its
other defaults are smaller (``dim`` 64 instead of 512, ``depth`` 4 instead of 6, ``heads`` 4
instead of 8, MLP width 2·dim instead of dim) so that it trains on a CPU in seconds, and the
dropout probabilities are 0 (dicelab's dropout is a technique).

**Built from modules, for dicelab's techniques.** Every operation a MODEL-stage technique
looks for is its own module, found by type (:mod:`dicelab.techniques._sites`):

* ``nn.Linear``: the patch projection ``embed.proj``, each block's ``attn.qkv`` and
  ``attn.proj`` (attention is computed explicitly, not with ``nn.MultiheadAttention``, whose
  projection weights are bare parameters), ``mlp.fc1`` and ``mlp.fc2``, and the ``head``,
  registered last so that it is the output layer DropConnect leaves alone. Weight init draws
  every one of them; DropConnect masks the inputs of all but the head.
* ``nn.GELU``: each block's ``mlp.act``, the activation noise sites. It is followed by
  ``mlp.fc2``, so the dropout rule (activations followed by a weight layer) masks its output:
  the dropout position of lucidrains' and timm's MLP.
* ``nn.Dropout(p=0)`` placeholders at the other standard ViT dropout points:
  ``embed.drop`` (tokens plus position embeddings, lucidrains' ``emb_dropout``),
  ``attn.attn_drop`` (the attention probabilities, after the softmax), ``attn.proj_drop``
  (after the output projection) and ``mlp.drop`` (after ``fc2``). With ``p = 0`` they return
  their input itself and draw nothing; they are there to be selected, e.g.
  ``techniques.dropout.sites=["type:Dropout"]``. The model never draws random numbers in its
  forward pass.
* ``nn.Softmax`` (``attn.softmax``) makes the attention probabilities a module output too.

There is no convolution, so the trainer keeps the default memory layout (no channels_last).
Weights are PyTorch's default initialisation, except the class token and the position
embeddings, drawn from N(0, 0.02²) (timm's choice) from torch's global RNG: the same seed
builds the same model.

**Perturbation optimizers.** No BatchNorm, so nothing needs freezing on SAM's or m-RWP's
perturbed pass. RWP, ARWP, m-RWP and m-ARWP draw *filter-wise* noise: a parameter with more
than one dimension is split along dim 0 and slice ``j`` gets entries of standard deviation
``σ·‖w_j‖``; a 1-D parameter is one filter. On this model that means:

* a Linear weight ``(out, in)``: one filter per output unit (a row), as for a CNN's dense
  layers; the per-entry noise is ``σ·√in`` times the row's RMS entry;
* Linear biases and the LayerNorm scales and shifts (all 1-D): the whole vector, as the
  authors treat BatchNorm γ/β (a shift that starts at 0 gets next to no noise until it has
  grown, the authors' ``+1e-16`` aside);
* the class token ``(1, 1, dim)`` and the position embeddings ``(1, tokens, dim)``: dim 0 has
  size 1, so each is a single filter, scaled by the norm of the whole tensor, exactly what the
  authors' code (filter-wise along dim 0) does with lucidrains' shapes. The position table is
  the largest filter of the model, its per-entry noise ``σ·√(tokens·dim)`` times its RMS
  entry (at σ = 0.01 and the defaults: 0.33 on 28×28, 17 tokens of 64; 0.65 on 32×32, 65
  tokens), against ``σ·√64 = 0.08`` for a row of ``attn.qkv``; in absolute terms it stays
  small, since the table starts at std 0.02.

ARWP's squared-gradient history is summed per filter the same way (over the whole tensor for
the token and the table, per entry for 1-D parameters, as the authors' code does). SAM's
ascent uses the norm over all parameters, so shapes do not matter to it; ASAM scales each
entry by ``|w|``.

References:
    Dosovitskiy et al., "An image is worth 16x16 words: Transformers for image recognition at
    scale", ICLR 2021, arXiv:2010.11929.
    Li et al., "Revisiting Random Weight Perturbation for Efficiently Improving
    Generalization", TMLR 2024, arXiv:2404.00357 (code: github.com/nblt/mARWP).
"""

from __future__ import annotations

import torch
from torch import nn

from dicelab.exceptions import ConfigError, UnknownNameError
from dicelab.models.base import image_shape, register_model, require_at_least

#: The ways the token sequence becomes one vector before the head.
POOLING = ("cls", "mean")
#: Patch sides tried in turn when ``patch_size`` is not given: 7 for MNIST's 28×28 (16
#: patches), else 4, the authors' size for CIFAR's 32×32 (64 patches).
AUTO_PATCH_SIZES = (7, 4)


class PatchEmbedding(nn.Module):
    """Cut an image into ``patch × patch`` squares, project each to ``dim`` and add the
    position embeddings (after prepending the class token, if any).

    A patch is flattened in ``(row, column, channel)`` order and projected by ``proj``, an
    ``nn.Linear``, so DropConnect masks pixels of the patches. ``drop`` is an ``nn.Dropout(0)``
    placeholder on the embedded tokens.

    Args:
        channels: channels of the image.
        height: height of the image, a multiple of ``patch``.
        width: width of the image, a multiple of ``patch``.
        patch: side of a square patch.
        dim: width of a token.
        cls_token: prepend a learned class token.
    """

    def __init__(
        self, channels: int, height: int, width: int, patch: int, dim: int, cls_token: bool
    ) -> None:
        super().__init__()
        self.patch = patch
        self.grid = (height // patch, width // patch)
        self.proj = nn.Linear(channels * patch * patch, dim)
        self.cls_token: nn.Parameter | None = None
        if cls_token:
            self.cls_token = nn.Parameter(torch.empty(1, 1, dim))
            nn.init.normal_(self.cls_token, std=0.02)
        tokens = self.grid[0] * self.grid[1] + int(cls_token)
        self.pos_embed = nn.Parameter(torch.empty(1, tokens, dim))
        nn.init.normal_(self.pos_embed, std=0.02)
        self.drop = nn.Dropout(0.0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Tokens ``(B, tokens, dim)`` of images ``(B, C, H, W)``."""
        b, c, _, _ = x.shape
        rows, cols = self.grid
        p = self.patch
        patches = (
            x.reshape(b, c, rows, p, cols, p)
            .permute(0, 2, 4, 3, 5, 1)  # (B, rows, cols, p, p, C)
            .reshape(b, rows * cols, p * p * c)
        )
        tokens = self.proj(patches)
        if self.cls_token is not None:
            tokens = torch.cat((self.cls_token.expand(b, -1, -1), tokens), dim=1)
        return self.drop(tokens + self.pos_embed)


class Attention(nn.Module):
    """Multi-head self-attention written out with ``nn.Linear`` projections.

    ``softmax(q·kᵀ/√d_head)·v`` per head, with ``q, k, v`` from one ``qkv`` Linear (no bias,
    as lucidrains' ViT) and the heads joined by the ``proj`` Linear. ``attn_drop`` (on the
    attention probabilities) and ``proj_drop`` (on the output) are ``nn.Dropout(0)``
    placeholders.

    Args:
        dim: width of a token; a multiple of ``heads``.
        heads: number of attention heads.
    """

    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.scale = (dim // heads) ** -0.5
        self.qkv = nn.Linear(dim, 3 * dim, bias=False)
        self.softmax = nn.Softmax(dim=-1)
        self.attn_drop = nn.Dropout(0.0)
        self.proj = nn.Linear(dim, dim)
        self.proj_drop = nn.Dropout(0.0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Attention output ``(B, T, dim)`` of tokens ``(B, T, dim)``."""
        b, t, d = x.shape
        qkv = self.qkv(x).reshape(b, t, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)
        q, k, v = qkv.unbind(0)  # each (B, heads, T, d_head)
        attn = self.attn_drop(self.softmax((q @ k.transpose(-2, -1)) * self.scale))
        out = (attn @ v).transpose(1, 2).reshape(b, t, d)
        return self.proj_drop(self.proj(out))


class MLP(nn.Module):
    """``fc1 → GELU → fc2 → drop``: the transformer block's feed-forward part.

    ``drop`` is an ``nn.Dropout(0)`` placeholder. There is none between the GELU and ``fc2``:
    dicelab's dropout masks the GELU's output by default (it is followed by a Linear layer).

    Args:
        dim: width of a token.
        hidden: width of the hidden layer.
    """

    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, dim)
        self.drop = nn.Dropout(0.0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """The MLP of tokens ``(B, T, dim)``."""
        return self.drop(self.fc2(self.act(self.fc1(x))))


class Block(nn.Module):
    """Pre-norm transformer block: ``x + attn(norm1(x))``, then ``x + mlp(norm2(x))``.

    Args:
        dim: width of a token.
        heads: number of attention heads.
        hidden: width of the MLP's hidden layer.
    """

    def __init__(self, dim: int, heads: int, hidden: int) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.attn = Attention(dim, heads)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = MLP(dim, hidden)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """The block's output for tokens ``(B, T, dim)``."""
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


@register_model(
    "vit",
    "small Vision Transformer: 7×7 or 4×4 patches, pre-norm attention/GELU-MLP blocks (images)",
)
class ViT(nn.Module):
    """A small Vision Transformer.

    ``embed`` (:class:`PatchEmbedding`: patches → Linear → class token and position
    embeddings) → ``depth`` pre-norm :class:`Block` s (``blocks.0`` …) → ``norm``
    (LayerNorm) → the class token's output (``pool="cls"``) or the mean over all tokens
    (``pool="mean"``) → ``head`` (Linear), giving logits. By default a 28×28 image is cut into
    7×7 patches (16 tokens) and a 32×32 image into 4×4 patches (64 tokens, the authors'
    setting), plus the class token.

    The network has ``4·depth + 2`` ``nn.Linear`` (the head last), ``depth`` ``nn.GELU``,
    ``2·depth + 1`` ``nn.LayerNorm`` and ``3·depth + 1`` ``nn.Dropout(p=0)`` placeholders; no
    BatchNorm, convolution or ReLU. See :mod:`dicelab.models.vit` for the technique sites and
    for what the perturbation optimizers do with its parameters.

    Args:
        input_shape: ``(channels, height, width)`` of one example.
        num_classes: number of logits.
        bn_momentum: unused (no BatchNorm).
        bn_eps: unused.
        dim: width of a token; a multiple of ``heads``.
        depth: number of transformer blocks.
        heads: attention heads per block (each of width ``dim / heads``).
        mlp_ratio: width of the MLP's hidden layer relative to ``dim`` (rounded down).
        patch_size: side of the square patches; must divide the image's height and width.
            ``None`` (default): 7 where it divides both (28×28), else 4 (32×32, 8×8).
        pool: ``"cls"`` (a class token, as the authors' ViT) or ``"mean"`` (mean pooling,
            no class token).

    Raises:
        ConfigError: an option is out of range, ``dim`` is not a multiple of ``heads``
            (field ``model.heads``), ``patch_size`` does not divide the image (field
            ``model.patch_size``, listing the sizes that do), ``pool`` is unknown, or the
            input is not an image.

    Example:
        >>> vit = ViT(input_shape=(1, 28, 28), num_classes=10)
        >>> vit(torch.zeros(2, 1, 28, 28)).shape
        torch.Size([2, 10])
        >>> sum(p.numel() for p in vit.parameters())
        138250
    """

    def __init__(
        self,
        *,
        input_shape: tuple[int, ...],
        num_classes: int,
        bn_momentum: float = 0.1,
        bn_eps: float = 1e-5,
        dim: int = 64,
        depth: int = 4,
        heads: int = 4,
        mlp_ratio: float = 2.0,
        patch_size: int | None = None,
        pool: str = "cls",
    ) -> None:
        super().__init__()
        channels, height, width = image_shape("vit", input_shape)
        require_at_least("dim", dim, 1)
        require_at_least("depth", depth, 1)
        require_at_least("heads", heads, 1)
        if dim % heads:
            raise ConfigError(
                "model.heads",
                heads,
                f"expected a divisor of model.dim={dim} (each head gets dim / heads features)",
            )
        hidden = int(dim * mlp_ratio)
        if hidden < 1:
            raise ConfigError(
                "model.mlp_ratio",
                mlp_ratio,
                f"expected a ratio > 0 giving an MLP width dim·mlp_ratio ≥ 1 (dim is {dim})",
            )
        patch = _patch_size(patch_size, height, width)
        if pool not in POOLING:
            raise UnknownNameError("model.pool", pool, POOLING, "pooling")
        self.pool = pool
        self.embed = PatchEmbedding(channels, height, width, patch, dim, pool == "cls")
        self.blocks = nn.Sequential(*(Block(dim, heads, hidden) for _ in range(depth)))
        self.norm = nn.LayerNorm(dim)
        self.head = nn.Linear(dim, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits ``(B, num_classes)`` of images ``(B, C, H, W)``."""
        tokens = self.norm(self.blocks(self.embed(x)))
        pooled = tokens[:, 0] if self.pool == "cls" else tokens.mean(dim=1)
        return self.head(pooled)


def _patch_size(value: object, height: int, width: int) -> int:
    """The patch side for ``height × width`` images: ``value``, or 7 or 4 when it is ``None``.

    Raises:
        ConfigError: on ``model.patch_size`` when ``value`` is not a positive integer or no
            such size divides both sides, listing the sizes that do.
    """
    if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
        raise ConfigError("model.patch_size", value, "expected an integer ≥ 1, or null for 7 or 4")
    candidates = (value,) if value is not None else AUTO_PATCH_SIZES
    for size in candidates:
        if not height % size and not width % size:
            return size
    fits = [s for s in range(1, min(height, width) + 1) if not height % s and not width % s]
    tried = "" if value is not None else " (the default tries 7, then 4)"
    raise ConfigError(
        "model.patch_size",
        value,
        f"expected a size that divides both sides of the {height}×{width} inputs{tried}: "
        + ", ".join(map(str, fits)),
    )
