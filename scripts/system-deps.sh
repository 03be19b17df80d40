#!/usr/bin/env bash
# Debian packages the tests talk to: DCMTK (a real DICOM peer), a Java runtime (METEOR scoring),
# Tesseract with Chinese and English data (optional OCR engine), Noto CJK fonts (report rendering), AR PL
# Kai/Ming and WenQuanYi Hei fonts (the reading benchmark's font pages) and
# Chromium (the review page's browser tests drive it with Playwright; never `playwright install`).
set -euo pipefail
need=()
command -v storescu >/dev/null || need+=(dcmtk)
command -v java >/dev/null || need+=(default-jre-headless)
command -v Orthanc >/dev/null || need+=(orthanc)
command -v npm >/dev/null || need+=(npm)  # tests/node: FHIR JSON schemas, FHIR.js, fhir-kit-client, Medplum's FHIR router
command -v tesseract >/dev/null || need+=(tesseract-ocr tesseract-ocr-chi-sim tesseract-ocr-eng)
[ -e /usr/share/fonts/opentype/noto/NotoSansCJK-Regular.ttc ] || need+=(fonts-noto-cjk)
# Kai, Ming (Song) and Hei faces for the reading benchmark's font pages (benchmarks/reading.py)
[ -e /usr/share/fonts/truetype/arphic/ukai.ttc ] || need+=(fonts-arphic-ukai)
[ -e /usr/share/fonts/truetype/arphic/uming.ttc ] || need+=(fonts-arphic-uming)
[ -e /usr/share/fonts/truetype/wqy/wqy-zenhei.ttc ] || need+=(fonts-wqy-zenhei)
[ -x /usr/bin/chromium ] || need+=(chromium)
if [ ${#need[@]} -gt 0 ]; then
  if [ "$(id -u)" -ne 0 ]; then SUDO=sudo; else SUDO=; fi
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need[@]}" >/dev/null
fi
# The index tests also run against PostgreSQL at 127.0.0.1:5432; start the local cluster if it is down.
if ! pg_isready -h 127.0.0.1 -p 5432 -q 2>/dev/null; then
  if command -v pg_ctlcluster >/dev/null; then
    pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | head -1)" main start || true
  fi
fi
