"""Scale-out: streaming statistics, Dask statistics and data-parallel (DDP) training.

Streaming lives in :mod:`metal.distributed.streaming` (no extra dependency). The Dask engine
is :mod:`metal.distributed.dask` and DDP training :mod:`metal.distributed.ddp`; import those
modules explicitly, so their dependencies are paid only by those who use them.
"""

from metal.distributed.streaming import (
    BlockPosterior,
    StatisticsAccumulator,
    StreamingLabelModel,
    chunk_statistics,
    fit_stream,
    iter_chunks,
    predict_proba_stream,
    read_npy_chunks,
    stream_statistics,
)

__all__ = [
    "BlockPosterior",
    "StatisticsAccumulator",
    "StreamingLabelModel",
    "chunk_statistics",
    "fit_stream",
    "iter_chunks",
    "predict_proba_stream",
    "read_npy_chunks",
    "stream_statistics",
]
