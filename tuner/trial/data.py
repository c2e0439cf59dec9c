"""Corpora -> token memmaps, once per sweep, cached by content hash; trials memory-map the result.

A corpus is a list of sources: ``builtin:python-stdlib`` (the running interpreter's standard-library ``.py``
files: ~31 MB of real text, no download), ``.txt`` files (one document each), ``.jsonl`` files (one document per
line, its ``data.text_field``) and directories of those. Documents are read in sorted order and joined with the
tokenizer's EOS token. The train/val split is deterministic: the token stream is cut into blocks and an evenly
spread ``val_fraction`` of them is held out.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import sysconfig
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

FORMAT_VERSION = 1
SPLIT_BLOCK = 8192  # tokens per block of the train/val split


class DataError(ValueError):
    """A corpus problem the user can fix; ``key`` is the spec key it concerns."""

    def __init__(self, key: str, message: str):
        self.key = key
        super().__init__(message)


def stdlib_files() -> list[Path]:
    root = Path(sysconfig.get_paths()["stdlib"])
    files = [p for p in root.rglob("*.py") if "site-packages" not in p.parts and "dist-packages" not in p.parts]
    return sorted(files, key=lambda p: p.relative_to(root).as_posix())


def iter_documents(sources: list[str], text_field: str = "text") -> Iterator[tuple[str, str]]:
    """(name, text) for every document, in a deterministic order."""
    for source in sources:
        if source == "builtin:python-stdlib":
            for p in stdlib_files():
                yield f"stdlib/{p.name}", p.read_text(encoding="utf-8", errors="replace")
            continue
        path = Path(source)
        files = sorted(f for f in path.rglob("*") if f.suffix in (".txt", ".jsonl")) if path.is_dir() else [path]
        for f in files:
            if f.suffix == ".jsonl":
                yield from _jsonl_documents(f, text_field)
            else:
                yield str(f), f.read_text(encoding="utf-8", errors="replace")


def _jsonl_documents(path: Path, text_field: str) -> Iterator[tuple[str, str]]:
    with path.open(encoding="utf-8") as fh:
        for lineno, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                text = json.loads(line)[text_field]
            except (json.JSONDecodeError, KeyError, TypeError):
                raise DataError("data.text_field", f"{path}:{lineno} is not a JSON object with a "
                                                   f"{text_field!r} string") from None
            if not isinstance(text, str):
                raise DataError("data.text_field", f"{path}:{lineno}: {text_field!r} is not a string")
            yield f"{path}:{lineno}", text


def tokenizer_fingerprint(tokenizer: Any) -> str:
    vocab = sorted(tokenizer.get_vocab().items())
    blob = json.dumps([type(tokenizer).__name__, vocab, tokenizer.eos_token_id], default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def encode(tokenizer: Any, texts: list[str]) -> list[np.ndarray]:
    """Token ids of each text, without special tokens. Byte-level ByT5 is ids = bytes + offset, done in numpy."""
    if type(tokenizer).__name__ == "ByT5Tokenizer":
        offset = tokenizer.offset
        return [np.frombuffer(t.encode("utf-8"), dtype=np.uint8).astype(np.int64) + offset for t in texts]
    out: list[np.ndarray] = []
    for i in range(0, len(texts), 256):
        ids = tokenizer(texts[i:i + 256], add_special_tokens=False)["input_ids"]
        out += [np.asarray(x, dtype=np.int64) for x in ids]
    return out


def split_blocks(n_tokens: int, val_fraction: float) -> tuple[int, np.ndarray]:
    """Block size and a boolean mask of the blocks held out for validation: round(val_fraction * blocks) of them,
    at least one, spread evenly (deterministic)."""
    block = SPLIT_BLOCK if n_tokens >= 40 * SPLIT_BLOCK else max(64, n_tokens // 40)
    n_blocks = max(1, -(-n_tokens // block))
    n_val = min(n_blocks - 1, max(1, round(val_fraction * n_blocks)))
    is_val = np.zeros(n_blocks, dtype=bool)
    is_val[((np.arange(n_val) + 0.5) * n_blocks / max(n_val, 1)).astype(int)] = n_val > 0
    return block, is_val


@dataclass(frozen=True)
class Prepared:
    path: Path
    meta: dict[str, Any]


def prepare(sources: list[str], tokenizer: Any, cache_root: Path, *, val_fraction: float,
            text_field: str = "text") -> Prepared:
    """Tokenize the corpus into ``train.bin``/``val.bin`` under ``cache_root/<hash>``, unless already there."""
    docs = list(iter_documents(sources, text_field))
    if not docs:
        raise DataError("data.source", f"no documents found in {', '.join(sources)}")
    h = hashlib.sha256()
    h.update(json.dumps([FORMAT_VERSION, tokenizer_fingerprint(tokenizer), val_fraction]).encode())
    for name, text in docs:
        h.update(name.encode() + b"\0" + text.encode("utf-8", errors="replace") + b"\0")
    out = cache_root / h.hexdigest()[:24]
    if (out / "meta.json").is_file():
        return Prepared(out, json.loads((out / "meta.json").read_text()))

    eos = tokenizer.eos_token_id
    pieces: list[np.ndarray] = []
    for ids in encode(tokenizer, [t for _, t in docs]):
        pieces.append(ids)
        if eos is not None:
            pieces.append(np.array([eos], dtype=np.int64))
    tokens = np.concatenate(pieces)
    vocab = len(tokenizer)
    dtype = np.uint16 if vocab <= np.iinfo(np.uint16).max + 1 else np.uint32
    block, is_val = split_blocks(len(tokens), val_fraction)
    blocks = np.array_split(tokens, np.arange(block, len(tokens), block))
    train = np.concatenate([b for b, v in zip(blocks, is_val, strict=True) if not v] or [tokens[:0]])
    val = np.concatenate([b for b, v in zip(blocks, is_val, strict=True) if v] or [tokens[:0]])

    cache_root.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=cache_root, prefix=".tmp-"))
    try:
        train.astype(dtype).tofile(tmp / "train.bin")
        val.astype(dtype).tofile(tmp / "val.bin")
        meta = {"format": FORMAT_VERSION, "dtype": np.dtype(dtype).name, "vocab_size": vocab,
                "train_tokens": int(len(train)), "val_tokens": int(len(val)), "documents": len(docs),
                "sources": sources, "tokenizer": type(tokenizer).__name__, "eos_token_id": eos}
        (tmp / "meta.json").write_text(json.dumps(meta, indent=1))
        try:
            os.replace(tmp, out)
        except OSError:  # another driver prepared the same corpus first
            shutil.rmtree(tmp, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return Prepared(out, json.loads((out / "meta.json").read_text()))


class TokenData:
    """A prepared corpus, memory-mapped. Batches are a pure function of (seed, step, micro-step): a restored
    trial draws exactly the batches it would have drawn."""

    def __init__(self, path: str | Path):
        path = Path(path)
        self.meta = json.loads((path / "meta.json").read_text())
        dtype = np.dtype(self.meta["dtype"])
        self.train = np.memmap(path / "train.bin", dtype=dtype, mode="r")
        self.val = np.memmap(path / "val.bin", dtype=dtype, mode="r")

    def batch(self, seed: int, step: int, micro: int, batch_size: int, seq_len: int) -> np.ndarray:
        rng = np.random.default_rng([seed, step, micro])
        starts = rng.integers(0, len(self.train) - seq_len, size=batch_size)
        return self.train[starts[:, None] + np.arange(seq_len)].astype(np.int64)

    def val_windows(self, n_tokens: int, seq_len: int) -> np.ndarray:
        """A fixed validation subset: ``n_tokens // seq_len`` windows spread evenly over the val split."""
        n = max(1, n_tokens // seq_len)
        starts = np.linspace(0, len(self.val) - seq_len, n).astype(np.int64)
        return self.val[starts[:, None] + np.arange(seq_len)].astype(np.int64)

    def check(self, seq_len: int) -> None:
        if len(self.train) <= seq_len:
            raise DataError("data.seq_len", f"the corpus is too small for seq_len {seq_len}: "
                                            f"{len(self.train)} train tokens")
        if len(self.val) < seq_len:
            raise DataError("data.val_fraction", f"the validation split ({len(self.val)} tokens) is shorter than "
                                                 f"seq_len {seq_len}: raise data.val_fraction or add data")
