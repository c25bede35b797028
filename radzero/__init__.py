"""RadZero: explainable chest X-ray vision-language alignment."""

__version__ = "0.1.0"
