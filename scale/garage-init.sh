#!/bin/sh
# One-shot set-up of a fresh single-node Garage for docker-compose.scale.yml, through its admin
# API (v2) with curl: a layout giving the node a role, the bucket, and the access key the hlsmark
# nodes use (imported, so it is known in advance). Idempotent: run again, it finds each in place.
#
#   GARAGE_ADMIN=http://garage:3903 GARAGE_ADMIN_TOKEN=... BUCKET=hlsmark \
#   AWS_ACCESS_KEY_ID=GK... AWS_SECRET_ACCESS_KEY=... sh scale/garage-init.sh
set -eu
: "${GARAGE_ADMIN:?}" "${GARAGE_ADMIN_TOKEN:?}" "${BUCKET:?}" "${AWS_ACCESS_KEY_ID:?}" "${AWS_SECRET_ACCESS_KEY:?}"

api() { # METHOD PATH [JSON]: the answer's body on stdout; fails on an HTTP error
  if [ $# -ge 3 ]; then
    curl -fsS -X "$1" -H "Authorization: Bearer $GARAGE_ADMIN_TOKEN" -H 'Content-Type: application/json' \
      --data "$3" "$GARAGE_ADMIN$2"
  else
    curl -fsS -X "$1" -H "Authorization: Bearer $GARAGE_ADMIN_TOKEN" "$GARAGE_ADMIN$2"
  fi
}
# The first JSON string value of KEY in stdin (the answers are small; no jq in the image).
field() { tr -d '\n ' | sed -n "s/.*\"$1\":\"\\([^\"]*\\)\".*/\\1/p" | head -n 1; }

i=0
until status=$(api GET /v2/GetClusterStatus 2>/dev/null); do
  i=$((i + 1))
  [ "$i" -lt 60 ] || { echo "garage-init: no answer from $GARAGE_ADMIN" >&2; exit 1; }
  sleep 1
done
node=$(printf '%s' "$status" | field id)
[ -n "$node" ] || { echo "garage-init: no node id in: $status" >&2; exit 1; }

# A node without a role has no "zone" in the status.
if ! printf '%s' "$status" | grep -q '"zone"'; then
  version=$(api GET /v2/GetClusterLayout | tr -d '\n ' | sed -n 's/.*"version":\([0-9]*\).*/\1/p' | head -n 1)
  api POST /v2/UpdateClusterLayout "{\"roles\":[{\"id\":\"$node\",\"zone\":\"dc1\",\"capacity\":10000000000,\"tags\":[]}]}" >/dev/null
  api POST /v2/ApplyClusterLayout "{\"version\":$(( ${version:-0} + 1 ))}" >/dev/null
  echo "garage-init: layout applied (node $node)"
fi

api GET "/v2/GetKeyInfo?id=$AWS_ACCESS_KEY_ID" >/dev/null 2>&1 ||
  api POST /v2/ImportKey "{\"accessKeyId\":\"$AWS_ACCESS_KEY_ID\",\"secretAccessKey\":\"$AWS_SECRET_ACCESS_KEY\",\"name\":\"hlsmark\"}" >/dev/null

bucket=$(api GET "/v2/GetBucketInfo?globalAlias=$BUCKET" 2>/dev/null | field id || true)
if [ -z "$bucket" ]; then
  bucket=$(api POST /v2/CreateBucket "{\"globalAlias\":\"$BUCKET\"}" | field id)
fi
api POST /v2/AllowBucketKey "{\"bucketId\":\"$bucket\",\"accessKeyId\":\"$AWS_ACCESS_KEY_ID\",\"permissions\":{\"read\":true,\"write\":true,\"owner\":true}}" >/dev/null
echo "garage-init: bucket $BUCKET ($bucket) ready for key $AWS_ACCESS_KEY_ID"
