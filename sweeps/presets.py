"""The sweep presets live in lthray.presets (python -m lthray starts from them too)."""

from lthray.presets import PRESETS, Preset, is_guided, sample

__all__ = ["PRESETS", "Preset", "is_guided", "sample"]
