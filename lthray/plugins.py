"""Your own model, dataset or concepts, without editing lthray. A plugin is a Python module - a dotted name
on the path, or the path of a .py file - that registers them with the functions below:

    import lthray.plugins as lp
    from torchvision.models import resnet18

    @lp.model("my_resnet18")
    def build(num_classes, in_channels):
        net = resnet18(num_classes=num_classes)
        net.conv1 = torch.nn.Conv2d(in_channels, 64, 3, 1, 1, bias=False)
        return lp.wrap(net, cam_layer="layer4", head="fc")

    @lp.dataset("my_data", num_classes=10, channels=3, flip=True, pad=4)
    def load():
        return (train_x, train_y), (test_x, test_y), class_names   # uint8 NHWC arrays, int labels

Every command that runs trials takes `--plugin MODULE` (repeatable) and imports it in the driver and in every
Ray worker before a config is validated; an installed package can instead declare an entry point in the group
`lthray.plugins` (imported the same way, always). A concept vocabulary needs no plugin:
`--set concepts.vocabulary=PATH`. A plugin that cannot be imported, registers a name twice or builds a model
without the named layers is refused in one line naming the plugin and the fix (PluginError; exit 2).
"""

from __future__ import annotations

import functools
import importlib
import importlib.util
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from lthray.datasets import DATASETS, DatasetSpec
from lthray.models import MODELS, CamModel

ENTRY_POINTS = "lthray.plugins"
_LOADED: dict[str, str] = {}  # spec -> module name, per process


class PluginError(ValueError):
    """A plugin cannot be used: one line naming it and what to do."""


class Wrapped(CamModel):
    """Any CNN whose forward ends in a linear head (torchvision/timm style) as lthray needs it: `fc` is its
    head, `features(x)` what the head reads (the network with its head replaced by an identity), `cam_layer`
    the named module Grad-CAM explains."""

    def __init__(self, net: nn.Module, cam_layer: str, head: str) -> None:
        super().__init__()
        fc = net.get_submodule(head)
        if not isinstance(fc, nn.Linear):
            raise PluginError(f"wrap: {head!r} is a {type(fc).__name__}, not the nn.Linear head; name the "
                              "classifier with head=...")
        parent, _, leaf = head.rpartition(".")
        setattr(net.get_submodule(parent) if parent else net, leaf, nn.Identity())
        self.net, self.fc = net, fc
        self.cam_layer = net.get_submodule(cam_layer)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return torch.flatten(self.net(x), 1)


def wrap(module: nn.Module, cam_layer: str = "layer4", head: str = "fc") -> CamModel:
    """`module` as a CamModel: Grad-CAM on `cam_layer`, the concept bottleneck on what `head` reads."""
    for name in (cam_layer, head):
        try:
            module.get_submodule(name)
        except AttributeError:
            children = ", ".join(n for n, _ in module.named_children())
            raise PluginError(f"wrap: the model has no module {name!r} (its children: {children}); pass "
                              "cam_layer=... and head=... by their names in model.named_modules()") from None
    return Wrapped(module, cam_layer, head)


def model(name: str) -> Callable[[Callable[[int, int], nn.Module]], Callable[[int, int], nn.Module]]:
    """Register a builder `(num_classes, in_channels) -> nn.Module` as model `name` (--set model.name=NAME).
    The module it returns must be a CamModel: build it with `wrap`."""

    def register(builder: Callable[[int, int], nn.Module]) -> Callable[[int, int], nn.Module]:
        @functools.wraps(builder)
        def checked(num_classes: int, in_channels: int) -> CamModel:
            m = builder(num_classes, in_channels)
            if not isinstance(m, CamModel):
                raise PluginError(f"model {name!r} built a {type(m).__name__}; return "
                                  "lthray.plugins.wrap(net, cam_layer=..., head=...)")
            return m

        _register(MODELS, name, checked)
        return builder

    return register


Loaded = tuple[tuple[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray], list[str]]


