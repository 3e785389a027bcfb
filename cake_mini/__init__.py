"""cake_mini: data-free knowledge distillation with CAKE, small enough to read.

Copy a trained classifier (the teacher) into another model (the student) without the
teacher's training data: synthesise samples on the teacher's decision boundaries
(:func:`synthesize`), then train the student on the teacher's soft labels (:func:`distill`).

Read ``cake.py`` first: the method in one short file (the initial batch, the objective,
the loop over one mini-batch, and :func:`synthesize_reference` built on them). Then
``losses.py`` (the terms), ``synthesis.py`` (the config, the result and the fast
engine :func:`synthesize`), ``distill.py`` (the student). ``book.py`` holds the helpers
the book's chapters share; it is not imported here.

>>> import cake_mini
>>> cfg = cake_mini.SynthesisConfig.preset("fashion-mnist", num_samples=10_000)
"""
from . import sizes
from .cake import synthesize_reference
from .distill import DistillConfig, DistillResult, distill, evaluate, train_classifier
from .losses import classification_loss, contrastive_loss, kd_loss, soft_cross_entropy, total_variation
from .schedules import step_sizes
from .synthesis import NonFiniteLossError, SynthesisConfig, SyntheticSet, synthesize

__version__ = "0.1.0"

__all__ = [
    "DistillConfig", "DistillResult", "distill", "evaluate", "train_classifier",
    "classification_loss", "contrastive_loss", "kd_loss", "soft_cross_entropy", "total_variation",
    "step_sizes", "NonFiniteLossError", "SynthesisConfig", "SyntheticSet", "synthesize",
    "synthesize_reference", "__version__",
]
