#!/usr/bin/env bash
# Create benchmarks/medspacy_labeller/.venv with medspaCy 1.3.1 (pins spaCy 3.7 -> numpy < 2), kept apart
# from the project's venv. Usage: bash benchmarks/medspacy_labeller/setup.sh [python]
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
PY="${1:-python3}"
"$PY" -m venv "$HERE/.venv"
"$HERE/.venv/bin/pip" install --quiet --upgrade pip
"$HERE/.venv/bin/pip" install --quiet "medspacy==1.3.1"
"$HERE/.venv/bin/python" -c "import medspacy, spacy, numpy; print('medspacy', medspacy.__version__, 'spacy', spacy.__version__, 'numpy', numpy.__version__)"
