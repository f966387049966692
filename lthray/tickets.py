"""Tickets you can take away: each level's network is kept beside its row and mask, and `load` gives it back
as a plain `nn.Module` (masks applied, pruned weights exactly zero, eval mode); `export` writes it for
another program (safetensors, a `torch.save` state_dict, or ONNX) with its mask and config.

RESULTS/_weights/RUN_ID__LNNN.safetensors holds the network the row describes: `trained/NAME` (its weights
after the level's training) and `rewound/NAME` (the weights that training began from: with weight
rewinding, the rewind point; at level 0, the initialisation). It is published exactly once, before the
mask and the row, from the trial's own weights, so shared and unshared runs keep the same file. The
controls and arms that measure a retrained copy (`reinit`, `shuffled`, `imp_fid`, `imp_kd`) keep no weights:
their row describes a network that is not the lineage's, and their mask file is what they leave. Unstructured
sparsity is zeros inside dense tensors: a ticket runs no faster until a sparse kernel or structured pruning
exploits them.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from torch import nn

from lthray import mask_files, masks, results, storage
from lthray.config import TrialConfig, from_flat
from lthray.datasets import DATASETS
from lthray.methods import METHODS
from lthray.models import build

FOLDER = "_weights"  # "_": readers of the rows skip it
KINDS = ("trained", "rewound")
FORMATS = ("safetensors", "pt", "onnx")


class TicketError(ValueError):
    """A ticket cannot be loaded or exported as asked: one line saying why and what to do."""


def path_of(results_dir: str | Path, run_id: str, level: int) -> str:
    name = results.row_name(run_id, level).replace(".parquet", ".safetensors")
    return f"{str(results_dir).rstrip('/')}/{FOLDER}/{name}"


def write(results_dir: str | Path, run_id: str, level: int, trained: dict[str, torch.Tensor],
          rewound: dict[str, torch.Tensor]) -> bool:
    """Publish one level's weights (False, writing nothing, if they exist)."""
    from safetensors.torch import save

    tensors = {f"{kind}/{k}": v.detach().cpu().contiguous() for kind, w in (("trained", trained), ("rewound", rewound))
               for k, v in w.items()}
    name = Path(path_of(results_dir, run_id, level)).name
    return storage.publish(f"{str(results_dir).rstrip('/')}/{FOLDER}", name, lambda fh: fh.write(save(tensors)))


def _row(results_dir: str | Path, run_id: str, level: int) -> dict[str, Any]:
    got = results.read_run(results_dir, run_id, range(level, level + 1))
    if not got:
        raise TicketError(f"no row for run {run_id} level {level} under {results_dir}: list the runs with "
                          "`lthray select --results ...` or pandas.read_parquet(results)")
    return got[0]


def config_of(row: dict[str, Any]) -> TrialConfig:
    return from_flat(json.loads(row["config_json"]))


def model_of(cfg: TrialConfig) -> nn.Module:
    """A fresh model of the config's architecture for its dataset (weights to be loaded into it)."""
    spec = DATASETS.get(cfg.data.dataset)
    dtype = torch.float64 if cfg.train.dtype == "float64" else torch.float32
    return build(cfg.model.name, spec.num_classes, cfg.seed, spec.channels, dtype)


def mask_of(results_dir: str | Path, run_id: str, level: int) -> masks.Mask:
    """The level's mask from its mask file, as bool tensors."""
    from lthray.results import ResultsError

    path = mask_files.path_of(results_dir, run_id, level)
    why = mask_files.problem(results_dir, run_id, level)
    if why is not None:
        raise TicketError(f"{path} {why}: the level's mask is needed to load its ticket")
    try:
        t, _ = results.read_tagged(path, storage.resolve(results_dir)[0], "lthray.mask_version", "mask file")
    except ResultsError as e:
        raise TicketError(str(e)) from None
    return {r["layer"]: torch.from_numpy(mask_files.unpack(r)) for r in t.to_pylist()}


def load(results_dir: str | Path, run_id: str, level: int, weights: str = "trained") -> nn.Module:
    """The network of `run_id`'s row at `level`: its architecture from the row's config, its `weights`
    ('trained', or 'rewound': what the level's training began from) from the weights file, its mask from
    the mask file applied (pruned weights exactly zero); in eval mode, on the CPU."""
    if weights not in KINDS:
        raise TicketError(f"weights={weights!r} is not one of {list(KINDS)}")
    row = _row(results_dir, run_id, level)
    path = path_of(results_dir, run_id, level)
    if not storage.exists(path):
        copy = row["method"] in METHODS and METHODS.get(row["method"]).measures_copy
        why = (f"run {run_id} is the {row['method']} control or arm, whose row measures a retrained copy whose "
               "weights are not kept (its mask file is)") if copy else \
            "written before lthray kept weights (schema 11), or the run was not finished"
        raise TicketError(f"{path} does not exist: {why}")
    from safetensors.torch import load as load_bytes

    stored = load_bytes(storage.read_bytes(path))
    state = {k.split("/", 1)[1]: v for k, v in stored.items() if k.startswith(f"{weights}/")}
    model = model_of(config_of(row))
    model.load_state_dict(state)
    mask = mask_of(results_dir, run_id, level)
    masks.apply(model, mask)
    return model.eval()


