"""The project's fixed vocabulary: data splits, object classes and photometric bands, each named once.

Orders matter and are part of the outputs:

* SPLITS is the pipeline's order (train, val, test): prepare's and serialize's summaries, the report's
  split table and histogram list the splits in it.
* EVAL_SPLITS are the splits the evaluation stages score (val selects, test reports).
* CLASSES is the stability study's label order (STAR, GALAXY, QSO): a label's index is its position here
  (probe answers, DPO labels, the warm-up's targets), majority ties go to the label listed first, and the
  stability tables and figures list the classes in this order. Where a listing must be alphabetical (the
  SDSS17 import's messages), the caller sorts it explicitly.
* BANDS are the SDSS ugriz magnitudes in wavelength order (the stability features and the SDSS17 import).
"""

from __future__ import annotations

SPLITS = ("train", "val", "test")
EVAL_SPLITS = ("val", "test")
CLASSES = ("STAR", "GALAXY", "QSO")
BANDS = ("u", "g", "r", "i", "z")
