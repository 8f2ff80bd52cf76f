# shellcheck shell=bash
# Two "hosts" on one machine for tests: two sets of namespaces (network + UTS + mount), each
# with its own hostname (hosta, hostb), its own /etc/hosts and one end of a veth pair named
# veth0 (addresses $NET.1 and $NET.2). The process ids and the file system are shared: a unix
# socket that is a file (munged's) is reachable from both hosts, a TCP port is not.
# Source it (needs root), then:
#     netns_hosts_start DIR   starts the hosts (DIR: a scratch directory for their /etc/hosts);
#                             sets NET, PA, PB (the processes holding the namespaces); 1 on error
#     on a|b CMD...           runs a command on a host
#     netns_hosts_stop        ends the hosts (their namespaces and the veth pair go with them)
#     netns_usable            0 when this machine lets us create the namespaces

NET='' PA='' PB='' _NETNS_VA=''

netns_usable() {
    [ "$(id -u)" = 0 ] && command -v ip >/dev/null && command -v unshare >/dev/null &&
        command -v nsenter >/dev/null && unshare --net --uts --mount true 2>/dev/null
}

# _netns_host NAME DIR: a process that holds new network, UTS and mount namespaces with the
# hostname NAME and a private /etc/hosts; it ends by itself after 20 minutes at the latest.
_netns_host() {
    unshare --net --uts --mount sh -c "mount --bind '$2/hosts' /etc/hosts && hostname $1 &&
        ip link set lo up && exec sleep 1200" </dev/null >/dev/null 2>&1 &
    local pid=$!
    for _ in $(seq 50); do
        [ "$(nsenter -t "$pid" --uts hostname 2>/dev/null)" = "$1" ] &&
            nsenter -t "$pid" --mount grep -q hostb /etc/hosts 2>/dev/null && break
        sleep 0.1
    done
    [ "$(nsenter -t "$pid" --uts hostname 2>/dev/null)" = "$1" ] || return 1
    echo "$pid"
}

on() { # on a|b CMD...: run a command on a host, in this directory
    local p=$PA
    [ "$1" = b ] && p=$PB
    shift
    nsenter -t "$p" --mount --uts --net --wd="$PWD" -- "$@"
}

netns_hosts_start() {
    local dir=$1 va vb
    # A /24 and veth names unlikely to collide with another test's hosts.
    NET=10.$((100 + RANDOM % 100)).$((RANDOM % 250))
    va=cgva$$ vb=cgvb$$
    printf '127.0.0.1 localhost\n%s.1 hosta\n%s.2 hostb\n' "$NET" "$NET" >"$dir/hosts"
    PA=$(_netns_host hosta "$dir") || { echo "cannot start host a" >&2; return 1; }
    PB=$(_netns_host hostb "$dir") || { echo "cannot start host b" >&2; return 1; }
    ip link add "$va" type veth peer name "$vb" || { echo "cannot create a veth pair" >&2; return 1; }
    _NETNS_VA=$va
    ip link set "$va" netns "$PA" && ip link set "$vb" netns "$PB" && _NETNS_VA='' &&
        on a ip link set "$va" name veth0 && on b ip link set "$vb" name veth0 &&
        on a ip addr add "$NET.1/24" dev veth0 && on a ip link set veth0 up &&
        on b ip addr add "$NET.2/24" dev veth0 && on b ip link set veth0 up ||
        { echo "cannot set up the veth pair" >&2; return 1; }
    # Reachability without ping (not installed everywhere): a TCP connection to a closed port
    # of hostb is refused by hostb's kernel (and times out when there is no route).
    for _ in $(seq 25); do _netns_reach && return 0; sleep 0.2; done
    echo "hosta cannot reach hostb over the veth pair" >&2
    return 1
}
_netns_reach() { on a timeout 3 bash -c 'exec 3<>/dev/tcp/hostb/9' 2>&1 | grep -q refused; }

netns_hosts_stop() {
    local p
    for p in $PA $PB; do kill "$p" 2>/dev/null; done
    for p in $PA $PB; do
        for _ in $(seq 50); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
    done
    [ -n "$_NETNS_VA" ] && ip link del "$_NETNS_VA" 2>/dev/null # never moved into a namespace
    PA='' PB='' _NETNS_VA=''
}
