#!/usr/bin/env bash
# Start the MONAI Label server on a local folder of images: STUDIES (default: the
# repository's studies/, filled with a generated sample datastore if it has no images).
# Expects the virtual environment that `make serve` builds.
set -euo pipefail

repo=$(cd "$(dirname "$0")/../.." && pwd)
sample_studies=$repo/studies
studies=${STUDIES:-$sample_studies}
venv_bin=$repo/.venv/bin

has_images() {
    [ -n "$(find "$1" -maxdepth 1 -type f \( -name '*.nii.gz' -o -name '*.nii' -o -name '*.nrrd' \) -print -quit)" ]
}

if [ "$studies" = "$sample_studies" ] && ! has_images "$studies"; then
    echo "No images in $studies: generating the sample datastore (synthetic CT)"
    "$venv_bin/sarcopenia" phantom --out "$studies" --count 6 --seed 2026 --label-slices l3 --labelled 3
fi

set -a
# shellcheck source=monailabel.env
. "$repo/apps/local/monailabel.env"
set +a
export PATH="$venv_bin:$PATH"  # dcmqi's itkimage2segimage, so nothing is downloaded

exec "$venv_bin/python" -m monailabel.main start_server \
    --app "$repo" --studies "$studies" --host "${HOST:-0.0.0.0}" --port "${PORT:-8000}"
