"""One declared pyarrow schema for every result row, written as one Parquet file per (run_id, level).

Files are written to a hidden temp name (which pyarrow.dataset, pandas and duckdb skip) and published
with a hard link, which fails if the target exists: a level's row appears atomically, exactly once,
even if two processes finish the same level. Readers need nothing but pyarrow/pandas/duckdb.
"""

from __future__ import annotations

import datetime as dt
import math
import os
import subprocess
import time
import uuid
from functools import lru_cache
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq

SCHEMA_VERSION = 2

_F, _I, _S = pa.float64(), pa.int64(), pa.string()
SCHEMA = pa.schema(
    [
        pa.field("schema_version", pa.int16(), nullable=False),
        pa.field("sweep", _S, nullable=False),
        pa.field("run_id", _S, nullable=False),
        pa.field("trial_id", _S, nullable=False),
        pa.field("method", _S, nullable=False),
        pa.field("scope", _S, nullable=False),
        pa.field("model", _S, nullable=False),
        pa.field("dataset", _S, nullable=False),
        pa.field("rewind", _S, nullable=False),
        pa.field("rewind_step", _I, nullable=False),  # iterations
        pa.field("guidance_weight", _F, nullable=False),
        pa.field("lambda_fid", _F, nullable=False),
        pa.field("seed", _I, nullable=False),
        pa.field("level", _I, nullable=False),
        pa.field("density", _F, nullable=False),  # measured from the mask: fraction of prunable weights kept
        pa.field("status", _S, nullable=False),  # ok | diverged
        pa.field("test_acc", _F),
        pa.field("test_loss", _F),
        pa.field("cam_spearman", _F),  # vs the dense model's maps, mean over the probe set
        pa.field("cam_iou", _F),  # top-k% IoU vs the dense model's maps
        pa.field("cam_faithfulness", _F),  # the model's own maps (ROAD combined or confidence drop)
        pa.field("concept_bank", _S, nullable=False),  # open_clip model/tag ('/random': pipeline check only)
        pa.field("pcbm_acc", _F),  # test accuracy of the post-hoc concept bottleneck on this backbone
        pa.field("concept_topk_overlap", _F),  # mean over classes of |top-k concepts & dense's| / k
        pa.field("concept_weight_spearman", _F),  # Spearman of concept->class weights vs dense's
        pa.field("top_concepts", pa.list_(_S)),  # per class: "CLASS: concept | concept | ..."
        pa.field("probe_cams", pa.list_(pa.float32())),  # Grad-CAM maps of the first GALLERY probe images
        pa.field("train_steps", _I, nullable=False),
        pa.field("train_seconds", _F, nullable=False),
        pa.field("explain_seconds", _F, nullable=False),
        pa.field("git_sha", _S, nullable=False),
        pa.field("config_json", _S, nullable=False),
        pa.field("created_at", pa.timestamp("us", tz="UTC"), nullable=False),
    ],
    metadata={"lthray.schema_version": str(SCHEMA_VERSION)},
)
STATUSES = ("ok", "diverged")
GALLERY = 4  # probe images whose maps every row keeps (flattened N x H x W), for the analysis gallery


class SchemaError(ValueError):
    """A row does not match SCHEMA (missing/extra column, wrong type, null where not allowed)."""


class ResultsError(RuntimeError):
    """A results directory holds something that is not a readable lthray results file."""


def _check_row(row: dict[str, Any]) -> None:
    names = set(SCHEMA.names) - {"schema_version", "created_at"}
    missing, extra = names - set(row), set(row) - names - {"created_at"}
    if missing or extra:
        raise SchemaError(f"row columns differ from SCHEMA: missing {sorted(missing)}, unexpected {sorted(extra)}")
    for f in SCHEMA:
        if f.name not in row:
            continue
        v = row[f.name]
        if v is None:
            if not f.nullable:
                raise SchemaError(f"column {f.name!r} may not be null")
            continue
        def num(x: object) -> bool:
            return isinstance(x, (int, float)) and not isinstance(x, bool)

        ok = {
            "int64": isinstance(v, int) and not isinstance(v, bool),
            "double": num(v),
            "string": isinstance(v, str),
            "list<item: string>": isinstance(v, list) and all(isinstance(x, str) for x in v),
            "list<item: float>": isinstance(v, list) and all(num(x) for x in v),
        }.get(str(f.type), True)
        if not ok:
            raise SchemaError(f"column {f.name!r} is {f.type}; got {type(v).__name__} {v!r}")
    if row["status"] not in STATUSES:
        raise SchemaError(f"column 'status' is {row['status']!r}; allowed: {list(STATUSES)}")


def is_uri(path: str | Path) -> bool:
    """'s3://bucket/x', 'gs://...': storage reached through pyarrow.fs rather than the local disk."""
    return "://" in str(path) and not str(path).startswith("file://")


def local_path(path: str | Path) -> Path:
    return Path(str(path).removeprefix("file://"))


@lru_cache(maxsize=8)
def _filesystem(root: str) -> pafs.FileSystem:
    # One filesystem object per bucket: S3 clients are costly to make (and a mock:// one keeps its files).
    return pafs.FileSystem.from_uri(root)[0]


