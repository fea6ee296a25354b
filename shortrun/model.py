"""The generator p(x|z) and its baselines, all built on one LSTM decoder so comparisons are fair.

- `Generator`: z ~ N(0, I_d); a linear map of z is the LSTM's initial hidden state and z is
  concatenated to every input embedding (the short-run inference model, and the VAE decoder).
- `LanguageModel`: the same decoder with no latent variable.
- `VAE`: an LSTM encoder q(z|x) in front of a `Generator`.

Parameters start uniform in [-0.1, 0.1] as in the paper's reference code.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Optional

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.utils.rnn import pack_padded_sequence

from shortrun.config import ModelConfig
from shortrun.data.vocab import BOS, EOS, PAD
from shortrun.measures import gaussian_kl

INIT_RANGE = 0.1
MASK_BITS = 24


class TokenNLL(torch.autograd.Function):
    """-log softmax(logits)[target] per row, in float32 or wider, with a lean backward: softmax(logits) - onehot.

    The chain differentiates through this layer K times per training step, and its [N, V] arrays are
    most of the step's memory traffic, so each array is passed over as few times as possible:
    - float32 (and float64) logits: one log-softmax in the forward, kept; the backward only exponentiates it
      (no second softmax, no zero-filled gradient to scatter into, no log_softmax backward).
    - lower precision (bfloat16 autocast): one softmax in the logits' dtype (its reductions run in float32),
      kept; the NLL is -log of the target's probability in float32 (relative error 2^-8 on the probability:
      0.004 nats per token; probabilities below float32's range count as 1e-38, 87.5 nats), and the backward
      is one pass, probs * grad. A float32 log-softmax would first copy the logits to float32 and then write
      and re-read float32 arrays: four passes instead of one (bench/train_throughput.py).
    Differentiating the backward itself (create_graph: the change-of-variables Jacobian) recomputes the
    softmax from the logits so that it stays on the graph.
    """

    @staticmethod
    def forward(ctx: Any, logits: Tensor, targets: Tensor) -> Tensor:
        wide = torch.promote_types(logits.dtype, torch.float32)
        ctx.kept_probabilities = logits.dtype != wide
        if not ctx.kept_probabilities:
            log_probs = F.log_softmax(logits, dim=1)
            ctx.save_for_backward(logits, targets, log_probs)
            return -log_probs.gather(1, targets.unsqueeze(1)).squeeze(1)
        probs = torch.softmax(logits, dim=1)
        ctx.save_for_backward(logits, targets, probs)
        target_probs = probs.gather(1, targets.unsqueeze(1)).squeeze(1).to(wide)
        return -torch.log(target_probs.clamp_min(torch.finfo(wide).tiny))

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor, None]:
        logits, targets, kept = ctx.saved_tensors
        rows = torch.arange(targets.numel(), device=targets.device)
        if torch.is_grad_enabled():  # create_graph: stay on the graph, out-of-place, so softmax's backward works
            probs = torch.softmax(logits, dim=1, dtype=grad.dtype)
            onehot = torch.zeros_like(probs).index_put_((rows, targets), torch.ones((), dtype=probs.dtype, device=probs.device))
            return ((probs - onehot) * grad.unsqueeze(1)).to(logits.dtype), None
        if ctx.kept_probabilities:  # in the logits' dtype
            grad = grad.to(logits.dtype)
            out = kept * grad.unsqueeze(1)
        else:  # float32 (or wider) log-probabilities
            out = kept.exp().mul_(grad.unsqueeze(1))
        return out.index_put_((rows, targets), -grad, accumulate=True), None


class Dropout(nn.Dropout):
    """Inverted dropout whose mask comes from 24-bit random integers instead of Bernoulli draws.

    PyTorch's CPU bernoulli_ draws one number at a time; random integers come vectorised, and with the
    backward the layer costs a third (bench/train_throughput.py). The authors' training rule runs
    dropout in every chain step, 2(K + 1) masks per training step. Each unit is kept with probability
    1 - p up to 2^-24.
    """

    def forward(self, inputs: Tensor) -> Tensor:
        if not self.training or self.p == 0.0:
            return inputs
        draws = torch.randint(0, 1 << MASK_BITS, inputs.shape, dtype=torch.int32, device=inputs.device)
        keep = draws >= round(self.p * (1 << MASK_BITS))
        return inputs * keep.to(inputs.dtype).mul_(1.0 / (1.0 - self.p))


@dataclass(frozen=True)
class ScoredPositions:
    """Where a batch's targets are scored: work that depends on the tokens only, done once per batch
    rather than once per chain step (and, on CUDA, with its one host synchronisation outside the chain)."""

    flat: Tensor  # indices of the non-padding targets in the flattened [B * (T-1)] positions
    targets: Tensor  # their token ids
    rows: Tensor  # the sentence each belongs to
    batch: int

    @staticmethod
    def of(tokens: Tensor) -> "ScoredPositions":
        targets = tokens[:, 1:].reshape(-1)
        flat = (targets != PAD).nonzero().squeeze(1)
        return ScoredPositions(flat, targets[flat], torch.div(flat, tokens.size(1) - 1, rounding_mode="floor"),
                               tokens.size(0))


def _init_uniform(module: nn.Module) -> None:
    for param in module.parameters():
        nn.init.uniform_(param, -INIT_RANGE, INIT_RANGE)


class LSTMDecoder(nn.Module):
    """One-layer LSTM language model, optionally conditioned on a latent vector z.

    Inputs are tokens[:, :-1] (starting with <s>), targets tokens[:, 1:]; padding (id 0) is never
    scored. The NLL only evaluates the output layer at non-padding positions, so padded batches cost
    no extra vocabulary-sized work (the output layer dominates the FLOPs).
    """

    def __init__(self, vocab_size: int, cfg: ModelConfig, latent_dim: int) -> None:
        super().__init__()
        self.vocab_size = vocab_size
        self.latent_dim = latent_dim
        self.embed = nn.Embedding(vocab_size, cfg.emb_dim)
        self.drop_emb = Dropout(cfg.dropout_emb)
        self.lstm = nn.LSTM(cfg.emb_dim + latent_dim, cfg.hidden_dim, batch_first=True)
        self.init_hidden = nn.Linear(latent_dim, cfg.hidden_dim) if latent_dim else None
        self.drop_out = Dropout(cfg.dropout_out)
        self.out = nn.Linear(cfg.hidden_dim, vocab_size)
        _init_uniform(self)

    def _state(self, z: Optional[Tensor], batch: int, device: torch.device) -> tuple[Tensor, Tensor]:
        hidden = self.lstm.hidden_size
        c0 = torch.zeros(1, batch, hidden, device=device)
        h0 = self.init_hidden(z).unsqueeze(0) if self.init_hidden is not None else c0
        return h0, c0

    def _inputs(self, tokens: Tensor, z: Optional[Tensor]) -> Tensor:
        emb = self.drop_emb(self.embed(tokens))
        if self.latent_dim:
            emb = torch.cat([emb, z.unsqueeze(1).expand(-1, tokens.size(1), -1)], dim=2)
        return emb

    def _check_z(self, z: Optional[Tensor], batch: int) -> None:
        if self.latent_dim and (z is None or z.shape != (batch, self.latent_dim)):
            got = None if z is None else tuple(z.shape)
            raise ValueError(f"z must have shape ({batch}, {self.latent_dim}), got {got}")

    def hidden_states(self, tokens: Tensor, z: Optional[Tensor]) -> Tensor:
        """LSTM outputs (after output dropout) for the inputs tokens[:, :-1]: [B, T-1, H]."""
        self._check_z(z, tokens.size(0))
        inputs = tokens[:, :-1]
        out, _ = self.lstm(self._inputs(inputs, z), self._state(z, tokens.size(0), tokens.device))
        return self.drop_out(out)

    def _log_probs(self, tokens: Tensor, z: Optional[Tensor]) -> Tensor:
        return F.log_softmax(self.out(self.hidden_states(tokens, z)), dim=-1)

    def _sentence_nll(self, tokens: Tensor, z: Optional[Tensor], scored: Optional[ScoredPositions] = None) -> Tensor:
        scored = ScoredPositions.of(tokens) if scored is None else scored
        hidden = self.hidden_states(tokens, z)
        token_nll = TokenNLL.apply(self.out(hidden.reshape(-1, hidden.size(2)).index_select(0, scored.flat)), scored.targets)
        return torch.zeros(scored.batch, device=tokens.device, dtype=token_nll.dtype).index_add(0, scored.rows, token_nll)

    @torch.no_grad()
    def _decode(
        self, z: Optional[Tensor], batch: int, max_len: int, greedy: bool, rng: Optional[torch.Generator]
    ) -> list[list[int]]:
        device = self.out.weight.device
        state = self._state(z, batch, device)
        token = torch.full((batch, 1), BOS, dtype=torch.long, device=device)
        done = torch.zeros(batch, dtype=torch.bool, device=device)
        steps = []
        for _ in range(max_len):
            emb = self.embed(token)
            if self.latent_dim:
                emb = torch.cat([emb, z.unsqueeze(1)], dim=2)
            out, state = self.lstm(emb, state)
            logits = self.out(out[:, -1])
            if greedy:
                token = logits.argmax(dim=-1, keepdim=True)
            else:
                token = torch.multinomial(F.softmax(logits, dim=-1), 1, generator=rng)
            steps.append(token.squeeze(1).masked_fill(done, EOS))
            done |= token.squeeze(1) == EOS
            if bool(done.all()):
                break
        rows = torch.stack(steps, dim=1).tolist() if steps else [[] for _ in range(batch)]
        return [_strip(row) for row in rows]


def _strip(ids: list[int]) -> list[int]:
    """Token ids up to </s>, without special tokens."""
    kept = []
    for token in ids:
        if token == EOS:
            break
        if token not in (PAD, BOS):
            kept.append(token)
    return kept


class Generator(LSTMDecoder):
    """p(x|z) with prior z ~ N(0, I): the short-run inference model and the VAE's decoder."""

    def __init__(self, vocab_size: int, cfg: ModelConfig) -> None:
        super().__init__(vocab_size, cfg, cfg.latent_dim)

    def forward(self, tokens: Tensor, z: Tensor) -> Tensor:
        """Log-probabilities [B, T-1, V] of the targets tokens[:, 1:]."""
        return self._log_probs(tokens, z)

    def sentence_nll(self, tokens: Tensor, z: Tensor, scored: Optional[ScoredPositions] = None) -> Tensor:
        """-log p(x|z) per sentence [B], summed over non-padding targets (`scored`: ScoredPositions.of(tokens),
        when the caller scores the same tokens many times)."""
        return self._sentence_nll(tokens, z, scored)

    def decode(
        self, z: Tensor, max_len: int, greedy: bool = True, rng: Optional[torch.Generator] = None
    ) -> list[list[int]]:
        """Sentences (token ids without specials) generated from each row of z."""
        return self._decode(z, z.size(0), max_len, greedy, rng)


