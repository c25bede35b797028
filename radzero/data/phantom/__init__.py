"""Seeded synthetic chest radiographs with known findings, reports, boxes and masks.

Modules, in the order a case is drawn: :mod:`~radzero.data.phantom.geometry` (anatomy
coordinates and lung shapes), :mod:`~radzero.data.phantom.anatomy` (a normal chest as density
layers), :mod:`~radzero.data.phantom.lesions` (the findings), :mod:`~radzero.data.phantom.rendering`
(density to pixels), :mod:`~radzero.data.phantom.reports` (report and finding-sentences),
:mod:`~radzero.data.phantom.dataset` (whole cases and the dataset folder); the command
line is ``radzero phantom`` (:mod:`radzero.cli.phantom`).
"""

from radzero.data.phantom.dataset import (
    GENERATOR_VERSION,
    PhantomCase,
    generate_case,
    write_dataset,
)
from radzero.data.phantom.lesions import FINDINGS

__all__ = ["FINDINGS", "GENERATOR_VERSION", "PhantomCase", "generate_case", "write_dataset"]
