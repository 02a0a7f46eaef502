# entourage logging agent: stream the log files of a shared volume to stdout.
#
# Runs under busybox sh (busybox:1.36.1 image; also tested with Debian's busybox 1.35).
# Invocation (user values are ONLY positional parameters, never part of this text):
#   sh -c "$THIS_SCRIPT" entourage-logging DIR [DIR ...]
# Every line of every regular file directly inside each DIR is written to stdout as
#   "PATH: LINE"
# so that `kubectl logs` shows where it came from. Runs until killed; exit 2 on bad arguments,
# 143 on SIGTERM/SIGINT (after killing every follower).
#
# Behaviour:
# - Non-recursive: only regular files directly in each DIR (hidden ones included);
#   subdirectories are ignored.
# - Files present at start are printed from their beginning; the DIRs are polled every
#   2 seconds and new files are followed from their beginning too. A DIR that does not
#   exist yet is polled until it appears.
# - One follower per file: `tail -F -n +1` (follow by NAME, retry) handles rotation by
#   rename + recreate, truncation and delete + recreate. Its line prefixer is awk reading the
#   path from the environment (ENVIRON does no escape processing, unlike `awk -v`), so file
#   names (untrusted: spaces, quotes, |, &, \, $(...)) are printed literally, never run.
# - A new name whose inode belonged to an already-followed file at the previous poll is a
#   rotated copy (app.log -> app.log.1): it is followed from its END so that its old content
#   is not printed twice. Compressed rotations (*.gz, *.bz2, *.xz, *.zst, *.lz4, *.zip) are
#   skipped. Names containing a newline are skipped.
# - When a followed name disappears, its follower is stopped (and restarted if the name comes
#   back).
# - Every follower runs in its own process group (setsid); SIGTERM/SIGINT kill all groups.

nl='
'
POLL_SECONDS=2
# The prefixer. The path comes from ENTOURAGE_LOG_FILE, never from program text.
PREFIX_AWK='BEGIN { p = ENVIRON["ENTOURAGE_LOG_FILE"] ": " } { print p $0; fflush() }'
# The follower: $1 = path, $2 = tail start ("+1" = from the beginning, "0" = from the end),
# $3 = awk program.
FOLLOWER='ENTOURAGE_LOG_FILE=$1
export ENTOURAGE_LOG_FILE
tail -F -n "$2" -- "$1" 2>/dev/null | awk "$3"'

if [ "$#" -lt 1 ]; then
    printf '%s\n' "usage: entourage-logging DIR [DIR ...]" >&2
    exit 2
fi
for d in "$@"; do
    case $d in
        /*) ;;
        *) printf 'not an absolute path: %s\n' "$d" >&2; exit 2 ;;
    esac
    case $d in
        *"$nl"*) printf '%s\n' "directory names must not contain a newline" >&2; exit 2 ;;
    esac
done

followers=  # one record per line: "PGID PATH" (PGID 0 = known but deliberately not followed)
followed=   # one path per line, for exact membership tests
ids=        # "DEV:INODE" of every file seen at the last poll, one per line
sleeper=

stop_all() {
    trap - TERM INT
    [ -n "$sleeper" ] && kill "$sleeper" 2>/dev/null
    printf '%s' "$followers" | while IFS= read -r rec; do
        pg=${rec%% *}
        [ "$pg" != 0 ] && kill -s TERM "-$pg" 2>/dev/null
    done
    exit 143
}
trap stop_all TERM INT

start_follower() {  # $1 = path, $2 = tail start
    # In the background a non-interactive sh child is not a process-group leader, so setsid
    # does not fork and $! is the id of the new process group.
    setsid sh -c "$FOLLOWER" entourage-follow "$1" "$2" "$PREFIX_AWK" </dev/null &
    followers="$followers$! $1$nl"
    followed="$followed$1$nl"
}

# Stop the followers of names that no longer exist.
reap() {
    keep=
    keep_paths=
    while IFS= read -r rec; do
        [ -n "$rec" ] || continue
        pg=${rec%% *}
        path=${rec#* }
        if [ -e "$path" ] || [ -L "$path" ]; then
            keep="$keep$rec$nl"
            keep_paths="$keep_paths$path$nl"
        elif [ "$pg" != 0 ]; then
            kill -s TERM "-$pg" 2>/dev/null
        fi
    done <<EOF
$followers
EOF
    followers=$keep
    followed=$keep_paths
}

scan_file() {  # $1 = path
    case $1 in *"$nl"*) return ;; esac
    [ -f "$1" ] || return
    id=$(stat -L -c '%d:%i' -- "$1" 2>/dev/null) || return
    new_ids="$new_ids$id$nl"
    case "$nl$followed" in
        *"$nl$1$nl"*) return ;;
    esac
    case $1 in
        *.gz | *.bz2 | *.xz | *.zst | *.lz4 | *.zip)
            followers="${followers}0 $1$nl"
            followed="$followed$1$nl"
            return
            ;;
    esac
    case "$nl$ids" in
        *"$nl$id$nl"*) start_follower "$1" 0 ;;
        *) start_follower "$1" +1 ;;
    esac
}

while :; do
    reap
    new_ids=
    for d in "$@"; do
        [ -d "$d" ] || continue
        for f in "$d"/* "$d"/.[!.]* "$d"/..?*; do
            scan_file "$f"
        done
    done
    ids=$new_ids
    # background + wait so that SIGTERM is handled at once, not after the sleep
    sleep "$POLL_SECONDS" &
    sleeper=$!
    wait "$sleeper"
    sleeper=
done