def remote(uri: str) -> tuple[pafs.FileSystem, str]:
    """(filesystem, path inside it) for a storage URI."""
    scheme, _, rest = str(uri).partition("://")
    bucket = rest.split("/", 1)[0]
    return _filesystem(f"{scheme}://{bucket}"), rest.rstrip("/")


def row_name(run_id: str, level: int) -> str:
    return f"{run_id}__L{level:03d}.parquet"


def row_path(results_dir: str | Path, run_id: str, level: int) -> Path:
    return local_path(results_dir) / row_name(run_id, level)


def _write_remote(results_dir: str, name: str, table: pa.Table) -> bool:
    """Object stores publish an object whole when its upload completes, so no temp file is needed; they
    have no create-if-absent, so two writers of one level may both upload (the same row, last wins)."""
    fs, base = remote(results_dir)
    path = f"{base}/{name}"
    if fs.get_file_info(path).type != pafs.FileType.NotFound:
        return False
    fs.create_dir(base, recursive=True)
    with fs.open_output_stream(path) as out:
        pq.write_table(table, out)
    return True


def write_row(results_dir: str | Path, row: dict[str, Any]) -> bool:
    """Write one result row atomically; returns False (writing nothing) if that level's row exists."""
    _check_row(row)
    full = {"schema_version": SCHEMA_VERSION, "created_at": dt.datetime.now(dt.UTC), **row}
    # nan -> null for metric columns: "not computed" must not look like a number to readers
    full = {k: (None if isinstance(v, float) and math.isnan(v) and SCHEMA.field(k).nullable else v)
            for k, v in full.items()}
    try:
        table = pa.Table.from_pylist([full], schema=SCHEMA)
    except (pa.ArrowInvalid, pa.ArrowTypeError) as e:
        raise SchemaError(str(e)) from e
    if is_uri(results_dir):
        return _write_remote(str(results_dir), row_name(row["run_id"], row["level"]), table)
    final = row_path(results_dir, row["run_id"], row["level"])
    final.parent.mkdir(parents=True, exist_ok=True)
    if final.exists():
        return False
    tmp = final.parent / f".{final.name}.{uuid.uuid4().hex}.tmp"
    try:
        with open(tmp, "wb") as fh:
            pq.write_table(table, fh)
            fh.flush()
            os.fsync(fh.fileno())
        pause = float(os.environ.get("LTHRAY_FAULT_WRITE_PAUSE") or 0)
        if pause > 0:  # fault-injection hook: lets a test SIGKILL us while a file is half-published
            time.sleep(pause)
        try:
            os.link(tmp, final)  # atomic and never overwrites: the first finisher wins
        except FileExistsError:
            return False
        _fsync_dir(final.parent)
        for stale in final.parent.glob(f".{final.name}.*.tmp"):  # left by writers killed mid-write
            stale.unlink(missing_ok=True)
        return True
    finally:
        tmp.unlink(missing_ok=True)


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def result_files(results_dir: str | Path) -> list[Path]:
    """The published result files (hidden temp files and other names are not results)."""
    if is_uri(results_dir):
        fs, base = remote(str(results_dir))
        infos = fs.get_file_info(pafs.FileSelector(base, allow_not_found=True))
        names = sorted(i.base_name for i in infos if i.type == pafs.FileType.File)
        return [f"{str(results_dir).rstrip('/')}/{n}" for n in names  # type: ignore[misc]
                if n.endswith(".parquet") and not n.startswith((".", "_"))]
    d = local_path(results_dir)
    return sorted(p for p in d.glob("*.parquet") if not p.name.startswith((".", "_"))) if d.is_dir() else []


def read(results_dir: str | Path) -> pa.Table:
    """All rows under `results_dir`; ResultsError naming the first file that is not an lthray result."""
    files = result_files(results_dir)
    fs = remote(str(results_dir))[0] if is_uri(results_dir) else None
    tables = []
    for p in files:
        try:
            t = pq.read_table(remote(str(p))[1] if fs else p, filesystem=fs)
        except Exception as e:
            raise ResultsError(f"{p}: not a readable Parquet file ({type(e).__name__}: {e})") from e
        version = (t.schema.metadata or {}).get(b"lthray.schema_version")
        if version is None:
            raise ResultsError(f"{p}: not an lthray results file (no lthray.schema_version in its metadata)")
        if int(version) != SCHEMA_VERSION:
            raise ResultsError(f"{p}: schema version {int(version)}, this lthray reads version {SCHEMA_VERSION}")
        tables.append(t.select(SCHEMA.names).cast(SCHEMA))
    return pa.concat_tables(tables) if tables else SCHEMA.empty_table()


@lru_cache(maxsize=1)
def git_sha() -> str:
    """The source revision that produced a row ('+dirty' if uncommitted changes), or 'unknown'."""
    here = Path(__file__).resolve().parent
    try:
        sha = subprocess.run(["git", "rev-parse", "HEAD"], cwd=here, capture_output=True, text=True, timeout=5,
                             check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=here,
                               capture_output=True, text=True, timeout=5).stdout.strip()
        return sha + ("+dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return os.environ.get("LTHRAY_GIT_SHA", "unknown")
