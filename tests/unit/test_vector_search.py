import numpy as np
import pytest
from sentence_transformers.util.quantization import quantize_embeddings

from helpers import vector_search as V


def index_of(documents):
    """The index notebook 10 builds by hand: int8 buckets calibrated on the documents, and their packed signs."""
    ranges = np.vstack([documents.min(axis=0), documents.max(axis=0)])
    steps = (ranges[1] - ranges[0]) / 255
    int8 = (np.clip(np.floor((documents - ranges[0]) / steps), 0, 255) - 128).astype(np.int8)
    return {"ranges": ranges, "steps": steps, "int8": int8, "bits": np.packbits(documents > 0, axis=1)}


@pytest.fixture(scope="module")
def documents():
    vectors = np.random.default_rng(0).normal(size=(200, 16)).astype(np.float32)
    return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


def test_queries_are_quantized_as_the_library_quantizes_documents(documents):
    index = index_of(documents)
    assert np.array_equal(index["int8"], quantize_embeddings(documents, "int8", calibration_embeddings=documents))
    assert np.array_equal(V.quantize_query(index, documents, "int8"), index["int8"])
    assert np.array_equal(V.quantize_query(index, documents, "binary"), quantize_embeddings(documents, "ubinary"))
    values = V.int8_values(index, index["int8"])
    assert np.abs(values - documents).max() <= index["steps"].max() + 1e-6  # each bucket's lower edge, within one step


def test_coarse_scores_are_integer_products_and_hamming_distances(documents):
    index = index_of(documents)
    queries = documents[:3]
    int8 = V.coarse_scores(dict(index), queries, "int8")
    expected = V.quantize_query(index, queries, "int8").astype(np.int64) @ index["int8"].astype(np.int64).T
    assert np.array_equal(int8, expected)
    binary = V.coarse_scores(index, queries, "binary")
    signs_q, signs_d = queries > 0, documents > 0
    assert np.array_equal(-binary, (signs_q[:, None, :] != signs_d[None, :, :]).sum(axis=2))
    assert (binary[np.arange(3), np.arange(3)] == 0).all()  # a document is at distance 0 from itself


def test_rescoring_finds_each_document_from_itself_and_keeps_k(documents):
    index = index_of(documents)
    for precision in ("int8", "binary"):
        for rescored in (False, True):
            found = V.quantized_search(
                dict(index), documents[:20], precision, rescored, rescore_multiplier=4, k=5, chunk=7
            )
            assert len(found) == 20 and all(len(hits) == 5 for hits in found)
            if rescored:  # the float query against the stored numbers: its own document first
                assert [hits[0][0] for hits in found] == list(range(20)), precision
            assert all(hits == sorted(hits, key=lambda hit: -hit[1]) for hits in found)
    rescores = V.rescore(index, documents[0], np.array([0, 1, 2]), "binary")
    assert rescores[0] == pytest.approx(np.abs(documents[0]).sum(), rel=1e-5)  # its own signs: the sum of |x|


def test_a_search_becomes_a_run_by_ids():
    run = V.as_run([[(1, 0.9), (0, 0.5)], [(2, 0.7)]], ["q1", "q2"], ["d0", "d1", "d2"])
    assert run == {"q1": {"d1": 0.9, "d0": 0.5}, "q2": {"d2": 0.7}}


def test_the_int8_float_copy_is_made_once_and_unknown_precisions_are_refused(documents):
    index = index_of(documents)
    V.coarse_scores(index, documents[:2], "int8")
    copy = index[V.FLOAT_COPY]
    V.coarse_scores(index, documents[2:4], "int8")
    assert index[V.FLOAT_COPY] is copy  # reused, not converted again for every query
    for call in (
        lambda: V.coarse_scores(index, documents[:1], "fp8"),
        lambda: V.quantize_query(index, documents, "int4"),
    ):
        with pytest.raises(ValueError, match="'int8' or 'binary'"):
            call()
