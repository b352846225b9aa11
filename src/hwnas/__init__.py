"""hwnas: find, quantize, verify and deploy small neural networks for FPGAs and edge devices."""

__version__ = "0.1.0"
