# Sourced by the scripts here that run the harness's build (run.sh makes it), after they set ROOT
# to their own folder: PROJECT (two levels up unless set), WORK (where run.sh builds), BIN (the
# build's binaries) and SERVER (the server binary: another build's, for an A/B, when set).
PROJECT=${PROJECT:-$(cd "$ROOT/../.." && pwd)}
WORK=${WORK:-$(cd "$PROJECT" && pwd)/target/peers-bench}
BIN=$WORK/peers/target/release
SERVER=${SERVER:-$BIN/server}
