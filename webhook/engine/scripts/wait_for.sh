# entourage wait-for: block until a dependency is reachable, then exit 0.
#
# Runs under busybox sh: in the curlimages/curl image (Alpine busybox + curl with OpenSSL, the
# default `curl` profile) and in the busybox:1.36.1 image (the `busybox` profile: no https);
# also tested with Debian's busybox 1.35 and curl 7.88.
# Invocation (user values are ONLY positional parameters, never part of this text):
#   sh -c "$THIS_SCRIPT" entourage-wait-for KIND TARGET TIMEOUT_SECONDS [CA_FILE [INSECURE]]
#     KIND            tcp | http | https | dns
#     TARGET          tcp: HOST:PORT (HOST = IPv4, DNS name or [IPv6]); http(s): the full URL;
#                     dns: a name
#     TIMEOUT_SECONDS integer from 0 to 86400 (24h, the webhook's grammar.MAX_DURATION_SECONDS);
#                     0 = wait forever
#     CA_FILE         https: the CA bundle that verifies the server, or "system" (the image's
#                     roots, the default)
#     INSECURE        "true": https without certificate verification (said on stderr); default
#                     "false"
# https needs curl: the server certificate is verified for the URL's host name (sent as SNI),
# with any TLS version the server and OpenSSL agree on (1.2 and 1.3). Without curl in the image,
# http falls back to busybox wget and https is refused (exit 2): busybox's TLS client verifies
# nothing and fails with TLS-1.3-only servers.
# Exit codes: 0 available, 1 timed out, 2 bad arguments, 143 terminated (SIGTERM/SIGINT).
# stdout: "waiting for TARGET (Ns elapsed)" per failed attempt, then
#         "TARGET is available after Ns".
# stderr: "timed out after Ns waiting for TARGET (KIND)" on timeout, then for http(s)
#         "last error: ..." (e.g. curl's "SSL certificate problem: ...") when there was one.
#
# The values are validated by the webhook; this script still never evals or re-parses them
# and always double-quotes them.

set -f  # no globbing anywhere: nothing below may expand a user value as a pattern

usage() {
    printf '%s\n' "usage: entourage-wait-for tcp|http|https|dns TARGET TIMEOUT_SECONDS [CA_FILE|system [true|false]]" >&2
    exit 2
}

[ "$#" -ge 3 ] && [ "$#" -le 5 ] || usage
kind=$1
target=$2
timeout=$3
cafile=${4:-system}
insecure=${5:-false}
case $insecure in
    true | false) ;;
    *) printf 'INSECURE must be true or false: %s\n' "$insecure" >&2; usage ;;
esac
case $cafile in
    system) cafile= ;;
    /*) ;;
    *) printf 'CA_FILE must be an absolute path or "system": %s\n' "$cafile" >&2; usage ;;
esac

case $timeout in
    '' | *[!0-9]*) printf 'invalid timeout: %s\n' "$timeout" >&2; usage ;;
esac
# Strip leading zeros so that $(( )) never reads the value as octal.
while :; do
    case $timeout in
        0?*) timeout=${timeout#0} ;;
        *) break ;;
    esac
done
# The length first: `[ -le ]` on a number past 64 bits is an error, not false.
if [ "${#timeout}" -gt 5 ] || [ "$timeout" -gt 86400 ]; then
    printf 'timeout above the maximum of 86400 seconds (24h): %s\n' "$timeout" >&2
    usage
fi
[ -n "$target" ] || usage

# Upper bound for a single attempt (seconds); busybox 1.35 (Debian) wget has no -T, so every
# probe runs under the `timeout` applet instead.
ATTEMPT_MAX=5

case $kind in
    tcp)
        # Split on the LAST colon so that "[::1]:5432" works; strip the IPv6 brackets.
        case $target in
            *:*) ;;
            *) printf 'tcp target must be HOST:PORT: %s\n' "$target" >&2; usage ;;
        esac
        port=${target##*:}
        host=${target%:*}
        case $host in
            \[*\]) host=${host#\[}; host=${host%\]} ;;
        esac
        case $port in
            '' | *[!0-9]*) printf 'invalid port in %s\n' "$target" >&2; usage ;;
        esac
        [ -n "$host" ] || usage
        ;;
    https)
        if ! command -v curl >/dev/null 2>&1; then
            printf '%s\n' "https needs curl in the image to verify the server certificate; this image has none (use the curl wait-for profile)" >&2
            exit 2
        fi
        if [ "$insecure" = true ]; then
            printf 'warning: %s: the server certificate is NOT verified (insecure=true)\n' "$target" >&2
        fi
        ;;
    http | dns) ;;
    *) printf 'unknown kind: %s\n' "$kind" >&2; usage ;;
esac
last_error=

sleeper=
trap '[ -n "$sleeper" ] && kill "$sleeper" 2>/dev/null; exit 143' TERM INT

now() { date +%s; }

check_tcp() {
    # busybox nc has no -z in Debian's build, and without -e it keeps the connection open
    # until the PEER closes it (stdin EOF does not end it). "-e true" runs `true` as soon as
    # the connection is established: exit 0 = connected, 1 = refused / unreachable / bad name.
    # "-e PROG" must come last (nc_bloaty in the official image treats everything after it as
    # PROG's argv). -w bounds the connect; `timeout` also bounds the name lookup.
    timeout "$1" nc -w "$1" "$host" "$port" -e true </dev/null >/dev/null 2>&1
}

check_http() {
    # The FIRST status line decides (2xx/3xx = up): redirects are not followed, as their
    # target may be another service than the one waited for.
    if command -v curl >/dev/null 2>&1; then
        check_curl "$1"
    else
        check_wget "$1"
    fi
}

check_curl() {
    # -q first: no ~/.curlrc. The exit code is ignored (a body cut off by --max-time still
    # had its status); %{errormsg} (curl >= 7.75) says why when there is no status at all.
    # curl sends the URL's host as SNI and checks the certificate against it; --cacert
    # replaces the image's roots, -k turns verification off.
    limit=$1
    set --
    [ -n "$cafile" ] && set -- --cacert "$cafile"
    [ "$insecure" = true ] && set -- "$@" --insecure
    out=$(curl -q -s -o /dev/null -w '%{http_code} %{errormsg}' --proto =http,https --max-redirs 0 \
        --connect-timeout "$limit" --max-time "$limit" "$@" -- "$target" 2>/dev/null)
    code=${out%% *}
    case $code in
        2?? | 3??) return 0 ;;
    esac
    last_error=${out#"$code"}
    last_error=${last_error# }
    [ -n "$last_error" ] || last_error="HTTP status $code"
    return 1
}

check_wget() {
    # busybox wget, for http only (https was refused above without curl).
    # wget exits non-zero for 4xx/5xx AND when a redirect target is unreachable, so the exit
    # code is ignored: the first status line printed by -S decides.
    # -S lines look like "  HTTP/1.1 503 Service Unavailable" (on stderr).
    out=$(timeout "$1" wget -S --spider -- "$target" 2>&1 >/dev/null)
    code=$(printf '%s\n' "$out" | sed -n 's/^ *HTTP\/[0-9.]* \([0-9][0-9][0-9]\).*/\1/p' | head -n 1)
    case $code in
        2?? | 3??) return 0 ;;
    esac
    return 1
}

