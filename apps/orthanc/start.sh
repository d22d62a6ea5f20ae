#!/usr/bin/env bash
# Start Orthanc (DICOMweb on 127.0.0.1:8042, local clients only, no DICOM port), load
# generated CT series into it if it is empty (SAMPLE_CASES, default 6; 0: none), and then
# start the MONAI Label server on it. Ctrl+C stops both. Orthanc's database, its log and the
# server's series cache go to ORTHANC_DATA (default: <repo>/.orthanc).
# Needs Orthanc with the DICOMweb and GDCM plugins (Debian: apt-get install orthanc
# orthanc-dicomweb orthanc-gdcm)
# and the virtual environment that `make install` builds.
set -euo pipefail

repo=$(cd "$(dirname "$0")/../.." && pwd)
venv_bin=$repo/.venv/bin
export ORTHANC_DATA=${ORTHANC_DATA:-$repo/.orthanc}
dicomweb_url=http://127.0.0.1:8042/dicom-web
startup_timeout_s=60

mkdir -p "$ORTHANC_DATA"
Orthanc "$repo/apps/orthanc/orthanc.json" >"$ORTHANC_DATA/orthanc.log" 2>&1 &
orthanc_pid=$!
stop_all() {
    kill ${server_pid:-} "$orthanc_pid" 2>/dev/null || true
    wait
}
trap stop_all EXIT
trap 'exit 130' INT TERM

for _ in $(seq "$startup_timeout_s"); do
    curl -sf "$dicomweb_url/studies" >/dev/null && break
    kill -0 "$orthanc_pid" 2>/dev/null || { cat "$ORTHANC_DATA/orthanc.log"; exit 1; }
    sleep 1
done
curl -sf "$dicomweb_url/studies" >/dev/null || { echo "Orthanc not answering at $dicomweb_url" >&2; exit 1; }

if [ "$(curl -sf "$dicomweb_url/series")" = "[]" ] && [ "${SAMPLE_CASES:-6}" -gt 0 ]; then
    echo "Orthanc is empty: loading ${SAMPLE_CASES:-6} generated CT series (synthetic phantom)"
    cases=$ORTHANC_DATA/sample-cases
    "$venv_bin/sarcopenia" phantom --out "$cases" --count "${SAMPLE_CASES:-6}" --seed 2026 --format dicom \
        --matrix 256 --max-slices 60 --label-slices none >/dev/null
    "$venv_bin/sarcopenia" pacs-upload "$cases" --dicomweb "$dicomweb_url"
fi

set -a
# shellcheck source=monailabel.env
. "$repo/apps/orthanc/monailabel.env"
set +a
export MONAI_LABEL_DICOMWEB_CACHE_PATH=$ORTHANC_DATA/monailabel-cache
export PATH="$venv_bin:$PATH"  # dcmqi's itkimage2segimage; without it the server downloads dcmqi

"$venv_bin/python" -m monailabel.main start_server \
    --app "$repo" --studies "$dicomweb_url" --host "${HOST:-0.0.0.0}" --port "${PORT:-8000}" &
server_pid=$!
wait "$server_pid"
