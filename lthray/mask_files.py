"""Each level's mask as a small bit-packed Parquet side file, so analysis reads tickets without the
trials' checkpoints: RESULTS/_masks/RUN_ID__LNNN.parquet, one row per prunable layer, published exactly
once like the result rows (`storage.publish_table`).

A 1-bit-per-weight `np.packbits` column keeps a level of the 60k-weight convnet at ~8 kB (ResNet-20's
270k weights: ~34 kB), against ~240 kB for the same mask as float32 in a checkpoint.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa

from lthray import storage
from lthray.masks import Mask
from lthray.results import ResultsError, read_tagged, row_name
from lthray.storage import publish_table

FOLDER = "_masks"  # "_": pyarrow.dataset and pandas.read_parquet skip it when reading the rows
SCHEMA = pa.schema([
    pa.field("run_id", pa.string(), nullable=False),
    pa.field("level", pa.int64(), nullable=False),
    pa.field("layer", pa.string(), nullable=False),  # parameter name, in model order
    pa.field("shape", pa.list_(pa.int64()), nullable=False),
    pa.field("kept", pa.int64(), nullable=False),  # weights kept in this layer (a check on the bits)
    pa.field("bits", pa.binary(), nullable=False),  # np.packbits of the flattened bool mask (C order)
], metadata={"lthray.mask_version": "1"})


def folder(results_dir: str | Path) -> str:
    return f"{str(results_dir).rstrip('/')}/{FOLDER}"


def to_table(run_id: str, level: int, mask: Mask) -> pa.Table:
    rows = []
    for name, m in mask.items():
        flat = m.detach().cpu().numpy().astype(bool).ravel()
        rows.append({"run_id": run_id, "level": level, "layer": name, "shape": list(m.shape),
                     "kept": int(flat.sum()), "bits": np.packbits(flat).tobytes()})
    return pa.Table.from_pylist(rows, schema=SCHEMA)


def write(results_dir: str | Path, run_id: str, level: int, mask: Mask) -> bool:
    """Publish one level's mask; False (writing nothing) if it exists."""
    return publish_table(folder(results_dir), row_name(run_id, level), to_table(run_id, level, mask))


def path_of(results_dir: str | Path, run_id: str, level: int) -> str:
    return f"{folder(results_dir)}/{row_name(run_id, level)}"


def problem(results_dir: str | Path, run_id: str, level: int) -> str | None:
    """What is wrong with one level's mask file ('missing', or why it cannot be read), or None."""
    path = path_of(results_dir, run_id, level)
    if not storage.exists(path):
        return "is missing"
    try:
        t, _ = read_tagged(path, storage.resolve(results_dir)[0], "lthray.mask_version", "mask file")
        for r in t.to_pylist():
            unpack(r)
    except ResultsError as e:
        return f"is unreadable ({e})"
    return None


def unpack(row: dict) -> np.ndarray:
    """One layer's bool mask, checked against its stored count of kept weights."""
    n = int(np.prod(row["shape"]))
    bits = np.unpackbits(np.frombuffer(row["bits"], dtype=np.uint8), count=n).astype(bool)
    if int(bits.sum()) != row["kept"]:
        raise ResultsError(f"mask {row['run_id']} level {row['level']} layer {row['layer']}: "
                           f"{int(bits.sum())} bits set, file says {row['kept']}")
    return bits.reshape(row["shape"])


def read(results_dir: str | Path) -> dict[tuple[str, int], dict[str, np.ndarray]]:
    """(run_id, level) -> {layer: bool array} for every mask file under RESULTS/_masks (none: {})."""
    fs, _ = storage.resolve(results_dir)
    out: dict[tuple[str, int], dict[str, np.ndarray]] = {}
    for p in storage.list_files(folder(results_dir), ".parquet"):
        t, _ = read_tagged(p, fs, "lthray.mask_version", "mask file")
        for r in t.to_pylist():
            out.setdefault((r["run_id"], r["level"]), {})[r["layer"]] = unpack(r)
    return out
