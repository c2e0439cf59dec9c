"""Corpora: tokenized once, cached by content hash, split deterministically, memory-mapped by trials."""

from __future__ import annotations

import json

import numpy as np
import pytest
from transformers import ByT5Tokenizer

from tuner.trial.data import DataError, TokenData, encode, iter_documents, prepare, split_blocks, stdlib_files


@pytest.fixture(scope="module")
def tok():
    return ByT5Tokenizer()


def test_byt5_fast_path_matches_the_tokenizer(tok):
    texts = ["def f(x):\n    return x  # héllo ✓", "", "tab\tand ünïcödé 日本語"]
    for text, ids in zip(texts, encode(tok, texts), strict=True):
        assert ids.tolist() == tok(text, add_special_tokens=False)["input_ids"]


def test_stdlib_corpus_is_sorted_real_text():
    files = stdlib_files()
    assert len(files) > 500 and sum(f.stat().st_size for f in files) > 10_000_000
    assert not any("site-packages" in f.parts for f in files)
    docs = iter_documents(["builtin:python-stdlib"])
    first = [next(docs)[0] for _ in range(3)]
    assert first == [f"stdlib/{f.name}" for f in files[:3]]


def test_prepare_is_cached_by_content(tmp_path, tok, corpus):
    a = prepare([str(corpus)], tok, tmp_path / "cache", val_fraction=0.1)
    b = prepare([str(corpus)], tok, tmp_path / "cache", val_fraction=0.1)
    assert a.path == b.path
    assert a.meta["train_tokens"] + a.meta["val_tokens"] == corpus.stat().st_size + 1  # bytes + one EOS
    other = tmp_path / "other.txt"
    other.write_text(corpus.read_text() + "x")
    assert prepare([str(other)], tok, tmp_path / "cache", val_fraction=0.1).path != a.path


def test_split_is_deterministic_and_spread():
    block, is_val = split_blocks(1_000_000, 0.05)
    assert block == 8192 and is_val.sum() == round(0.05 * len(is_val))
    gaps = np.diff(np.flatnonzero(is_val))
    assert gaps.max() - gaps.min() <= 1 and gaps.min() >= 19  # evenly spread, not one tail chunk
    assert (split_blocks(1_000_000, 0.05)[1] == is_val).all()
    for n, f in ((400_000, 0.02), (1_000_000, 0.005), (3000, 0.01)):  # small fractions still hold out a block
        _, mask = split_blocks(n, f)
        assert mask.sum() >= 1 and (~mask).sum() >= 1


def test_jsonl_and_directories(tmp_path, tok):
    d = tmp_path / "corpus"
    d.mkdir()
    (d / "b.jsonl").write_text(json.dumps({"text": "second doc"}) + "\n\n" + json.dumps({"text": "third"}) + "\n")
    (d / "a.txt").write_text("first doc")
    (d / "ignored.csv").write_text("x,y")
    assert [t for _, t in iter_documents([str(d)])] == ["first doc", "second doc", "third"]
    (d / "c.jsonl").write_text('{"body": "no text field"}\n')
    with pytest.raises(DataError) as e:
        list(iter_documents([str(d)]))
    assert e.value.key == "data.text_field"


def test_batches_are_a_pure_function_of_the_step(tmp_path, tok, corpus):
    data = TokenData(prepare([str(corpus)], tok, tmp_path, val_fraction=0.1).path)
    a = data.batch(seed=0, step=7, micro=0, batch_size=4, seq_len=16)
    assert a.shape == (4, 16) and a.dtype == np.int64
    assert (a == data.batch(0, 7, 0, 4, 16)).all() and not (a == data.batch(0, 8, 0, 4, 16)).all()
    v = data.val_windows(n_tokens=160, seq_len=16)
    assert v.shape == (10, 16) and (v == data.val_windows(160, 16)).all()
    with pytest.raises(DataError):
        data.check(seq_len=10**7)


def test_a_node_without_the_drivers_disk_tokenizes_the_same_corpus_into_the_same_path(tmp_path, corpus, tiny_raw):
    """A bucket-backed cluster's nodes share no disk: a trial whose node lacks the prepared corpus makes it there,
    under the same content-hash name the driver's copy has."""
    import shutil

    from tuner.spec import TrialSpec, validate
    from tuner.spec.fidelity import fidelity
    from tuner.sweep.tuner import prepare_data
    from tuner.trial.entry import TrialConfig, data_on_this_node

    spec = validate(tiny_raw(storage=str(tmp_path / "sweeps")))
    on_driver = prepare_data(spec)
    meta = (on_driver / "meta.json").read_text()
    shutil.rmtree(on_driver.parent)  # this node has none of it
    trial = TrialConfig(TrialSpec.model_validate({k: getattr(spec, k) for k in TrialSpec.model_fields}),
                        fidelity(spec), str(on_driver), "")
    assert data_on_this_node(trial) == str(on_driver)
    assert (on_driver / "meta.json").read_text() == meta
