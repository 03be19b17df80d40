"""The two drafting models.

Both take a batch of studies as ``(B, 2, 1, H, W)`` tensors in ``[0, 1]`` (frontal view first, lateral second)
and token ids, and expose the same three decoding hooks (``encode``, ``start``, ``step``) so that one greedy
and one beam search serve both.

``cnn-lstm``
    The seed (Show and Tell): a ResNet-101 without its fc layer pools the frontal image to 2048 numbers, a
    linear layer maps them to the embedding size, and that vector is the LSTM's first input, before
    ``<start>`` and the words.
``attention``
    Keeps the ResNet's 7x7 grid for both views (as R2Gen does), encodes the 98 regions with a Transformer
    encoder and decodes with a Transformer decoder that cross-attends to them. VisionEncoderDecoderModel does
    not take a ResNet encoder, so this is a plain ``nn.Module``.
``vit-gpt2``
    transformers' ``VisionEncoderDecoderModel``: a ViT encoder and a GPT-2 decoder with cross-attention,
    built from config (sizes from the same fields), or from a local ``VisionEncoderDecoderModel`` snapshot
    (``--pretrained DIR``, ``local_files_only``; the decoder's embeddings are resized to our vocabulary).
    Both views go through the encoder; their patch states, each with a learned view embedding, are the
    decoder's cross-attention memory.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import torch
from pydantic import BaseModel, ConfigDict, Field
from torch import Tensor, nn
from transformers import ResNetConfig, ResNetModel

__all__ = [
    "PRESETS",
    "Architecture",
    "AttentionModel",
    "CaptionModel",
    "CnnLstm",
    "ModelConfig",
    "ResNetSpec",
    "build_model",
]

Architecture = Literal["cnn-lstm", "attention", "vit-gpt2"]
_MEAN = (0.485, 0.456, 0.406)  # ImageNet, which the pretrained ResNet was trained on
_STD = (0.229, 0.224, 0.225)


class ResNetSpec(BaseModel):
    """The fields of transformers' ``ResNetConfig`` that shape the weights."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    embedding_size: int = 64
    hidden_sizes: tuple[int, ...] = (256, 512, 1024, 2048)
    depths: tuple[int, ...] = (3, 4, 23, 3)  # ResNet-101
    layer_type: Literal["basic", "bottleneck"] = "bottleneck"
    downsample_in_first_stage: bool = False
    downsample_in_bottleneck: bool = False

    def to_config(self) -> Any:
        return ResNetConfig(num_channels=3, hidden_act="relu", **self.model_dump())

    @classmethod
    def from_config(cls, config: Any) -> ResNetSpec:
        return cls(**{name: getattr(config, name) for name in cls.model_fields})


class ModelConfig(BaseModel):
    """Everything needed to rebuild a model's modules; stored in the checkpoint."""

    model_config = ConfigDict(extra="forbid")
    architecture: Architecture
    vocab_size: int = Field(ge=5)
    image_size: int = Field(default=224, ge=32)
    max_tokens: int = Field(default=60, ge=1)
    resnet: ResNetSpec = Field(default_factory=ResNetSpec)
    embed_size: int = 256
    hidden_size: int = 512  # LSTM hidden size; Transformer width for "attention"
    num_layers: int = 2
    encoder_layers: int = 3  # "attention" only
    heads: int = 8
    ff_size: int = 2048
    dropout: float = Field(default=0.1, ge=0.0, lt=1.0)
    patch_size: int = Field(default=16, ge=2)  # "vit-gpt2" only
    # "vit-gpt2" from a pretrained snapshot: the encoder's and decoder's own configs (to_dict), which then
    # decide the shapes instead of the fields above.
    encoder_config: dict[str, Any] | None = None
    decoder_config: dict[str, Any] | None = None
    # Conditioning on the clinical context (gateway.findings.context): a prefix of age, sex and this many
    # indication words fed to the decoder before <start>. Off by default; the flag travels in the checkpoint.
    context: bool = False
    context_tokens: int = Field(default=8, ge=0, le=64)
    # Ids from here on are words only the context prefix holds (age:70s, sex:f, indication-only words): read,
    # never generated. None = every id may be generated.
    generated_vocab_size: int | None = Field(default=None, ge=5)

    @property
    def prefix_length(self) -> int:
        """Tokens before ``<start>``: 0 without context."""
        return 2 + self.context_tokens if self.context else 0


