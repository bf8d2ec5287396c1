"""The service runs on the core dependencies: nothing it imports needs an extra.

The Bento installs the wheel without extras (bentofile.yaml), so a serving import of
MLflow, pandera or matplotlib would only fail in production. This runs the service's
imports and a scored, explained request in a fresh interpreter in which the extras'
libraries cannot be imported (as in the Bento), then lists what it loaded.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from factories import make_feature_table

EXTRAS_ONLY = ("mlflow", "dvc", "matplotlib", "pandera", "shap", "rapidfuzz", "pyspark")

PROGRAM = """
import json, sys
BLOCKED = set(sys.argv[3].split(","))
class Absent:  # the extras are not installed: importing one fails, as it would in the Bento
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in BLOCKED:
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        return None
sys.meta_path.insert(0, Absent())
import pandas as pd
import exportguard.serving.service, exportguard.serving.cli
from exportguard.scoring.scorer import Scorer
scorer = Scorer.from_path(sys.argv[1])
batch = scorer.score(pd.read_parquet(sys.argv[2]))
batch.top_reasons(3)
print(json.dumps(sorted({m.split(".")[0] for m in sys.modules})))
"""


def test_serving_and_scoring_import_no_extra(tiny_bundle: Path, tmp_path: Path) -> None:
    rows = tmp_path / "rows.parquet"
    make_feature_table(30, seed=2).to_parquet(rows, index=False)
    out = subprocess.run(
        [sys.executable, "-c", PROGRAM, str(tiny_bundle), str(rows), ",".join(EXTRAS_ONLY)],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    loaded = set(json.loads(out.stdout.strip().splitlines()[-1]))
    assert "fasttreeshap_fixed" in loaded and "bentoml" in loaded
    assert sorted(loaded & set(EXTRAS_ONLY)) == []
