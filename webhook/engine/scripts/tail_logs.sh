# entourage logging agent: stream the log files of shared directories to stdout.
#
# Runs under busybox sh (busybox:1.36.1 image; also tested with Debian's busybox 1.35).
# Invocation (user values are ONLY positional parameters, never part of this text):
#   sh -c "$THIS_SCRIPT" entourage-logging DIR[=LABEL] [DIR[=LABEL] ...]
# DIR is where this container reads the directory (its own mount of the shared volume, under
# /var/run/entourage/logs); LABEL is the directory's path in the app container (default: DIR).
# Every line of every regular file directly inside each DIR is written to stdout as
#   "LABEL/NAME: LINE"
# so that `kubectl logs` shows where it came from. Runs until killed; exit 2 on bad arguments,
# 143 on SIGTERM/SIGINT (after killing every follower).
#
# Behaviour:
# - Non-recursive: only regular files directly in each DIR (hidden ones included);
#   subdirectories are ignored.
# - Symbolic links are never followed: a name that is a link is skipped, and a follower reads
#   only the file it opened after checking that it is the very file found in DIR (same device
#   and inode, taken without following links), so a link put in place later, or between the
#   look and the open, cannot point it at a file outside the shared directory.
# - Files present at start are printed from their beginning; the DIRs are polled every
#   2 seconds and new files are followed from their beginning too. A DIR that does not
#   exist yet is polled until it appears.
# - Files are followed by identity ("DEV:INODE"), not by name, one follower per file:
#   `tail -f` on the opened file, which starts again from the top when the file is truncated.
#   Rotation by rename + recreate: the renamed file (app.log -> app.log.1) is the same file and
#   is not printed again; the new app.log is a new file, printed from its beginning. A file's
#   follower is stopped once no name in the DIRs refers to it any more.
#   Compressed rotations (*.gz, *.bz2, *.xz, *.zst, *.lz4, *.zip) are skipped, as are names
#   containing a newline.
# - The line prefixer is awk reading the label from the environment (ENVIRON does no escape
#   processing, unlike `awk -v`), so file names (untrusted: spaces, quotes, |, &, \, $(...))
#   are printed literally, never run.
# - Every follower runs in its own process group (setsid); SIGTERM/SIGINT kill all groups.

nl='
'
POLL_SECONDS=2
# The prefixer. The label comes from ENTOURAGE_LOG_FILE, never from program text.
PREFIX_AWK='BEGIN { p = ENVIRON["ENTOURAGE_LOG_FILE"] ": " } { print p $0; fflush() }'
# The follower: $1 = path to open, $2 = label, $3 = the "DEV:INODE" the scan found at $1 without
# following links, $4 = awk program. It opens first and checks what it opened: a link swapped in
# at $1 gives another identity, and the follower gives up.
FOLLOWER='exec 3<"$1" || exit 1
[ "$(stat -L -c %d:%i /proc/self/fd/3 2>/dev/null)" = "$3" ] || exit 1
ENTOURAGE_LOG_FILE=$2
export ENTOURAGE_LOG_FILE
tail -n +1 -f <&3 2>/dev/null | awk "$4"'

if [ "$#" -lt 1 ]; then
    printf '%s\n' "usage: entourage-logging DIR[=LABEL] [DIR[=LABEL] ...]" >&2
    exit 2
fi
for arg in "$@"; do
    case $arg in
        *"$nl"*) printf '%s\n' "directory names must not contain a newline" >&2; exit 2 ;;
    esac
    case ${arg%%=*} in
        /*) ;;
        *) printf 'not an absolute path: %s\n' "$arg" >&2; exit 2 ;;
    esac
    case $arg in
        *=*) case ${arg#*=} in
            /*) ;;
            *) printf 'not an absolute label: %s\n' "$arg" >&2; exit 2 ;;
        esac ;;
    esac
done

followers=  # one record per line: "PGID DEV:INODE" (PGID 0 = known but deliberately not followed)
seen=       # "DEV:INODE" of every regular file found by the current poll, one per line
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

start_follower() {  # $1 = path, $2 = label, $3 = identity
    # In the background a non-interactive sh child is not a process-group leader, so setsid
    # does not fork and $! is the id of the new process group.
    setsid sh -c "$FOLLOWER" entourage-follow "$1" "$2" "$3" "$PREFIX_AWK" </dev/null &
    followers="$followers$! $3$nl"
}

# Stop the followers of files that no longer have a name in any DIR.
reap() {
    keep=
    while IFS= read -r rec; do
        [ -n "$rec" ] || continue
        case "$nl$seen" in
            *"$nl${rec#* }$nl"*) keep="$keep$rec$nl" ;;
            *) pg=${rec%% *}; [ "$pg" != 0 ] && kill -s TERM "-$pg" 2>/dev/null ;;
        esac
    done <<EOF
$followers
EOF
    followers=$keep
}

scan_file() {  # $1 = path, $2 = label
    case $1 in *"$nl"*) return ;; esac
    [ -L "$1" ] && return
    [ -f "$1" ] || return
    id=$(stat -c '%d:%i' -- "$1" 2>/dev/null) || return
    seen="$seen$id$nl"
    case "$nl$followers" in
        *" $id$nl"*) return ;;
    esac
    case $1 in
        *.gz | *.bz2 | *.xz | *.zst | *.lz4 | *.zip)
            followers="${followers}0 $id$nl"
            return
            ;;
    esac
    start_follower "$1" "$2" "$id"
}

while :; do
    seen=
    for arg in "$@"; do
        d=${arg%%=*}
        label=$d
        case $arg in *=*) label=${arg#*=} ;; esac
        [ -d "$d" ] || continue
        for f in "$d"/* "$d"/.[!.]* "$d"/..?*; do
            scan_file "$f" "$label/${f##*/}"
        done
    done
    reap
    # background + wait so that SIGTERM is handled at once, not after the sleep
    sleep "$POLL_SECONDS" &
    sleeper=$!
    wait "$sleeper"
    sleeper=
done