# Tiny sizes for tests, the synthetic set and benchmarks; "full" is the seed's ResNet-101.
PRESETS: dict[str, dict[str, Any]] = {
    "full": {},
    "tiny": {
        "image_size": 64,
        "resnet": ResNetSpec(
            embedding_size=16, hidden_sizes=(16, 32, 48, 64), depths=(1, 1, 1, 1), layer_type="basic"
        ),
        "embed_size": 64,
        "hidden_size": 96,
        "num_layers": 1,
        "encoder_layers": 1,
        "heads": 4,
        "ff_size": 192,
        "dropout": 0.1,
        "patch_size": 8,
    },
}


class _Backbone(nn.Module):
    """ResNet without its classifier; normalises ``[0, 1]`` greyscale input itself."""

    def __init__(self, spec: ResNetSpec, pretrained: Path | None = None) -> None:
        super().__init__()
        if pretrained is not None:
            self.resnet = ResNetModel.from_pretrained(str(pretrained), local_files_only=True)
        else:
            self.resnet = ResNetModel(spec.to_config())
        self.mean: Tensor
        self.std: Tensor
        self.register_buffer("mean", torch.tensor(_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(_STD).view(1, 3, 1, 1), persistent=False)

    @property
    def out_channels(self) -> int:
        sizes: list[int] = list(self.resnet.config.hidden_sizes or [])
        return int(sizes[-1])

    def forward(self, images: Tensor) -> Tensor:
        """``(N, 1, H, W)`` → grid ``(N, C, H/32, W/32)``."""
        x = (images.expand(-1, 3, -1, -1) - self.mean) / self.std
        out = self.resnet(pixel_values=x)
        grid: Tensor = out.last_hidden_state
        return grid


class CaptionModel(nn.Module):
    """Common interface: teacher-forced ``forward`` and the decoding hooks."""

    config: ModelConfig

    def encode(self, images: Tensor) -> Tensor:
        raise NotImplementedError

    def start(self, memory: Tensor) -> tuple[Tensor, ...]:
        """Decoder state before the first word."""
        raise NotImplementedError

    def step(
        self, tokens: Tensor, memory: Tensor, state: tuple[Tensor, ...]
    ) -> tuple[Tensor, tuple[Tensor, ...]]:
        """Log-probabilities ``(N, V)`` of the next word after ``tokens`` ``(N,)``, and the new state."""
        raise NotImplementedError

    @staticmethod
    def reorder(state: tuple[Tensor, ...], index: Tensor) -> tuple[Tensor, ...]:
        raise NotImplementedError

    def forward(self, images: Tensor, inputs: Tensor) -> Tensor:
        """Logits ``(B, T, V)`` for ``inputs`` ``(B, T)`` = ``[context prefix] <start> w1 .. wn`` (teacher
        forcing); the prefix is ``config.prefix_length`` tokens, none without context."""
        raise NotImplementedError


class CnnLstm(CaptionModel):
    def __init__(self, config: ModelConfig, pretrained: Path | None = None) -> None:
        super().__init__()
        self.config = config
        self.backbone = _Backbone(config.resnet, pretrained)
        self.project = nn.Linear(self.backbone.out_channels, config.embed_size)
        self.embed = nn.Embedding(config.vocab_size, config.embed_size)
        self.lstm = nn.LSTM(
            config.embed_size,
            config.hidden_size,
            config.num_layers,
            batch_first=True,
            dropout=config.dropout if config.num_layers > 1 else 0.0,
        )
        self.dropout = nn.Dropout(config.dropout)
        self.head = nn.Linear(config.hidden_size, config.vocab_size)

    def encode(self, images: Tensor) -> Tensor:
        grid = self.backbone(images[:, 0])
        pooled = grid.mean(dim=(2, 3))  # what ResNet's own average pool gives before fc
        features: Tensor = self.project(pooled)
        return features

    def forward(self, images: Tensor, inputs: Tensor) -> Tensor:
        features = self.encode(images).unsqueeze(1)
        sequence = torch.cat([features, self.embed(inputs)], dim=1)
        out, _ = self.lstm(self.dropout(sequence))
        logits: Tensor = self.head(self.dropout(out[:, 1:]))
        return logits

    def start(self, memory: Tensor) -> tuple[Tensor, ...]:
        _, (h, c) = self.lstm(memory.unsqueeze(1))
        return h, c

    def step(
        self, tokens: Tensor, memory: Tensor, state: tuple[Tensor, ...]
    ) -> tuple[Tensor, tuple[Tensor, ...]]:
        out, (h, c) = self.lstm(self.embed(tokens).unsqueeze(1), (state[0], state[1]))
        logits = self.head(out[:, 0]).float()
        return torch.log_softmax(logits, dim=-1), (h, c)

    @staticmethod
    def reorder(state: tuple[Tensor, ...], index: Tensor) -> tuple[Tensor, ...]:
        return state[0][:, index], state[1][:, index]


class AttentionModel(CaptionModel):
    def __init__(self, config: ModelConfig, pretrained: Path | None = None) -> None:
        super().__init__()
        self.config = config
        width = config.hidden_size
        self.backbone = _Backbone(config.resnet, pretrained)
        cells = max(1, -(-config.image_size // 32)) ** 2
        self.project = nn.Linear(self.backbone.out_channels, width)
        self.region = nn.Parameter(torch.zeros(1, 1, cells, width))
        self.view = nn.Parameter(torch.zeros(1, 2, 1, width))
        nn.init.normal_(self.region, std=0.02)
        nn.init.normal_(self.view, std=0.02)
        encoder_layer = nn.TransformerEncoderLayer(
            width, config.heads, config.ff_size, config.dropout, batch_first=True, norm_first=True
        )
        self.encoder = nn.TransformerEncoder(encoder_layer, config.encoder_layers, enable_nested_tensor=False)
        self.embed = nn.Embedding(config.vocab_size, width)
        self.position = nn.Embedding(config.max_tokens + 2 + config.prefix_length, width)
        decoder_layer = nn.TransformerDecoderLayer(
            width, config.heads, config.ff_size, config.dropout, batch_first=True, norm_first=True
        )
        self.decoder = nn.TransformerDecoder(decoder_layer, config.num_layers)
        self.norm = nn.LayerNorm(width)
        self.head = nn.Linear(width, config.vocab_size)

    def encode(self, images: Tensor) -> Tensor:
        batch, views = images.shape[:2]
        grid = self.backbone(images.flatten(0, 1))  # (B*2, C, h, w)
        regions = self.project(grid.flatten(2).transpose(1, 2))  # (B*2, h*w, D)
        regions = regions.reshape(batch, views, regions.shape[1], -1)
        regions = regions + self.region[:, :, : regions.shape[2]] + self.view[:, :views]
        memory: Tensor = self.encoder(regions.flatten(1, 2))
        return memory

    def _decode(self, inputs: Tensor, memory: Tensor) -> Tensor:
        length = inputs.shape[1]
        positions = torch.arange(length, device=inputs.device)
        x = self.embed(inputs) + self.position(positions)
        mask = torch.triu(torch.full((length, length), float("-inf"), device=inputs.device), diagonal=1)
        out = self.decoder(x, memory, tgt_mask=mask, tgt_is_causal=True)
        logits: Tensor = self.head(self.norm(out))
        return logits

    def forward(self, images: Tensor, inputs: Tensor) -> Tensor:
        return self._decode(inputs, self.encode(images))

    def start(self, memory: Tensor) -> tuple[Tensor, ...]:
        return (torch.zeros(memory.shape[0], 0, dtype=torch.long, device=memory.device),)

    def step(
        self, tokens: Tensor, memory: Tensor, state: tuple[Tensor, ...]
    ) -> tuple[Tensor, tuple[Tensor, ...]]:
        # Re-running the short prefix is simpler than a key/value cache and cheap at 60 tokens.
        prefix = torch.cat([state[0], tokens.unsqueeze(1)], dim=1)
        logits = self._decode(prefix, memory)[:, -1].float()
        return torch.log_softmax(logits, dim=-1), (prefix,)

    @staticmethod
    def reorder(state: tuple[Tensor, ...], index: Tensor) -> tuple[Tensor, ...]:
        return (state[0][index],)


class VitGpt2(CaptionModel):
    """A ``VisionEncoderDecoderModel`` (ViT → GPT-2) behind the common decoding hooks."""

    def __init__(self, config: ModelConfig, pretrained: Path | None = None) -> None:
        from transformers import (
            GPT2Config,
            VisionEncoderDecoderConfig,
            VisionEncoderDecoderModel,
            ViTConfig,
        )

        super().__init__()
        self.config = config
        if pretrained is not None:
            model = VisionEncoderDecoderModel.from_pretrained(str(pretrained), local_files_only=True)
            model.decoder.resize_token_embeddings(config.vocab_size)
            # untie the output layer from the embeddings, as from config: safetensors holds no shared tensors
            model.decoder.config.tie_word_embeddings = False
            model.decoder.lm_head.weight = nn.Parameter(model.decoder.lm_head.weight.detach().clone())
        else:
            encoder = (
                ViTConfig(**config.encoder_config)
                if config.encoder_config
                else ViTConfig(
                    image_size=config.image_size,
                    patch_size=config.patch_size,
                    num_channels=3,
                    hidden_size=config.hidden_size,
                    num_hidden_layers=config.encoder_layers,
                    num_attention_heads=config.heads,
                    intermediate_size=config.ff_size,
                    hidden_dropout_prob=config.dropout,
                    attention_probs_dropout_prob=config.dropout,
                )
            )
            decoder = (
                GPT2Config(**config.decoder_config)
                if config.decoder_config
                else GPT2Config(
                    n_embd=config.hidden_size,
                    n_layer=config.num_layers,
                    n_head=config.heads,
                    n_inner=config.ff_size,
                    resid_pdrop=config.dropout,
                    embd_pdrop=config.dropout,
                    attn_pdrop=config.dropout,
                )
            )
            decoder.vocab_size = config.vocab_size
            decoder.n_positions = max(int(decoder.n_positions), config.max_tokens + 2 + config.prefix_length)
            decoder.is_decoder, decoder.add_cross_attention = True, True
            # untied, so that the safetensors checkpoint holds no shared tensors
            decoder.tie_word_embeddings = False
            # our vocabulary's <pad> <start> <end> (gateway.findings.text.SPECIALS)
            decoder.pad_token_id, decoder.bos_token_id, decoder.eos_token_id = 0, 1, 2
            if not config.encoder_config:
                encoder.image_size = config.image_size
            model = VisionEncoderDecoderModel(
                config=VisionEncoderDecoderConfig.from_encoder_decoder_configs(encoder, decoder)
            )
        self.model: Any = model
        encoder_config: Any = model.config.encoder
        width = int(encoder_config.hidden_size)
        self.view = nn.Parameter(torch.zeros(1, 2, 1, width))
        nn.init.normal_(self.view, std=0.02)

    def encode(self, images: Tensor) -> Tensor:
        batch, views = images.shape[:2]
        x = images.flatten(0, 1).expand(-1, 3, -1, -1) * 2.0 - 1.0  # ViT's [-1, 1] input
        states = self.model.encoder(pixel_values=x, interpolate_pos_encoding=True).last_hidden_state
        states = states.reshape(batch, views, states.shape[1], -1) + self.view[:, :views]
        memory: Tensor = states.flatten(1, 2)
        if getattr(self.model, "enc_to_dec_proj", None) is not None:
            memory = self.model.enc_to_dec_proj(memory)
        return memory

    def _decode(self, inputs: Tensor, memory: Tensor) -> Tensor:
        out = self.model.decoder(
            input_ids=inputs,
            attention_mask=torch.ones_like(inputs),  # <pad> in a context prefix is an input like any other
            encoder_hidden_states=memory,
            use_cache=False,
        )
        logits: Tensor = out.logits
        return logits

    def forward(self, images: Tensor, inputs: Tensor) -> Tensor:
        return self._decode(inputs, self.encode(images))

    def start(self, memory: Tensor) -> tuple[Tensor, ...]:
        return (torch.zeros(memory.shape[0], 0, dtype=torch.long, device=memory.device),)

    def step(
        self, tokens: Tensor, memory: Tensor, state: tuple[Tensor, ...]
    ) -> tuple[Tensor, tuple[Tensor, ...]]:
        prefix = torch.cat([state[0], tokens.unsqueeze(1)], dim=1)
        logits = self._decode(prefix, memory)[:, -1].float()
        return torch.log_softmax(logits, dim=-1), (prefix,)

    @staticmethod
    def reorder(state: tuple[Tensor, ...], index: Tensor) -> tuple[Tensor, ...]:
        return (state[0][index],)


def build_model(config: ModelConfig, pretrained: Path | None = None) -> CaptionModel:
    """A fresh model; ``pretrained`` is a local snapshot: ``microsoft/resnet-101`` style for the ResNet
    models, a ``VisionEncoderDecoderModel`` folder for ``vit-gpt2``."""
    classes: dict[str, type[CaptionModel]] = {
        "cnn-lstm": CnnLstm,
        "attention": AttentionModel,
        "vit-gpt2": VitGpt2,
    }
    return classes[config.architecture](config, pretrained)


def pretrained_vit_gpt2(pretrained: Path) -> dict[str, Any]:
    """ModelConfig fields of a local VisionEncoderDecoderModel snapshot, so a checkpoint rebuilds it."""
    from transformers import VisionEncoderDecoderConfig

    config: Any = VisionEncoderDecoderConfig.from_pretrained(str(pretrained), local_files_only=True)
    return {
        "encoder_config": config.encoder.to_dict(),
        "decoder_config": config.decoder.to_dict(),
        "hidden_size": int(config.decoder.n_embd),
    }


def pretrained_spec(pretrained: Path) -> ResNetSpec:
    """The ResNet shape of a local snapshot, so that the checkpoint records what was loaded."""
    return ResNetSpec.from_config(ResNetConfig.from_pretrained(str(pretrained), local_files_only=True))