class LanguageModel(LSTMDecoder):
    """The baseline: the generator's decoder without a latent variable."""

    def __init__(self, vocab_size: int, cfg: ModelConfig) -> None:
        super().__init__(vocab_size, cfg, 0)

    def forward(self, tokens: Tensor) -> Tensor:
        """Log-probabilities [B, T-1, V] of the targets tokens[:, 1:]."""
        return self._log_probs(tokens, None)

    def sentence_nll(self, tokens: Tensor) -> Tensor:
        """-log p(x) per sentence [B] (exact)."""
        return self._sentence_nll(tokens, None)

    def decode(
        self, num: int, max_len: int, greedy: bool = True, rng: Optional[torch.Generator] = None
    ) -> list[list[int]]:
        """`num` sentences (token ids without specials)."""
        return self._decode(None, num, max_len, greedy, rng)


class VAE(nn.Module):
    """Gaussian VAE: LSTM encoder q(z|x) = N(mu, diag(exp(logvar))) and a `Generator` decoder."""

    def __init__(self, vocab_size: int, cfg: ModelConfig) -> None:
        super().__init__()
        self.embed = nn.Embedding(vocab_size, cfg.emb_dim)
        self.encoder = nn.LSTM(cfg.emb_dim, cfg.encoder_hidden_dim, batch_first=True)
        self.to_posterior = nn.Linear(cfg.encoder_hidden_dim, 2 * cfg.latent_dim)
        _init_uniform(self)
        self.generator = Generator(vocab_size, cfg)

    def encode(self, tokens: Tensor, lengths: Tensor) -> tuple[Tensor, Tensor]:
        """(mu, logvar) [B, d] from the encoder's last valid hidden state (<s> ... </s> read)."""
        packed = pack_padded_sequence(self.embed(tokens), (lengths + 1).cpu(), batch_first=True, enforce_sorted=False)
        _, (h_n, _) = self.encoder(packed)
        mu, logvar = self.to_posterior(h_n[-1]).chunk(2, dim=-1)
        return mu, logvar

    def forward(self, tokens: Tensor, lengths: Tensor, rng: Optional[torch.Generator] = None) -> tuple[Tensor, Tensor, Tensor]:
        """(reconstruction NLL [B], KL per dimension [B, d], mu [B, d]) with one reparameterised sample."""
        mu, logvar = self.encode(tokens, lengths)
        eps = torch.randn(mu.shape, device=mu.device, dtype=mu.dtype, generator=rng)
        z = mu + torch.exp(0.5 * logvar) * eps
        kl = gaussian_kl(mu, logvar)
        return self.generator.sentence_nll(tokens, z), kl, mu


MODEL_CLASSES = {"sri": Generator, "vae": VAE, "lm": LanguageModel}


def build_model(kind: str, vocab_size: int, cfg: ModelConfig) -> nn.Module:
    """A fresh model of `kind` (sri, vae or lm)."""
    if kind not in MODEL_CLASSES:
        raise ValueError(f"model kind {kind!r}: expected one of {', '.join(MODEL_CLASSES)}")
    return MODEL_CLASSES[kind](vocab_size, cfg)


def latent_generator(model: nn.Module) -> Optional[Generator]:
    """The p(x|z) of a latent model (SRI: itself, VAE: its decoder), None for the LM."""
    if isinstance(model, VAE):
        return model.generator
    return model if isinstance(model, Generator) else None
