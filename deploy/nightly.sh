#!/usr/bin/env bash
# Nightly coach run: export traces -> coach learn -> commit the Skillbook and prompts to a branch
# -> open (or update) a pull request whose body is the prompt diff -> write the HTML report.
#
# Run it from cron or the systemd timer in this directory. Settings (environment variables):
#   COACH_REPO         the git checkout to work in (default: the directory above this script)
#   COACH_TRACES       the exported traces, a directory or glob (default: traces/)
#   COACH_EXPORT_CMD   a command that exports new traces into COACH_TRACES first (optional)
#   COACH_DATA_DIR     tables and analysis, kept between runs so that only new files are read
#                      (default: .coach)
#   COACH_BASE         the branch the pull request targets (default: main)
#   COACH_BRANCH       the branch the nightly commits go to (default: coach/nightly)
#   COACH_REMOTE       the remote to fetch from and push to (default: origin)
#   COACH_PUSH         1 to push the branch (default: 1)
#   COACH_OPEN_PR      1 to open or update the pull request with the GitHub CLI, gh (default: 1)
#   COACH_REPORT       where to write the HTML report (default: $COACH_DATA_DIR/report.html)
#   COACH_LEARN_ARGS   extra options for coach learn, e.g. "--mode propose" (optional)
#   COACH_BIN          the coach executable (default: coach on PATH)
#
# Output: one line per stage on stdout (for a log file); errors on stderr (so cron mails them).
# Exit codes: 0 done (with or without changes), 1 a step failed, 3 done but coach learn
# quarantined some input (see $COACH_DATA_DIR/tables/quarantine.jsonl; the run still goes
# on to commit and report), 75 another run holds the lock.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="${COACH_REPO:-$(dirname "$here")}"
traces="${COACH_TRACES:-traces/}"
data_dir="${COACH_DATA_DIR:-.coach}"
base="${COACH_BASE:-main}"
branch="${COACH_BRANCH:-coach/nightly}"
remote="${COACH_REMOTE:-origin}"
push="${COACH_PUSH:-1}"
open_pr="${COACH_OPEN_PR:-1}"
coach="${COACH_BIN:-coach}"
report="${COACH_REPORT:-$data_dir/report.html}"
read -r -a learn_args <<< "${COACH_LEARN_ARGS:-}"

cd "$repo"
mkdir -p "$data_dir"
log() { printf '%s nightly: %s\n' "$(date -u +%Y-%m-%dT%H:%M:%SZ)" "$*"; }

# One nightly run at a time (coach learn also locks its data directory and the Skillbook).
exec 9>"$data_dir/.nightly.lock"
if ! flock -n 9; then
    echo "nightly: another nightly run holds $data_dir/.nightly.lock; not starting" >&2
    exit 75
fi

if [[ -n "${COACH_EXPORT_CMD:-}" ]]; then
    log "export: $COACH_EXPORT_CMD"
    bash -c "$COACH_EXPORT_CMD"
fi

log "git: $branch from $remote/$base"
git fetch --quiet "$remote"
git checkout --quiet -B "$branch" "$remote/$base"

log "learn: $traces"
# coach learn exits 3 when it is done but quarantined some input: go on, and exit 3 at the end
done_status=0
"$coach" learn "$traces" --data-dir "$data_dir" --quiet --json "${learn_args[@]}" \
    > "$data_dir/learn.json" || done_status=$?
if [[ "$done_status" == 3 ]]; then
    echo "nightly: coach learn quarantined some input: see $data_dir/tables/quarantine.jsonl" >&2
elif [[ "$done_status" != 0 ]]; then
    exit "$done_status"
fi
log "$(python3 - "$data_dir/learn.json" <<'PY'
import json, sys
s = json.load(open(sys.argv[1]))
print(f"learn: {s['trajectories']} trajectories ({s['ingest']['this_run']['records_read']} new "
      f"records), {s['features_tested']} behaviours tested, Skillbook v{s['skillbook_version']} "
      f"{s['skills']}, timings {s['timings_s']}")
PY
)"

"$coach" report --data-dir "$data_dir" -o "$report" --since-rev HEAD --quiet > /dev/null
log "report: $report"

if [[ -z "$(git status --porcelain -- skillbook prompts_out)" ]]; then
    log "no change to the Skillbook or prompts; nothing to commit"
    exit "$done_status"
fi

"$coach" diff --git-rev HEAD --format markdown --data-dir "$data_dir" --quiet \
    > "$data_dir/pr-body.md"
version="$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["version"])' \
    skillbook/skillbook.json)"
git add -- skillbook prompts_out
git -c user.name="${GIT_AUTHOR_NAME:-coach}" -c user.email="${GIT_AUTHOR_EMAIL:-coach@localhost}" \
    commit --quiet -m "coach: Skillbook v$version from the nightly run" -m "$(head -c 4000 "$data_dir/pr-body.md")"
log "commit: $(git rev-parse --short HEAD) on $branch (Skillbook v$version)"

if [[ "$push" == 1 ]]; then
    git push --quiet --force-with-lease "$remote" "$branch"
    log "push: $remote $branch"
fi
if [[ "$open_pr" == 1 ]]; then
    title="coach: Skillbook v$version"
    if gh pr view "$branch" --json state --jq .state 2>/dev/null | grep -q OPEN; then
        gh pr edit "$branch" --title "$title" --body-file "$data_dir/pr-body.md" > /dev/null
        log "pull request updated: $branch"
    else
        gh pr create --base "$base" --head "$branch" --title "$title" \
            --body-file "$data_dir/pr-body.md" > /dev/null
        log "pull request opened: $branch -> $base"
    fi
fi
exit "$done_status"
