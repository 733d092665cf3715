#!/bin/sh
# One-shot MinIO initialisation (minio/mc image). Idempotent: safe to run on every `up`.
#  - the run-artifact bucket and the DVC remote bucket (versioning on the DVC bucket),
#  - no anonymous access to either,
#  - the platform's own user (HOPCHAIN_S3_ACCESS_KEY) with a policy limited to those buckets;
#    the root credentials stay with the operator and are never given to Airflow;
#  - a read-only user (HOPCHAIN_S3_READER_ACCESS_KEY: get and list the run-artifact bucket only),
#    the key Label Studio's image storage signs annotators' image URLs with.
# The admin alias `hopchain` comes from MC_HOST_hopchain (set by compose; no secret on argv).
set -eu
: "${HOPCHAIN_BUCKET:?}" "${HOPCHAIN_DVC_BUCKET:?}" "${HOPCHAIN_S3_ACCESS_KEY:?}" "${HOPCHAIN_S3_SECRET_KEY:?}"
: "${HOPCHAIN_S3_READER_ACCESS_KEY:?}" "${HOPCHAIN_S3_READER_SECRET_KEY:?}"

for bucket in "$HOPCHAIN_BUCKET" "$HOPCHAIN_DVC_BUCKET"; do
  mc mb --ignore-existing "hopchain/$bucket"
  mc anonymous set none "hopchain/$bucket"
done
mc version enable "hopchain/$HOPCHAIN_DVC_BUCKET"

policy=/tmp/hopchain-platform.json
cat > "$policy" <<JSON
{
  "Version": "2012-10-17",
  "Statement": [
    {"Effect": "Allow",
     "Action": ["s3:GetBucketLocation", "s3:ListBucket", "s3:ListBucketMultipartUploads",
                "s3:ListBucketVersions", "s3:GetBucketVersioning"],
     "Resource": ["arn:aws:s3:::$HOPCHAIN_BUCKET", "arn:aws:s3:::$HOPCHAIN_DVC_BUCKET"]},
    {"Effect": "Allow",
     "Action": ["s3:GetObject", "s3:GetObjectVersion", "s3:PutObject", "s3:DeleteObject",
                "s3:AbortMultipartUpload", "s3:ListMultipartUploadParts"],
     "Resource": ["arn:aws:s3:::$HOPCHAIN_BUCKET/*", "arn:aws:s3:::$HOPCHAIN_DVC_BUCKET/*"]}
  ]
}
JSON
mc admin policy create hopchain hopchain-platform "$policy"
mc admin user add hopchain "$HOPCHAIN_S3_ACCESS_KEY" "$HOPCHAIN_S3_SECRET_KEY"
if ! out=$(mc admin policy attach hopchain hopchain-platform --user "$HOPCHAIN_S3_ACCESS_KEY" 2>&1); then
  case "$out" in
    *"already"*) ;;  # attached on an earlier run
    *) echo "$out" >&2; exit 1 ;;
  esac
fi
reader=/tmp/hopchain-images-reader.json
cat > "$reader" <<JSON
{
  "Version": "2012-10-17",
  "Statement": [
    {"Effect": "Allow", "Action": ["s3:GetBucketLocation", "s3:ListBucket"],
     "Resource": ["arn:aws:s3:::$HOPCHAIN_BUCKET"]},
    {"Effect": "Allow", "Action": ["s3:GetObject"], "Resource": ["arn:aws:s3:::$HOPCHAIN_BUCKET/*"]}
  ]
}
JSON
mc admin policy create hopchain hopchain-images-reader "$reader"
mc admin user add hopchain "$HOPCHAIN_S3_READER_ACCESS_KEY" "$HOPCHAIN_S3_READER_SECRET_KEY"
if ! out=$(mc admin policy attach hopchain hopchain-images-reader --user "$HOPCHAIN_S3_READER_ACCESS_KEY" 2>&1); then
  case "$out" in
    *"already"*) ;;
    *) echo "$out" >&2; exit 1 ;;
  esac
fi
echo "minio-init: buckets $HOPCHAIN_BUCKET, $HOPCHAIN_DVC_BUCKET ready; platform user has policy hopchain-platform; reader has hopchain-images-reader"
