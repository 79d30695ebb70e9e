"""Input modules (features -> vector) and the batching of feature inputs.

An end model's input ``X`` is one of

* a dense ``(n, d)`` numpy array (or pandas DataFrame): batches are float32 tensors;
* a ``scipy.sparse`` ``(n, V)`` matrix (e.g. TF-IDF): batches are :class:`SparseRows`
  (the CSR rows of the batch as ``EmbeddingBag`` inputs), never densified;
* a dict of arrays with the same number of rows (e.g. token ids and entity spans, see
  :func:`metal.end_model.text.encode_tokens`): batches are dicts of tensors;
* any object with ``__len__`` and ``take(rows) -> batch``, for custom data.

An *input module* is any ``torch.nn.Module`` whose ``forward`` takes such a batch and returns
a ``(b, out_features)`` float tensor. The modules here also expose ``out_features`` and a
JSON-friendly ``config()`` so that saved end models rebuild them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple

import numpy as np
import scipy.sparse as sp
import torch
from torch import nn

from metal.errors import ConfigError, DataFormatError


class SparseRows(NamedTuple):
    """A batch of sparse rows as ``EmbeddingBag`` inputs (CSR without the last pointer)."""

    indices: torch.Tensor  # (nnz,) int64 column indices
    offsets: torch.Tensor  # (b,) int64 start of each row in ``indices``
    weights: torch.Tensor  # (nnz,) float32 values
    n_rows: int

    def to(self, device: torch.device | str) -> SparseRows:
        return SparseRows(self.indices.to(device), self.offsets.to(device),
                          self.weights.to(device), self.n_rows)


# ---------------------------------------------------------------------------- batching
def prepare_inputs(X: Any, name: str = "X") -> Any:
    """Validate ``X`` once and convert it to the form :func:`take_rows` slices quickly."""
    if hasattr(X, "take") and hasattr(X, "__len__") and not isinstance(X, np.ndarray) \
            and not hasattr(X, "iloc"):
        return X
    if sp.issparse(X):
        X = sp.csr_matrix(X, dtype=np.float32)
        # a sorted copy: the converted matrix may share its index arrays with the caller's,
        # and sorting them in place would move the caller's values to other columns
        return X if X.has_sorted_indices else X.sorted_indices()
    if isinstance(X, Mapping):
        if not X:
            raise DataFormatError(f"{name} is an empty dict; expected arrays with one row per "
                                  "example (e.g. {'tokens': ..., 'spans': ...})")
        out = {str(k): prepare_inputs(v, f"{name}[{k!r}]") for k, v in X.items()}
        sizes = {k: n_rows(v) for k, v in out.items()}
        if len(set(sizes.values())) != 1:
            raise DataFormatError(f"the arrays of {name} have different numbers of rows "
                                  f"{sizes}; expected one row per example in each")
        return out
    if isinstance(X, torch.Tensor):
        X = X.detach().cpu().numpy()
    if hasattr(X, "to_numpy"):
        X = X.to_numpy()
    A = np.asarray(X)
    if A.ndim == 0 or A.dtype.kind not in "biuf":
        raise DataFormatError(f"{name} has dtype {A.dtype} and shape {A.shape}; expected a "
                              "numeric array with one row per example, a scipy.sparse matrix "
                              "or a dict of such arrays")
    if A.dtype.kind == "f":
        A = np.ascontiguousarray(A, dtype=np.float32)
        if not np.isfinite(A).all():
            raise DataFormatError(f"{name} contains NaN or infinite values; impute or drop "
                                  "them before training")
        return A
    return np.ascontiguousarray(A, dtype=np.int64)


def n_rows(X: Any) -> int:
    """Number of examples in a prepared input."""
    if isinstance(X, Mapping):
        return n_rows(next(iter(X.values())))
    if sp.issparse(X):
        return int(X.shape[0])
    return len(X)


def take_rows(X: Any, rows: np.ndarray) -> Any:
    """The batch of ``rows`` of a prepared input, as CPU tensors."""
    if isinstance(X, np.ndarray):
        return torch.from_numpy(X[rows])
    if sp.issparse(X):
        sub = X[rows]
        return SparseRows(torch.from_numpy(sub.indices.astype(np.int64)),
                          torch.from_numpy(sub.indptr[:-1].astype(np.int64)),
                          torch.from_numpy(sub.data.astype(np.float32, copy=False)),
                          int(sub.shape[0]))
    if isinstance(X, Mapping):
        return {k: take_rows(v, rows) for k, v in X.items()}
    return X.take(rows)


def to_device(batch: Any, device: torch.device) -> Any:
    """Move a batch (tensor, :class:`SparseRows`, dict, or anything with ``.to``) to ``device``."""
    if isinstance(batch, Mapping):
        return {k: to_device(v, device) for k, v in batch.items()}
    if hasattr(batch, "to"):
        return batch.to(device)
    return batch


# ---------------------------------------------------------------------------- modules
def _activation(name: str) -> nn.Module:
    acts: dict[str, type[nn.Module]] = {"relu": nn.ReLU, "tanh": nn.Tanh, "gelu": nn.GELU}
    if name not in acts:
        raise ConfigError(f"activation={name!r} is not known; expected one of {sorted(acts)}")
    return acts[name]()


def mlp_layers(in_features: int, hidden: Sequence[int], dropout: float,
               activation: str = "relu") -> list[nn.Module]:
    """``[Linear, activation, Dropout]`` blocks, one per entry of ``hidden``."""
    out: list[nn.Module] = []
    for h in hidden:
        block: list[nn.Module] = [nn.Linear(in_features, int(h)), _activation(activation)]
        if dropout > 0:
            block.append(nn.Dropout(dropout))
        out.append(nn.Sequential(*block))
        in_features = int(h)
    return out


class DenseInput(nn.Module):
    """Dense features -> (optionally standardised) -> MLP layers.

    Parameters
    ----------
    n_features
        Number of input columns ``d``.
    hidden
        Widths of the MLP layers applied here (empty: the features themselves).
    dropout
        Dropout after each layer.
    standardize
        Shift and scale each column by its training mean and standard deviation
        (:meth:`prepare` sets them from the training features; stored in the saved model).
    """

    def __init__(self, n_features: int, hidden: Sequence[int] = (), dropout: float = 0.0,
                 standardize: bool = True, activation: str = "relu") -> None:
        super().__init__()
        self.n_features = int(n_features)
        self.hidden = [int(h) for h in hidden]
        self.dropout = float(dropout)
        self.standardize = bool(standardize)
        self.activation = activation
        self.shift: torch.Tensor
        self.scale: torch.Tensor
        self.register_buffer("shift", torch.zeros(self.n_features))
        self.register_buffer("scale", torch.ones(self.n_features))
        self.layers = nn.Sequential(*mlp_layers(self.n_features, self.hidden, self.dropout,
                                                activation))
        self.out_features = self.hidden[-1] if self.hidden else self.n_features

    def config(self) -> dict[str, Any]:
        return {"n_features": self.n_features, "hidden": self.hidden, "dropout": self.dropout,
                "standardize": self.standardize, "activation": self.activation}

    def prepare(self, X: Any) -> None:
        """Set the standardisation from the training features (no labels involved)."""
        if self.standardize and isinstance(X, np.ndarray):
            mean = X.mean(axis=0, dtype=np.float64)
            std = X.std(axis=0, dtype=np.float64)
            self.shift.copy_(torch.from_numpy(mean.astype(np.float32)))
            self.scale.copy_(torch.from_numpy(np.where(std > 1e-8, std, 1.0).astype(np.float32)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[-1] != self.n_features:
            raise DataFormatError(f"the input has {x.shape[-1]} features; this DenseInput was "
                                  f"built for {self.n_features}")
        return self.layers((x.float() - self.shift) / self.scale)


class SparseInput(nn.Module):
    """A sparse-aware first layer: ``activation(X W + b)`` for sparse ``X`` (e.g. TF-IDF).

    Implemented with ``nn.EmbeddingBag(mode="sum")`` weighted by the stored values, so the cost
    is proportional to the number of non-zeros and the ``(n, V)`` matrix is never densified.
    Dense tensors are accepted too (``x @ W``).

    Parameters
    ----------
    n_features
        Vocabulary size ``V`` (columns of ``X``).
    out_features
        Width of the layer.
    activation
        ``"relu"``, ``"tanh"``, ``"gelu"`` or ``None`` (a linear layer: with no hidden layer
        after it and one head this is logistic regression).
    dropout
        Dropout on the output.
    """

    def __init__(self, n_features: int, out_features: int = 256,
                 activation: str | None = "relu", dropout: float = 0.0) -> None:
        super().__init__()
        self.n_features = int(n_features)
        self.out_features = int(out_features)
        self.activation = activation
        self.dropout = float(dropout)
        self.bag = nn.EmbeddingBag(self.n_features, self.out_features, mode="sum")
        self.bias = nn.Parameter(torch.zeros(self.out_features))
        self.act = nn.Identity() if activation is None else _activation(activation)
        self.drop = nn.Dropout(self.dropout) if self.dropout > 0 else nn.Identity()
        self.reset_parameters()

    def config(self) -> dict[str, Any]:
        return {"n_features": self.n_features, "out_features": self.out_features,
                "activation": self.activation, "dropout": self.dropout}

    def reset_parameters(self) -> None:
        # rows of TF-IDF are unit-norm with few non-zeros: weights of scale 1/sqrt(out) give
        # pre-activations of order 0.1-1 regardless of V (nn.Linear's 1/sqrt(V) would not)
        nn.init.normal_(self.bag.weight, std=1.0 / np.sqrt(self.out_features))
        nn.init.zeros_(self.bias)

    def forward(self, x: SparseRows | torch.Tensor) -> torch.Tensor:
        if isinstance(x, SparseRows):
            if x.indices.numel() and int(x.indices.max()) >= self.n_features:
                raise DataFormatError(f"the input has a column {int(x.indices.max())}; this "
                                      f"SparseInput was built for {self.n_features} columns")
            h = self.bag(x.indices, x.offsets, per_sample_weights=x.weights)
        else:
            h = x.float() @ self.bag.weight
        return self.drop(self.act(h + self.bias))


def init_embedding(weight: torch.Tensor, pretrained: torch.Tensor | None) -> None:
    """Fill an embedding table with ``pretrained`` vectors (or small random ones); row 0 is
    padding and stays zero."""
    with torch.no_grad():
        if pretrained is not None:
            weight.copy_(pretrained)
        else:
            nn.init.normal_(weight, std=0.1)
        weight[0].zero_()


class EmbeddingBagEncoder(nn.Module):
    """Token ids -> mean of their embeddings (a fast bag-of-words text encoder).

    Takes the dict batches of :func:`metal.end_model.text.encode_tokens` (key ``"tokens"``:
    ``(b, T)`` int64, ``0`` = padding) or a ``(b, T)`` tensor of ids.

    Parameters
    ----------
    vocab_size
        Number of token ids including the padding id 0.
    dim
        Embedding width (= ``out_features``).
    pretrained
        Optional ``(vocab_size, dim)`` array of initial embeddings (e.g. wordllama or gensim
        vectors), kept on :meth:`reset_parameters`.
    freeze
        Do not train the embeddings.
    """

    def __init__(self, vocab_size: int, dim: int = 100, pretrained: Any = None,
                 freeze: bool = False) -> None:
        super().__init__()
        self.vocab_size = int(vocab_size)
        self.out_features = int(dim)
        self.freeze = bool(freeze)
        self.bag = nn.EmbeddingBag(self.vocab_size, self.out_features, mode="mean",
                                   padding_idx=0)
        # kept outside the state dict: only needed to re-initialise before fitting
        self._pretrained: torch.Tensor | None = None
        if pretrained is not None:
            P = torch.as_tensor(np.asarray(pretrained, dtype=np.float32))
            if P.shape != (self.vocab_size, self.out_features):
                raise ConfigError(f"pretrained has shape {tuple(P.shape)}; expected "
                                  f"({self.vocab_size}, {self.out_features})")
            self._pretrained = P
        self.bag.weight.requires_grad_(not self.freeze)
        self.reset_parameters()

    def config(self) -> dict[str, Any]:
        # the embeddings themselves are in the state dict
        return {"vocab_size": self.vocab_size, "dim": self.out_features, "freeze": self.freeze}

    def reset_parameters(self) -> None:
        init_embedding(self.bag.weight, self._pretrained)

    def forward(self, x: Mapping[str, torch.Tensor] | torch.Tensor) -> torch.Tensor:
        ids = x["tokens"] if isinstance(x, Mapping) else x
        return self.bag(ids)


INPUT_MODULES: dict[str, type[nn.Module]] = {
    "DenseInput": DenseInput, "SparseInput": SparseInput,
    "EmbeddingBagEncoder": EmbeddingBagEncoder,
}


def register_input_module(cls: type[nn.Module]) -> type[nn.Module]:
    """Make a module class with ``config()`` rebuildable by ``load`` (usable as a decorator)."""
    INPUT_MODULES[cls.__name__] = cls
    return cls


def build_input_module(spec: Mapping[str, Any]) -> nn.Module:
    """Rebuild a registered input module from ``{"name": class name, "config": {...}}``."""
    cls = INPUT_MODULES.get(spec["name"])
    if cls is None:
        raise ConfigError(f"input module {spec['name']!r} is not registered; import the module "
                          "that defines it, or pass input_module= to load()")
    from_config = getattr(cls, "from_config", None)
    return from_config(**spec["config"]) if callable(from_config) else cls(**spec["config"])


def default_input_module(X: Any, width: int = 256) -> nn.Module:
    """The input module used when none is given: by the type of the prepared input."""
    if sp.issparse(X):
        return SparseInput(X.shape[1], width)
    if isinstance(X, np.ndarray) and X.ndim == 2 and X.dtype.kind == "f":
        return DenseInput(X.shape[1])
    if isinstance(X, Mapping) and "tokens" in X:
        return EmbeddingBagEncoder(int(np.max(X["tokens"])) + 1, 100)
    raise ConfigError("no default input module for this X; pass input_module= (any "
                      "torch.nn.Module mapping a batch to a (b, d) tensor)")
