"""The safety net of the "each method in one place" refactor (issue 16): golden losses and
detections of fixed weights (``golden_runs.py``, fixtures written by ``make_golden.py``), the
state-dict keys of today's method models (``tests/fixtures/legacy-keys/``) and every config's
resolved values (``config_snapshots.py``, written by ``snapshot_configs.py``).
``tests/test_golden.py`` checks all three; the scripts here are not collected by pytest."""
