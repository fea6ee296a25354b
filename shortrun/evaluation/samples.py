"""Looking at the latent space as text: prior samples, reconstructions and interpolations.

Latent models decode greedily, so all variety comes from z; the LM has no z and samples its words.
Reconstructions and interpolations decode each sentence's posterior mean (the same posterior
approximations as `posterior`: encoder mean for the VAE, mean of short-run end points for SRI).
"""
from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import Tensor, nn

from shortrun.data.vocab import Vocab
from shortrun.model import Generator


@dataclass
class SampleSheet:
    """Readable text for one model."""

    kind: str
    prior: list[str] = field(default_factory=list)
    reconstructions: list[tuple[str, str]] = field(default_factory=list)  # (input, reconstruction)
    interpolations: list[tuple[str, str, list[str]]] = field(default_factory=list)  # (start, end, decoded points)

    def render(self) -> str:
        lines = [f"# {self.kind}: samples", "", "## sentences sampled from the prior", ""]
        lines += [f"- {text}" for text in self.prior]
        if self.reconstructions:
            lines += ["", "## reconstructions (greedy decoding of the posterior mean)", ""]
            for source, output in self.reconstructions:
                lines += [f"  input: {source}", f"  output: {output}", ""]
        if self.interpolations:
            lines += ["", "## interpolations between two test sentences' posterior means", ""]
            for first, last, path in self.interpolations:
                lines += [f"  from: {first}"] + [f"  {i}. {text}" for i, text in enumerate(path)] + [f"  to: {last}", ""]
        return "\n".join(lines).rstrip() + "\n"


def to_text(vocab: Vocab, ids: list[int]) -> str:
    return " ".join(vocab.decode(ids))


def prior_samples(model: nn.Module, generator: Generator | None, vocab: Vocab, num: int, max_len: int,
                  rng: torch.Generator) -> list[str]:
    """`num` sentences: greedy decoding of z ~ N(0, I) for latent models, ancestral sampling for the LM."""
    if generator is None:
        rows = model.decode(num, max_len, greedy=False, rng=rng)
    else:
        z = torch.randn(num, generator.latent_dim, generator=rng, device=rng.device)
        rows = generator.decode(z, max_len)
    return [to_text(vocab, row) for row in rows]


def is_loop(text: str, max_len: int, distinct: int = 2) -> bool:
    """A degenerate sample: it ran to the length limit (no end of sentence) and its second half repeats at most
    `distinct` words, the mark of a prior draw that fell where the decoder never learned to stop (a prior hole)."""
    words = text.split()
    return len(words) >= max_len and len(set(words[len(words) // 2:])) <= distinct


def loop_share(texts: list[str], max_len: int) -> float:
    """The fraction of `texts` that are degenerate loops (`is_loop`)."""
    return sum(is_loop(text, max_len) for text in texts) / max(len(texts), 1)


def decode_means(generator: Generator, vocab: Vocab, mu: Tensor, max_len: int) -> list[str]:
    """Greedy decoding of each row of `mu` [n, d]."""
    return [to_text(vocab, row) for row in generator.decode(mu, max_len)]


def interpolation_path(start: Tensor, end: Tensor, steps: int) -> Tensor:
    """`steps` evenly spaced points [steps, d] from `start` to `end`, both included."""
    weights = torch.linspace(0.0, 1.0, steps, device=start.device, dtype=start.dtype).unsqueeze(1)
    return (1.0 - weights) * start + weights * end
