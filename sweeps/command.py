"""`lthray`: one command for everything, each subcommand the module that already does it (imported only when
called, so `lthray config` never starts Ray). The documented entry points keep working as they are:
`python -m lthray`, `python sweeps/imp_vs_guided.py`, `python -m analysis.pareto`."""

from __future__ import annotations

import sys
from collections.abc import Callable

EXIT_USAGE = 2


def _trial(argv: list[str]) -> int:
    from lthray.__main__ import main

    return main(argv)


def _sweep(argv: list[str]) -> int:
    from sweeps.imp_vs_guided import main

    return main(argv)


def _confirm(argv: list[str]) -> int:
    if not argv or argv[0].startswith("-"):
        print("error: lthray confirm SEARCH [flags]: name the search sweep whose front to re-test "
              "(e.g. lthray confirm fashion-search --seeds 5)", file=sys.stderr)
        return EXIT_USAGE
    from sweeps.imp_vs_guided import main

    return main(["--confirm", argv[0], *argv[1:]])


def _report(argv: list[str]) -> int:
    from analysis.pareto import main

    return main(argv)


def _select(argv: list[str]) -> int:
    from analysis.select import main

    return main(argv)


def _export(argv: list[str]) -> int:
    from lthray.tickets import main

    return main(argv)


def _presets(argv: list[str]) -> int:
    from lthray.presets import PRESETS

    if argv:
        print("error: lthray presets takes no arguments (lthray config --preset NAME lists one preset's keys)",
              file=sys.stderr)
        return EXIT_USAGE
    width = max(map(len, PRESETS))
    for name, p in PRESETS.items():
        print(f"{name:<{width}}  {p.about}")
    return 0


def _config(argv: list[str]) -> int:
    from lthray.config import ConfigError, from_flat, to_flat
    from lthray.config_docs import OneLineParser, table
    from lthray.presets import PRESETS

    p = OneLineParser(prog="lthray config", description="Every config key of a preset: its value (or "
                                "the values the preset's sweep tries) and what it means.")
    p.add_argument("--preset", default="fashion", help=f"one of {', '.join(PRESETS)} (default: fashion)")
    args = p.parse_args(argv)
    if args.preset not in PRESETS:
        print(f"error: --preset={args.preset!r} is not one of {sorted(PRESETS)}", file=sys.stderr)
        return EXIT_USAGE
    preset = PRESETS[args.preset]
    try:
        flat = to_flat(from_flat(preset.base))
    except ConfigError as e:
        print(f"error: {e}", file=sys.stderr)
        return EXIT_USAGE
    varied = {**preset.space, **preset.guided_space}
    rows = table(flat, varied)
    width = max(len(k) for k, _, _ in rows)
    for key, value, doc in rows:
        print(f"{key:<{width}}  {value:<14}  {doc}".rstrip())
    return 0


COMMANDS: dict[str, tuple[Callable[[list[str]], int], str]] = {
    "trial": (_trial, "run one trial without Ray (python -m lthray)"),
    "sweep": (_sweep, "run a sweep of a preset through Ray Tune (sweeps/imp_vs_guided.py)"),
    "confirm": (_confirm, "re-test a search's Pareto front with fresh seeds, paired with IMP"),
    "report": (_report, "Pareto plots and the study report of a results folder (python -m analysis.pareto)"),
    "select": (_select, "per run, the sparsest ticket that keeps dense accuracy and its explanations"),
    "export": (_export, "write a ticket's weights, mask and config (safetensors, pt or onnx)"),
    "presets": (_presets, "list the presets"),
    "config": (_config, "every config key of a preset, its value and meaning"),
}


def menu() -> str:
    width = max(map(len, COMMANDS))
    lines = [f"  {name:<{width}}  {about}" for name, (_, about) in COMMANDS.items()]
    return "usage: lthray COMMAND [flags]   (lthray COMMAND --help for its flags)\n\ncommands:\n" + "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if not argv or argv[0] in ("-h", "--help", "help"):
        print(menu())
        return 0
    name, rest = argv[0], argv[1:]
    if name not in COMMANDS:
        print(f"error: {name!r} is not an lthray command; expected one of {', '.join(COMMANDS)} (lthray --help)",
              file=sys.stderr)
        return EXIT_USAGE
    return COMMANDS[name][0](rest)


if __name__ == "__main__":
    sys.exit(main())
