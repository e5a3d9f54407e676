#!/usr/bin/env bash
# Starts a local MinIO whose bucket events reach imsflow through JetStream.
#
# It builds the pinned MinIO into bin/ (make tools; nothing is installed
# globally), starts it on loopback with a NATS target that publishes with
# JetStream to imsflow.in.objects.minio, waits until it serves, creates the
# upload buckets and points their object-created events at that target,
# and creates the export bucket without (an exported file must not come
# back as an upload). Start imsflow first (make run), so that the stream
# exists.
#
#   scripts/minio.sh                 # upload bucket "images", export bucket "exports"
#   NATS_ADDR=127.0.0.1:4222 MINIO_ADDR=127.0.0.1:9000 EXPORT_BUCKET=out scripts/minio.sh images more-images
set -euo pipefail
cd "$(dirname "$0")/.."

NATS_ADDR=${NATS_ADDR:-127.0.0.1:4222}
MINIO_ADDR=${MINIO_ADDR:-127.0.0.1:9000}
MINIO_DATA=${MINIO_DATA:-.data/minio}
export MINIO_ROOT_USER=${MINIO_ROOT_USER:-imsflow}
export MINIO_ROOT_PASSWORD=${MINIO_ROOT_PASSWORD:-imsflow-local-secret}
EXPORT_BUCKET=${EXPORT_BUCKET:-exports}
buckets=("$@")
[ ${#buckets[@]} -gt 0 ] || buckets=(images)

make -s tools build
mkdir -p "$MINIO_DATA"
MINIO_NOTIFY_NATS_ENABLE_PRIMARY=on \
MINIO_NOTIFY_NATS_ADDRESS_PRIMARY="$NATS_ADDR" \
MINIO_NOTIFY_NATS_SUBJECT_PRIMARY=imsflow.in.objects.minio \
MINIO_NOTIFY_NATS_JETSTREAM_PRIMARY=on \
MINIO_BROWSER=off MINIO_UPDATE=off \
  bin/minio server "$MINIO_DATA" --quiet --address "$MINIO_ADDR" &
minio_pid=$!
trap 'kill $minio_pid 2>/dev/null; wait $minio_pid 2>/dev/null' EXIT INT TERM

for _ in $(seq 1 100); do
  curl -fsS "http://$MINIO_ADDR/minio/health/ready" >/dev/null 2>&1 && break
  kill -0 $minio_pid 2>/dev/null || { echo "minio exited" >&2; exit 1; }
  sleep 0.2
done

export S3_ENDPOINT=$MINIO_ADDR S3_SECURE=false S3_ACCESS_KEY=$MINIO_ROOT_USER S3_SECRET_KEY=$MINIO_ROOT_PASSWORD
bin/imsflow bucket init -quiet "$EXPORT_BUCKET" "${buckets[@]}"
cat <<MSG
MinIO is serving on http://$MINIO_ADDR (user $MINIO_ROOT_USER, password $MINIO_ROOT_PASSWORD, data in $MINIO_DATA).
Its object-created events go to JetStream at $NATS_ADDR on imsflow.in.objects.minio.
For imsflow to check and read these buckets, run it with:
  S3_ENDPOINT=$MINIO_ADDR S3_SECURE=false S3_ACCESS_KEY=$MINIO_ROOT_USER S3_SECRET_KEY=$MINIO_ROOT_PASSWORD make run
Ctrl-C stops MinIO.
MSG
wait $minio_pid