in_etc_hosts() {
    [ -r /etc/hosts ] || return 1
    while read -r addr names; do
        case $addr in '' | '#'*) continue ;; esac
        for n in $names; do
            case $n in '#'*) break ;; esac
            [ "$n" = "$1" ] && return 0
        done
    done </etc/hosts
    return 1
}

check_dns() {
    # busybox nslookup queries the nameservers directly: it does NOT read /etc/hosts (so it
    # fails for "localhost") and may not apply resolv.conf search domains. Mimic the libc
    # resolver the application will use: /etc/hosts first, then the name as given, then the
    # name with each search domain appended (unless it ends with a dot).
    in_etc_hosts "$target" && return 0
    timeout "$1" nslookup "$target" >/dev/null 2>&1 && return 0
    case $target in *.) return 1 ;; esac
    domains=
    if [ -r /etc/resolv.conf ]; then
        while read -r key rest; do
            case $key in search | domain) domains=$rest ;; esac
        done </etc/resolv.conf
    fi
    for d in $domains; do
        timeout "$1" nslookup "$target.$d" >/dev/null 2>&1 && return 0
    done
    return 1
}

start=$(now)
delay=1
while :; do
    limit=$ATTEMPT_MAX
    if [ "$timeout" -gt 0 ]; then
        left=$((start + timeout - $(now)))
        [ "$left" -lt "$limit" ] && limit=$left
        [ "$limit" -lt 1 ] && limit=1
    fi
    case $kind in
        tcp) check_tcp "$limit" ;;
        http | https) check_http "$limit" ;;
        dns) check_dns "$limit" ;;
    esac
    ok=$?
    elapsed=$(($(now) - start))
    if [ "$ok" -eq 0 ]; then
        printf '%s is available after %ss\n' "$target" "$elapsed"
        exit 0
    fi
    printf 'waiting for %s (%ss elapsed)\n' "$target" "$elapsed"
    nap=$delay
    if [ "$timeout" -gt 0 ]; then
        left=$((timeout - elapsed))
        if [ "$left" -le 0 ]; then
            printf 'timed out after %ss waiting for %s (%s)\n' "$elapsed" "$target" "$kind" >&2
            [ -n "$last_error" ] && printf 'last error: %s\n' "$last_error" >&2
            exit 1
        fi
        # never sleep past the deadline: one last attempt happens at the deadline
        [ "$nap" -gt "$left" ] && nap=$left
    fi
    # background + wait so that SIGTERM is handled at once, not after the sleep
    sleep "$nap" &
    sleeper=$!
    wait "$sleeper"
    sleeper=
    # bounded exponential back-off: 1, 2, 4, 8, 10, 10, ...
    delay=$((delay * 2))
    [ "$delay" -gt 10 ] && delay=10
done
