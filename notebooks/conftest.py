"""``pytest`` (nbmake) runs the notebooks on their own fresh outputs: the places they would read
by default (this clone's ``outputs/control``, a user's ``GEMPO_*`` variables) are replaced by an
empty folder, so each notebook makes its own small runs and its result does not depend on what
happens to lie in the working tree."""

import os
import tempfile

os.environ["GEMPO_CONTROL_RUNS"] = tempfile.mkdtemp(prefix="gempo_notebook_runs_")
os.environ.pop("GEMPO_FINETUNE_RUN", None)
os.environ.pop("GEMPO_RESULTS", None)