def export(results_dir: str | Path, run_id: str, level: int, fmt: str, out: str | Path,
           weights: str = "trained") -> list[Path]:
    """Write the ticket of (`run_id`, `level`) into folder `out`: its weights (model.safetensors, model.pt
    or model.onnx), its mask (mask.safetensors or mask.pt: one bool tensor per pruned layer) and
    config.json (the trial's flat config, the row's metrics, what built the model). Plain readers load them:
    `safetensors.torch.load_file`, `torch.load(..., weights_only=True)`, onnxruntime."""
    if fmt not in FORMATS:
        raise TicketError(f"--format={fmt!r} is not one of {list(FORMATS)}")
    model = load(results_dir, run_id, level, weights)
    row = _row(results_dir, run_id, level)
    mask = mask_of(results_dir, run_id, level)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    # clone: a model may hold one tensor under two names (a CAM layer aliased for hooks), which safetensors
    # refuses to write as shared storage
    state = {k: v.detach().clone().contiguous() for k, v in model.state_dict().items()}
    if fmt == "onnx":
        written = [_onnx(model, row, out / "model.onnx")]
    elif fmt == "safetensors":
        from safetensors.torch import save_file

        save_file(state, out / "model.safetensors")
        written = [out / "model.safetensors"]
    else:
        storage.atomic_torch_save(state, out / "model.pt")
        written = [out / "model.pt"]
    if fmt == "pt":
        storage.atomic_torch_save(mask, out / "mask.pt")
        written.append(out / "mask.pt")
    else:
        from safetensors.torch import save_file

        save_file({k: v.contiguous() for k, v in mask.items()}, out / "mask.safetensors")
        written.append(out / "mask.safetensors")
    meta = {"run_id": run_id, "level": level, "weights": weights, "model": row["model"], "dataset": row["dataset"],
            "method": row["method"], "seed": row["seed"], "density": row["density"], "test_acc": row["test_acc"],
            "build": "lthray.tickets.model_of(lthray.config.from_flat(config)) or lthray.tickets.load(...)",
            "config": json.loads(row["config_json"])}
    (out / "config.json").write_text(json.dumps(meta, indent=2) + "\n")
    return [*written, out / "config.json"]


def _onnx(model: nn.Module, row: dict[str, Any], path: Path) -> Path:
    """The model as ONNX (a dynamic batch axis), traced on one input of the data's shape; one line naming
    what is missing when torch.onnx cannot export here."""
    spec = DATASETS.get(config_of(row).data.dataset)
    # the row's gallery maps are at the input's resolution (GALLERY square maps, flattened)
    size = round((len(row["probe_cams"]) / results.GALLERY) ** 0.5) if row.get("probe_cams") else 32
    x = torch.zeros(1, spec.channels, size, size, dtype=next(model.parameters()).dtype)
    try:
        torch.onnx.export(model, (x,), str(path), input_names=["images"], output_names=["logits"],
                          dynamic_axes={"images": {0: "batch"}, "logits": {0: "batch"}}, dynamo=False)
    except Exception as e:  # torch.onnx's errors name the missing package or the unsupported operator
        raise TicketError(f"ONNX export failed ({type(e).__name__}: {str(e).splitlines()[0][:200]}); "
                          "`pip install onnx`, or export --format safetensors") from None
    return path


def main(argv: list[str] | None = None) -> int:
    """`lthray export`: one ticket to a folder; a bad flag or a missing ticket is one line, exit 2."""
    import sys

    from lthray import plugins
    from lthray.config_docs import OneLineParser

    p = OneLineParser(prog="lthray export", description=export.__doc__)
    p.add_argument("--results", required=True, help="a results folder (local path or URI)")
    p.add_argument("--run", required=True, help="the run id (column run_id)")
    p.add_argument("--level", required=True, type=int, help="the pruning level (0 = dense)")
    p.add_argument("--format", default="safetensors", help=f"one of {', '.join(FORMATS)} (default safetensors)")
    p.add_argument("--weights", default="trained", help="trained (default), or rewound: where its training began")
    p.add_argument("--out", required=True, help="the folder to write into (created)")
    plugins.add_flag(p)
    args = p.parse_args(argv)
    if not plugins.load_for_command(args.plugin):
        return 2
    try:
        written = export(args.results, args.run, args.level, args.format, args.out, args.weights)
    except (TicketError, results.ResultsError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    for path in written:
        print(path)
    return 0
