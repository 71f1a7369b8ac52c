"""Searching stored vectors that are smaller than the model's (notebook 10): int8 buckets and packed sign bits,
searched coarsely (integer dot products, Hamming distances) and, optionally, rescored with the float query.

Notebook 10 builds the index by hand (`quantized_index` there) and checks it against sentence-transformers'
`quantize_embeddings`; this module is the search over it, which no library here provides. An index is a dict:
`ranges` (per dimension, the smallest and largest calibration value), `steps` (the bucket width), `int8` (one
bucket, -128..127, per number) and `bits` (the signs, packed 8 to a byte)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch


PRECISIONS = ("int8", "binary")
FLOAT_COPY = "int8 as float"  # the key under which coarse_scores keeps its float copy of an index's int8 buckets


def _check_precision(precision: str) -> None:
    if precision not in PRECISIONS:
        raise ValueError(f"precision={precision!r}: the stored vectors are 'int8' or 'binary'")


def int8_values(index: Mapping[str, Any], rows: np.ndarray) -> np.ndarray:
    """The numbers that int8 buckets stand for (each bucket's lower edge)."""
    return (rows.astype(np.float32) + 128) * index["steps"] + index["ranges"][0]


def quantize_query(index: Mapping[str, Any], queries: np.ndarray, precision: str) -> np.ndarray:
    """Queries stored as the index stores documents: int8 buckets of the index's calibration, or packed bits."""
    _check_precision(precision)
    if precision == "int8":
        return (np.clip(np.floor((queries - index["ranges"][0]) / index["steps"]), 0, 255) - 128).astype(np.int8)
    return np.packbits(queries > 0, axis=-1)


def coarse_scores(index: dict[str, Any], queries: np.ndarray, precision: str) -> np.ndarray:
    """Higher is closer: the dot product of int8 buckets, or minus the Hamming distance of the bits (the number of
    bits in which they differ: `np.bitwise_count` of their XOR). The first int8 search keeps a float copy of the
    buckets in `index` (under FLOAT_COPY), so the searches after it do not convert them again."""
    _check_precision(precision)
    if precision == "int8":
        # float32 holds these integer sums exactly (< 2**24); torch computes them (notebook 09, section 4, says why)
        if (products := index.get(FLOAT_COPY)) is None:
            products = index[FLOAT_COPY] = torch.from_numpy(index["int8"].astype(np.float32))
        return (torch.from_numpy(quantize_query(index, queries, "int8").astype(np.float32)) @ products.T).numpy()
    bits = quantize_query(index, queries, "binary")
    return -np.bitwise_count(bits[:, None, :] ^ index["bits"][None, :, :]).sum(axis=2, dtype=np.int32)


def rescore(index: Mapping[str, Any], query: np.ndarray, candidates: np.ndarray, precision: str) -> np.ndarray:
    """The float query's dot product with the candidates' stored vectors, turned back into numbers (int8 buckets to
    their values, bits to ±1)."""
    _check_precision(precision)
    if precision == "int8":
        stored = int8_values(index, index["int8"][candidates])
    else:
        stored = np.unpackbits(index["bits"][candidates], axis=1)[:, : len(query)] * 2.0 - 1
    return stored @ query


def quantized_search(
    index: dict[str, Any],
    queries: np.ndarray,
    precision: str,
    rescored: bool,
    rescore_multiplier: int,
    k: int = 10,
    chunk: int = 64,
) -> list[list[tuple[int, float]]]:
    """For each query, [(document position, score)] best first: the coarse search keeps `k` candidates, or
    `k * rescore_multiplier` that the float query then orders again (`rescored`)."""
    keep = k * rescore_multiplier if rescored else k
    results = []
    for start in range(0, len(queries), chunk):
        block = queries[start : start + chunk]
        coarse = coarse_scores(index, block, precision)
        top = np.argsort(-coarse, axis=1, kind="stable")[:, :keep]
        for query, candidates, row in zip(block, top, coarse):
            if rescored:
                fine = rescore(index, query, candidates, precision)
                results.append([(int(candidates[i]), float(fine[i])) for i in np.argsort(-fine, kind="stable")[:k]])
            else:
                results.append([(int(i), float(row[i])) for i in candidates])
    return results


def as_run(
    results: Sequence[Sequence[tuple[int, float]]], query_ids: Sequence[str], corpus_ids: Sequence[str]
) -> dict[str, dict[str, float]]:
    """`quantized_search`'s results as a run ({query id: {document id: score}}), for the trec_eval metrics."""
    return {query_id: {corpus_ids[i]: score for i, score in found} for query_id, found in zip(query_ids, results)}
