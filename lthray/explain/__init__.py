"""Explanations of a (pruned) model: Grad-CAM maps and their fidelity to the dense model's."""
