import numpy as np
import pytest

from helpers import serving

TEXTS = [
    "Botulism food poisoning",
    "Type 2 diabetes mellitus without complications",
    "High blood pressure",
    "Essential (primary) hypertension",
    "Fracture of the left femur, initial encounter for closed fracture",
    "Asthma",
    "Pain in the lower back that has lasted for several weeks after lifting a heavy box",
]


@pytest.fixture(scope="module")
def exported(base_model, tmp_path_factory):
    folder = serving.export_onnx(base_model, tmp_path_factory.mktemp("onnx"))
    serving.quantize_int8(folder)
    return folder


def cosines(first, second):
    return (first * second).sum(axis=1) / np.linalg.norm(first, axis=1) / np.linalg.norm(second, axis=1)


def test_the_fp32_export_reloads_and_encodes_like_pytorch(base_model, exported):
    reference = base_model.encode(TEXTS, normalize_embeddings=True)
    onnx = serving.OnnxEncoder(exported).encode(TEXTS, batch_size=3)  # several batches, out of length order
    assert onnx.shape == reference.shape
    assert cosines(onnx, reference).min() > 0.9999
    assert np.allclose(np.linalg.norm(onnx, axis=1), 1, atol=1e-5)  # the model's Normalize module, applied


def test_the_int8_model_computes_in_integers_is_smaller_and_stays_close(base_model, exported):
    int8_path = exported / serving.INT8_FILE
    assert serving.integer_operators(int8_path) > 0 and serving.integer_operators(exported / serving.ONNX_FILE) == 0
    assert int8_path.stat().st_size < 0.4 * (exported / serving.ONNX_FILE).stat().st_size
    int8 = serving.OnnxEncoder(exported, serving.INT8_FILE, require_int8=True).encode(TEXTS)
    reference = base_model.encode(TEXTS, normalize_embeddings=True)
    assert cosines(int8, reference).min() > 0.9
    # what matters for retrieval: each text is still nearest to itself among the others
    assert (np.argmax(int8 @ reference.T, axis=1) == np.arange(len(TEXTS))).all()


def test_an_fp32_file_passed_as_int8_is_refused(exported):
    with pytest.raises(ValueError, match="not an int8 model"):
        serving.OnnxEncoder(exported, serving.ONNX_FILE, require_int8=True)


def test_bad_inputs_are_named(base_model, exported, tmp_path):
    with pytest.raises(TypeError, match="list of strings"):
        serving.OnnxEncoder(exported).encode("one string")
    with pytest.raises(FileNotFoundError, match="export_onnx"):
        serving.OnnxEncoder(tmp_path)
    with pytest.raises(FileNotFoundError, match="run export_onnx first"):
        serving.quantize_int8(tmp_path)


def test_only_models_the_encoder_can_pool_are_exported(base_model, tmp_path):
    import copy

    changed = copy.deepcopy(base_model)
    changed[1].pooling_mode = "weightedmean"
    with pytest.raises(ValueError, match="pooling 'weightedmean' is not supported"):
        serving.export_onnx(changed, tmp_path)


def test_alternate_timing_gives_every_encoder_one_rate_per_round_and_latency_one_time_per_query():
    calls = []
    encoders = {"a": lambda texts: calls.append(("a", len(texts))), "b": lambda texts: calls.append(("b", len(texts)))}
    rates = serving.docs_per_second_alternately(encoders, ["x"] * 20, rounds=2)
    assert {name: len(values) for name, values in rates.items()} == {"a": 2, "b": 2}
    assert all(value > 0 for values in rates.values() for value in values)
    assert calls[2:] == [("a", 20), ("b", 20), ("a", 20), ("b", 20)]  # after the warm-up, they take turns
    timings = serving.latencies_ms(lambda query: sum(range(1000)), ["q"] * 7, warmup=2)
    assert timings.shape == (7,) and (timings > 0).all()
    with pytest.raises(ValueError, match="at least one"):
        serving.docs_per_second_alternately(encoders, [], rounds=1)


