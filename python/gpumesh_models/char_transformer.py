"""The "char-transformer" architecture: a small decoder-only (GPT-style) transformer over characters.

Pre-norm blocks (LayerNorm, causal self-attention, LayerNorm, GELU MLP) and an output layer tied to the
token embeddings. Positions enter as ALiBi attention biases (Press et al., "Train Short, Test Long"): each
head penalises attention by distance, with a fixed slope per head and no position parameters. A model this
small learns to use nearby characters far sooner that way than with learned position embeddings.

Tensor names in model.safetensors are this module's state_dict() names (README.md lists them). Inference
can carry a key/value cache between calls, so each generated token costs one position's work, not the
whole context's.
"""

import torch
from torch import nn
from torch.nn import functional

from gpumesh_models.model_format import Hyperparameters

# Per layer: (keys, values), each [batch, heads, positions, head_dim].
KeyValueCache = list[tuple[torch.Tensor, torch.Tensor]]


def alibi_slopes(heads: int) -> torch.Tensor:
    """ALiBi's per-head slopes: a geometric sequence from 2^(-8/heads) down to 2^-8."""
    return torch.tensor([2.0 ** (-8.0 * (head + 1) / heads) for head in range(heads)])


def alibi_bias(slopes: torch.Tensor, query_positions: int, key_positions: int) -> torch.Tensor:
    """[heads, queries, keys] additive attention bias; the queries are the last query_positions of the keys'
    positions. Keys after a query get -inf (causal)."""
    query_index = torch.arange(key_positions - query_positions, key_positions).unsqueeze(1)
    distance = query_index - torch.arange(key_positions).unsqueeze(0)
    bias = -slopes.view(-1, 1, 1) * distance.clamp(min=0).to(slopes.dtype)
    return bias.masked_fill(distance < 0, float("-inf"))


class CausalSelfAttention(nn.Module):
    def __init__(self, hyperparameters: Hyperparameters, dropout: float):
        super().__init__()
        self.heads = hyperparameters.heads
        self.dropout = dropout
        self.qkv = nn.Linear(hyperparameters.d_model, 3 * hyperparameters.d_model)
        self.out = nn.Linear(hyperparameters.d_model, hyperparameters.d_model)

    def forward(
        self, x: torch.Tensor, past: tuple[torch.Tensor, torch.Tensor] | None, bias: torch.Tensor
    ) -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor]]:
        """bias: alibi_bias() for these positions (shared by every layer, so made once per forward)."""
        batch, positions, d_model = x.shape
        query, key, value = self.qkv(x).split(d_model, dim=2)
        shape = (batch, positions, self.heads, d_model // self.heads)
        query, key, value = (t.view(shape).transpose(1, 2) for t in (query, key, value))
        if past is not None:
            key = torch.cat([past[0], key], dim=2)
            value = torch.cat([past[1], value], dim=2)
        # The new positions attend causally among themselves and to all the cached ones before them.
        dropout = self.dropout if self.training else 0.0
        attended = functional.scaled_dot_product_attention(
            query, key, value, attn_mask=bias, dropout_p=dropout
        )
        attended = attended.transpose(1, 2).contiguous().view(batch, positions, d_model)
        return self.out(attended), (key, value)


class Block(nn.Module):
    def __init__(self, hyperparameters: Hyperparameters, dropout: float):
        super().__init__()
        self.attention_norm = nn.LayerNorm(hyperparameters.d_model)
        self.attention = CausalSelfAttention(hyperparameters, dropout)
        self.residual_dropout = nn.Dropout(dropout)
        self.mlp_norm = nn.LayerNorm(hyperparameters.d_model)
        self.mlp_in = nn.Linear(hyperparameters.d_model, hyperparameters.d_ff)
        self.mlp_out = nn.Linear(hyperparameters.d_ff, hyperparameters.d_model)

    def forward(
        self, x: torch.Tensor, past: tuple[torch.Tensor, torch.Tensor] | None, bias: torch.Tensor
    ) -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor]]:
        attended, present = self.attention(self.attention_norm(x), past, bias)
        x = x + self.residual_dropout(attended)
        x = x + self.residual_dropout(self.mlp_out(functional.gelu(self.mlp_in(self.mlp_norm(x)))))
        return x, present


class CharTransformer(nn.Module):
    def __init__(
        self,
        hyperparameters: Hyperparameters,
        vocabulary_size: int,
        context_length: int,
        dropout: float = 0.0,
    ):
        """dropout only matters in training mode; it is not part of the model's format."""
        super().__init__()
        self.context_length = context_length
        self.token_embedding = nn.Embedding(vocabulary_size, hyperparameters.d_model)
        # Not a parameter and not saved: ALiBi's slopes follow from the number of heads alone.
        self.register_buffer("slopes", alibi_slopes(hyperparameters.heads), persistent=False)
        self.blocks = nn.ModuleList(Block(hyperparameters, dropout) for _ in range(hyperparameters.layers))
        self.final_norm = nn.LayerNorm(hyperparameters.d_model)
        self.apply(self._initialise)

    @staticmethod
    def _initialise(module: nn.Module) -> None:
        # Small weights (GPT-2's scheme): with the output tied to the embeddings, PyTorch's N(0, 1) embedding
        # default would start training from huge logits.
        if isinstance(module, (nn.Linear, nn.Embedding)):
            nn.init.normal_(module.weight, mean=0.0, std=0.02)
        if isinstance(module, nn.Linear) and module.bias is not None:
            nn.init.zeros_(module.bias)

    def hidden_states(
        self, token_ids: torch.Tensor, past: KeyValueCache | None = None
    ) -> tuple[torch.Tensor, KeyValueCache]:
        """Final (normed) hidden states of token_ids [batch, positions], which follow the cached positions."""
        start = 0 if past is None else past[0][0].shape[2]
        positions = token_ids.shape[1]
        if start + positions > self.context_length:
            raise ValueError(f"{start + positions} positions exceed the context length {self.context_length}")
        x = self.token_embedding(token_ids)
        bias = alibi_bias(self.slopes, positions, start + positions)
        present: KeyValueCache = []
        for index, block in enumerate(self.blocks):
            x, layer_present = block(x, None if past is None else past[index], bias)
            present.append(layer_present)
        return self.final_norm(x), present

    def logits(self, hidden: torch.Tensor) -> torch.Tensor:
        return hidden @ self.token_embedding.weight.T

    def forward(self, token_ids: torch.Tensor) -> torch.Tensor:
        hidden, _ = self.hidden_states(token_ids)
        return self.logits(hidden)