def dataset(name: str, *, num_classes: int, channels: int = 3, flip: bool = False, pad: int = 0,
            black_background: bool = False) -> Callable[[Callable[[], Loaded]], Callable[[], Loaded]]:
    """Register a loader `() -> ((train_x, train_y), (test_x, test_y), class_names)` as dataset `name`:
    uint8 images N x H x W x C, integer labels 0..num_classes-1. `flip`/`pad`: the augmentation that keeps
    labels. The whole dataset is held in memory (on the GPU when there is one) as float32: N x H x W x C x 4
    bytes; lthray.data refuses, in one line naming the size, a dataset that does not fit."""

    def register(loader: Callable[[], Loaded]) -> Callable[[], Loaded]:
        def load(_root: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, list[str]]:
            (trx, try_), (tex, tey), classes = loader()
            for what, x in (("train", trx), ("test", tex)):
                if x.dtype != np.uint8 or x.ndim != 4 or x.shape[-1] != channels:
                    raise PluginError(f"dataset {name!r}: {what} images are {x.dtype} {x.shape}; expected "
                                      f"uint8 N x H x W x {channels}")
            return trx, np.asarray(try_, np.int64), tex, np.asarray(tey, np.int64), list(classes)

        spec = _LazySizes(name, 0, 0, num_classes, flip=flip, pad=pad, load=load, channels=channels,
                          black_background=black_background)
        _register(DATASETS, name, spec)
        return loader

    return register


_SIZES: dict[str, tuple[int, int]] = {}  # plugin dataset -> (train, test) sizes, read once per process


class _LazySizes(DatasetSpec):
    """A plugin's DatasetSpec whose train and test sizes are read from its loader when first asked for (a
    plugin declares only what it knows without loading). Only the sizes are kept: holding the arrays too
    would double the dataset's memory beside lthray.data's copy."""

    def __getattribute__(self, item: str) -> Any:
        if item in ("num_train", "num_test"):
            name = object.__getattribute__(self, "name")
            if name not in _SIZES:
                trx, _, tex, _, _ = object.__getattribute__(self, "load")(Path())
                _SIZES[name] = (len(trx), len(tex))
            return _SIZES[name][0 if item == "num_train" else 1]
        return object.__getattribute__(self, item)


def _register(registry: Any, name: str, value: Any) -> None:
    if name in registry:
        raise PluginError(f"{_current or 'a plugin'} registers {registry.kind} {name!r}, which exists already; "
                          "give it another name")
    registry.register(name)(value)


_current: str | None = None  # the plugin being imported, for errors raised while it registers


def load(spec: str) -> str:
    """Import plugin `spec` (a dotted module name, or the path of a .py file) once per process; the module
    name. PluginError, one line, when it cannot be imported."""
    global _current
    if spec in _LOADED:
        return _LOADED[spec]
    _current = spec
    try:
        if spec.endswith(".py"):
            path = Path(spec).expanduser().resolve()
            if not path.is_file():
                raise PluginError(f"--plugin {spec}: no such file; give a .py file or a dotted module name")
            name = f"lthray_plugin_{path.stem}"
            mod_spec = importlib.util.spec_from_file_location(name, path)
            module = importlib.util.module_from_spec(mod_spec)
            sys.modules[name] = module
            mod_spec.loader.exec_module(module)
        else:
            name = importlib.import_module(spec).__name__
    except PluginError:
        raise
    except Exception as e:  # whatever the plugin's own code raises on import
        first = str(e).splitlines()[0] if str(e) else ""
        raise PluginError(f"--plugin {spec} failed to import ({type(e).__name__}: {first}); fix the plugin, or "
                          "check that its module is on PYTHONPATH") from None
    finally:
        _current = None
    _LOADED[spec] = name
    return name


def load_all(specs: list[str] | tuple[str, ...] = ()) -> list[str]:
    """The installed entry points of group `lthray.plugins`, then `specs`, each imported once."""
    from importlib.metadata import entry_points

    done = []
    for ep in entry_points(group=ENTRY_POINTS):
        done.append(load(ep.value.split(":")[0]))
    return done + [load(s) for s in specs]


def add_flag(parser: Any) -> None:
    """The `--plugin` flag of a command that reads a sweep's rows or tickets (select, export, report)."""
    parser.add_argument("--plugin", action="append", default=[], metavar="MODULE",
                        help="the sweep's plugin modules (lthray.plugins), when its model is a plugin's")


def load_for_command(specs: list[str]) -> bool:
    """`load_all(specs)` for a command line: False after printing its one-line error (the command exits 2)."""
    try:
        load_all(specs)
    except PluginError as e:
        print(f"error: {e}", file=sys.stderr)
        return False
    return True