def test_latencies_in_turns_takes_turns_block_by_block_and_rotates_the_order():
    calls = []
    searches = {name: (lambda query, name=name: calls.append((name, query))) for name in ("a", "b", "c")}
    timings = serving.latencies_in_turns(searches, ["q1", "q2", "q3", "q4"], block=2)
    assert {name: len(values) for name, values in timings.items()} == {"a": 4, "b": 4, "c": 4}
    first_block, second_block = calls[:9], calls[9:]  # per search: one untimed call, then the block's two queries
    assert [name for name, _ in first_block[::3]] == ["a", "b", "c"] and [name for name, _ in second_block[::3]] == [
        "b",
        "c",
        "a",
    ]
    assert [query for _, query in first_block[:3]] == ["q1", "q1", "q2"] and {query for _, query in second_block} == {
        "q3",
        "q4",
    }
    with pytest.raises(ValueError, match="at least one search"):
        serving.latencies_in_turns({}, ["q"])


def test_a_variant_row_compares_with_the_baseline_query_by_query():
    baseline = np.array([0.5, 0.6, 0.7, 0.8])
    same = serving.variant_row(
        "pytorch fp32", 200.0, np.zeros((10, 4), np.float32), baseline, baseline, [5, 6, 7], 200, 0
    )
    assert same["ci"] == [0.0, 0.0] and same["relative_change"] == 0 and same["index_mb"] == pytest.approx(160 / 1e6)
    lower = serving.variant_row(
        "onnx int8", 400.0, np.zeros((10, 4), np.int8), baseline - 0.1, baseline, [2, 3, 9], 200, 0
    )
    assert lower["ci"][1] < 0 and lower["relative_change"] == pytest.approx(0.55 / 0.65 - 1)
    assert lower["docs_per_s"] == 400.0 and lower["p50_ms"] == 3.0 and 3.0 < lower["p95_ms"] <= 9.0
    table = serving.variant_table({"pytorch fp32": same, "onnx int8": lower})
    assert "[-0.1000, -0.1000]" in str(table) and "object at 0x" not in repr(table)


def test_the_float_search_truncates_the_query_like_the_stored_vectors():
    rng = np.random.default_rng(1)
    docs = rng.normal(size=(12, 8)).astype(np.float32)
    docs /= np.linalg.norm(docs, axis=1, keepdims=True)
    encoder = lambda texts: np.repeat(docs[5:6], len(texts), axis=0)  # noqa: E731 (every text encodes as document 5)
    top = serving.float_search(encoder, docs)("q")
    assert len(top) == 10 and top[0].item() == 5
    short = docs[:, :3] / np.linalg.norm(docs[:, :3], axis=1, keepdims=True)  # what a 3-dimension index stores
    expected = np.argsort(-(short @ short[5]), kind="stable")[:10]
    assert sorted(serving.float_search(encoder, short, dims=3)("q").tolist()) == sorted(expected.tolist())


def test_notebook_09s_encoders_load_by_name(base_model, exported, tmp_path):
    served = {"onnx_dir": str(exported), "static_dir": str(tmp_path / "missing")}
    baseline = lambda texts: base_model.encode(texts, normalize_embeddings=True)  # noqa: E731
    assert serving.load_encoder("pytorch fp32", served, baseline, 8) is baseline
    int8 = serving.load_encoder("onnx int8", served, baseline, 8)(TEXTS[:3])
    assert cosines(int8, baseline(TEXTS[:3])).min() > 0.98
    fp32 = serving.load_encoder("onnx fp32", served, baseline, 8)(TEXTS[:3])
    assert cosines(fp32, baseline(TEXTS[:3])).min() > 0.9999
    with pytest.raises(ValueError, match="unknown encoder 'gguf'"):
        serving.load_encoder("gguf", served, baseline, 8)
    with pytest.raises(FileNotFoundError, match="notebook 09's static model is not there"):
        serving.load_encoder("static", served, baseline, 8)
